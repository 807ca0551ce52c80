"""From a raw CT to vertebra masks and centroids: spine localisation, vertebra localisation and
labelling, vertebra segmentation (a PyTorch version of Payer et al.'s VerSe 2019 pipeline)."""
