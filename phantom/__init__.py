"""The built-in phantom: seeded synthetic spines with planted fractures and their healthy twins
(``case``: one case; ``cohort``: a cohort with splits; ``shapes``, ``fracture``, ``render``,
``paint``: the geometry, the planted compression, the CT rendering and label painting)."""
