"""Benchmarks. Importing this package registers the built-in ones."""
from tasks import longvideobench, lvbench, mlvu, needle, smoke, videomme  # noqa: F401  (registration side effect)
