"""The offline needle benchmark: generated videos with known evidence intervals (registered as `needle`)."""
from tasks.needle import task  # noqa: F401  (registration side effect)
