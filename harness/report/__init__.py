"""harness.report.table."""
