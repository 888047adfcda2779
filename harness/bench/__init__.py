"""harness.bench.loops."""
