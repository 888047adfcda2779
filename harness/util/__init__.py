"""harness.util."""
