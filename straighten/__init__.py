"""Preprocessing: centroid files from label maps, physical-space spine straightening (smooth
centre line, rotation-minimising frames, anatomical orientation), de-pedicle, per-vertebra blocks
with their own affine, the inverse map back to patient space, and the original algorithm as
``--mode original`` for comparison with published numbers."""
