"""Quantification and grading: anterior/middle/posterior heights and RHLV, height-loss maps,
mask-only morphometry, SVM grading under the original and the sound protocol, synthesis metrics
(PSNR/SSIM in band, strip and slice; Dice/IoU/RVD) with neighbour baselines."""
