"""Relais benchmarks (issue 5): `python -m bench.run_all` (make bench), or one figure at a time. See README.md."""
