import os

# No hub access in tests: any attempt to download fails at once instead of waiting on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_data_home(tmp_path_factory, monkeypatch):
    """Generated task data goes to a per-session temporary home, never to the user's cache."""
    monkeypatch.setenv("LONGVIDEO_HARNESS_HOME", str(tmp_path_factory.getbasetemp() / "harness-home"))


# -- tiny random models built offline, shared by every test that needs one (session-scoped: built once) ------------
@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory):
    """A random CLIPModel + CLIPProcessor folder (64 px images, 32-d projections)."""
    from harness.miniworld.tiny import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip"), seed=0)


@pytest.fixture(scope="session")
def tiny_blip(tmp_path_factory):
    from harness.miniworld.tiny import build_tiny_blip

    return build_tiny_blip(tmp_path_factory.mktemp("tiny-blip"), seed=0)


@pytest.fixture(scope="session")
def tiny_open_clip(tmp_path_factory):
    from harness.miniworld.tiny import build_tiny_open_clip

    return build_tiny_open_clip(tmp_path_factory.mktemp("tiny-open-clip"), seed=0)
