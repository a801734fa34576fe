"""Benchmarks for segment_assets (issue 5): `python -m bench` runs them all and writes
bench/RESULTS.md. Every figure is measured against the simulator on loopback; wall-clock
figures are min/median/max over repeated runs, and comparisons are ratios within one run
of this command because the machine is shared."""
