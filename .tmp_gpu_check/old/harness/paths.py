"""Where the harness keeps generated data when the user does not say (always written into the run config)."""
from __future__ import annotations

import os
from pathlib import Path


def data_home() -> Path:
    """$LONGVIDEO_HARNESS_HOME, else $XDG_CACHE_HOME/longvideo-harness, else ~/.cache/longvideo-harness."""
    if os.environ.get("LONGVIDEO_HARNESS_HOME"):
        return Path(os.environ["LONGVIDEO_HARNESS_HOME"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "longvideo-harness"
