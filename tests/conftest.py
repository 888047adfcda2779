import os

# No hub access in tests: any attempt to download fails at once instead of waiting on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_data_home(tmp_path_factory, monkeypatch):
    """Generated task data goes to a per-session temporary home, never to the user's cache."""
    monkeypatch.setenv("LONGVIDEO_HARNESS_HOME", str(tmp_path_factory.getbasetemp() / "harness-home"))
