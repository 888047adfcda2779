"""Benchmarks. Importing this package registers the built-in ones."""
from tasks import smoke  # noqa: F401  (registration side effect)
