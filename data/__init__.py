"""Everything that touches files or turns files into arrays: the :class:`~data.volume.Volume`
type and its readers/writers (NIfTI, DICOM, MHA/MHD, NRRD), centroid and split/grade JSON readers,
the one HU <-> network-unit conversion (`data.intensity`), the ground-truth spine phantom
(`data.phantom`) and the GAN training datasets. Geometry elsewhere is pure functions on arrays."""
