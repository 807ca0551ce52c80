"""3D pseudo-healthy synthesis (docs/METHOD.md §5): every sagittal (and, for 2.5D, coronal) slice of a
straightened vertebra block that contains the target is rebuilt iteratively -- upper neighbour,
then lower neighbour on that result, then the target on that result -- each step with the same
band height, neighbour shift and SHRM paste the generator was trained with (:mod:`synthesis.views`
cuts blocks exactly as the training dataset does, :mod:`synthesis.steps` builds the batch and moves
the labels with the composite); slices of several vertebrae share each forward pass through a
streaming scheduler (:mod:`synthesis.iterative`); sagittal and coronal results are fused voxel-wise
(:mod:`synthesis.fusion`), written as ``CT_fake`` / ``label_fake`` blocks on the block's grid
(:mod:`synthesis.writer`) and optionally painted back into the patient's CT grid
(:mod:`synthesis.paint`). Checkpoints load through :mod:`synthesis.model_io` (never random weights);
:mod:`synthesis.runner` is the typed entry behind ``eval_3d_sagittal_twostage.py``, and
:mod:`synthesis.phantom_eval` scores synthesised heights against the phantom's healthy twins."""
