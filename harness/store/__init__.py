"""harness.store.runs."""
