"""harness.scoring.summary."""
