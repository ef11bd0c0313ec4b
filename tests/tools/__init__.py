"""Tests of the benchmark and load tooling under tools/."""
