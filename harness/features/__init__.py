"""harness.features.store."""
