"""Everything that touches files or turns files into arrays: the :class:`~data.volume.Volume`
type and its readers/writers (NIfTI, DICOM, MHA/MHD, NRRD), centroid and split/grade JSON readers,
the one HU <-> network-unit conversion (`data.intensity`), masks, splits and patients, and the
GAN training dataset. The phantom generator is its own package (`phantom/`). Geometry elsewhere is pure functions on arrays."""
