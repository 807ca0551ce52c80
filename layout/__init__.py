"""On-disk contracts, one module per layout: ``raw`` (the input cohort), ``blocks`` (the
straightened block store), ``synthesis`` (pseudo-healthy outputs) and ``runs`` (training run
folders and checkpoints). Stages read and write files only through these modules."""
