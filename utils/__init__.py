"""Small shared helpers: user-facing errors and the CLI wrapper (`utils.errors`), atomic file
writes (`utils.fileio`), seeding (`utils.seed`) and device selection (`utils.device`). Nothing here
knows about vertebrae; every other package may import from it."""
