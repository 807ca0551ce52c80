"""Benchmark entries, one module per stage, each with ``run(quick) -> list[dict]``; collected by
``scripts/benchmark.py`` into ``docs/BENCHMARKS.md``."""
