"""Attention maps: the binary fracture classifier (MONAI SE-ResNet50, 2D per sagittal slice or 3D)
and its Grad-CAM++ heatmaps (pytorch-grad-cam) for every slice of every vertebra, written as NIfTI
volumes on the block's grid for the GAN's HGAM input."""
