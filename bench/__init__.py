"""Benchmarks: `make bench` prints figures (no pass/fail thresholds)."""
