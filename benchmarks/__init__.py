"""stepkeeper's benchmark suite: `python -m benchmarks [--quick] [--json results.json]`."""
