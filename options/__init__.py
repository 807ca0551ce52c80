"""Typed option dataclasses turned into argparse flags (pix2pix flag names), parsed once, frozen,
and dumped to ``options.json`` in the run folder; presets (``--preset paper``) live here too."""
