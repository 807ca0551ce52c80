"""The HealthiVert-GAN networks: coarse and fine generators (contextual attention, SHRM height
heads, HGAM attention input), the three PatchGAN discriminators, losses (including the EEM edge
loss), the SHRM composite, a registry for ablations, and the model wrapper that trains them."""
