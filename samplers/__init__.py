"""Frame samplers. Importing this package registers the built-in ones."""
from samplers import replay, topk, uniform  # noqa: F401  (registration side effect)
