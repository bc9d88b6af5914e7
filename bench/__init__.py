"""Benchmarks at realistic scale: `./dev bench` (see bench/__main__.py and docs/performance.md)."""
