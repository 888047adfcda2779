"""The `harness` command: one module per command group (evaluate, results, data, tools) and the dispatcher (app)."""
from harness.cli.app import main  # the console script: harness = harness.cli:main

__all__ = ["main"]
