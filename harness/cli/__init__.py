"""The `harness` command: one module per command group, and the dispatcher."""
from harness.cli.app import main  # noqa: F401  (the console script harness = harness.cli:main)
