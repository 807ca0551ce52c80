"""GAN training helpers: the run folder (creation rules, ``env.json``, the loss log), the epoch
sampler and data configuration (``support``), and the periodic evaluation (``gan_eval``)."""
