"""harness data fetch / models fetch against a real HTTP server on 127.0.0.1 that answers like the hub, through the
real huggingface_hub client: a dataset fetched, unpacked and checked; a dropped connection resumed with a Range
request; a checksum mismatch (one line, the file removed); a full disk refused before anything is downloaded; the
offline line."""
from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import huggingface_hub.constants
import pytest

from harness.errors import FatalError
from harness.fetch import catalog, hub, jobs
from harness.util.synth import write_index_clip
from hubserver import COMMIT, Hub

ROOT = Path(__file__).resolve().parents[2]
LVB = ("dataset", "longvideobench/LongVideoBench")


def _lvb_repo(tmp_path) -> dict:
    """lvb_val.json with two questions on two 2-second clips, and the videos as a tar split in two parts."""
    records, buf = [], io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for i in range(2):
            clip = tmp_path / f"v{i}.mp4"
            write_index_clip(clip, 20, 10)
            tar.add(clip, arcname=f"videos/v{i}.mp4")
            records.append({"id": f"v{i}_0", "video_path": f"v{i}.mp4", "question": "Which?", "candidates": ["a", "b"],
                            "correct_choice": 0, "duration": 2.0, "duration_group": 15, "question_category": "TOS"})
    data = buf.getvalue()
    half = len(data) // 2
    return {"lvb_val.json": json.dumps(records).encode(), "videos.tar.part.aa": data[:half],
            "videos.tar.part.ab": data[half:], "README.md": b"not fetched"}


@pytest.fixture
def online(monkeypatch, tmp_path):
    """The client pointed at a local hub (what HF_ENDPOINT does at import), online, with its own HF_HOME."""
    def start(repos):
        server = Hub(repos).__enter__()
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", server.url)
        monkeypatch.setattr(huggingface_hub.constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            server.url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
        started.append(server)
        return server
    started: list = []
    yield start
    for server in started:
        server.__exit__(None, None, None)


def test_a_dataset_is_listed_pinned_downloaded_and_unpacked(online, tmp_path):
    server = online({LVB: _lvb_repo(tmp_path)})
    root = tmp_path / "data"
    where = jobs.fetch_dataset(catalog.dataset("longvideobench"), root, log=lambda line: None)
    folder = root / "datasets/longvideobench"
    assert where == {"annotations": str(folder / "lvb_val.json"), "video_root": str(folder / "videos")}
    assert sorted(p.name for p in (folder / "videos").iterdir()) == ["v0.mp4", "v1.mp4"]
    assert not (folder / "videos.tar.part.aa").exists()  # archives removed after unpacking
    assert not (folder / "README.md").exists()  # only the files the catalog names
    pins = json.loads((root / hub.PIN_FILE).read_text())[LVB[1]]
    assert pins["commit"] == COMMIT and pins["unpacked"] == ["videos.tar.part.*"]
    assert {name for name, _ in server.gets} == {"lvb_val.json", "videos.tar.part.aa", "videos.tar.part.ab"}
    # a second fetch downloads nothing it already has and unpacks nothing again
    server.gets.clear()
    jobs.fetch_dataset(catalog.dataset("longvideobench"), root, log=lambda line: None)
    assert server.gets == []


def test_a_dropped_connection_resumes_with_a_range_request(online, tmp_path, monkeypatch):
    # the client writes whole chunks (10 MB by default); small ones let a 300 kB file resume mid-way
    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", 32_768)
    data = os.urandom(300_000)
    server = online({("model", "org/m"): {"config.json": b"{}", "model.safetensors": data}})
    server.drop_once.add("model.safetensors")
    listing = hub.list_files("org/m", "model", "main")[1]
    weights = next(f for f in listing if f.path == "model.safetensors")
    path = hub.download("org/m", "model", COMMIT, weights, local_dir=tmp_path / "m")
    assert path.read_bytes() == data
    gets = [rng for name, rng in server.gets if name == "model.safetensors"]
    assert gets[0] is None and len(gets) == 2
    resumed = int(gets[1].removeprefix("bytes=").removesuffix("-"))  # the second request asked only for the rest
    assert 0 < resumed <= len(data) // 2 and resumed % 32_768 == 0


def test_a_checksum_mismatch_is_one_line_and_removes_the_file(online, tmp_path):
    server = online({("model", "org/m"): {"model.safetensors": b"x" * 1000}})
    server.published["model.safetensors"] = hashlib.sha256(b"y" * 1000).hexdigest()
    remote = hub.list_files("org/m", "model", "main")[1][0]
    with pytest.raises(FatalError, match=r"checksum mismatch for org/m/model.safetensors: got sha256 [0-9a-f]{64}, "
                                         r"the hub publishes sha256 [0-9a-f]{64}; the file was removed"):
        hub.download("org/m", "model", COMMIT, remote, local_dir=tmp_path / "m")
    assert not (tmp_path / "m" / "model.safetensors").exists()


def test_a_full_disk_is_refused_before_any_download(online, tmp_path, monkeypatch):
    server = online({LVB: _lvb_repo(tmp_path)})
    monkeypatch.setattr(hub, "free_bytes", lambda folder: 1000)
    with pytest.raises(FatalError, match=r"not enough disk for longvideobench \(longvideobench/LongVideoBench\): "
                                         r"needs .* GB \(\+2% margin\), 0.0 GB free"):
        jobs.fetch_dataset(catalog.dataset("longvideobench"), tmp_path / "data", log=lambda line: None)
    assert server.gets == []


def test_a_layout_the_catalog_does_not_expect_is_named(online, tmp_path):
    online({LVB: {"lvb_val.json": b"[]"}})
    with pytest.raises(FatalError, match=r"longvideobench/LongVideoBench has no file matching 'videos.tar.part.\*'"):
        jobs.fetch_dataset(catalog.dataset("longvideobench"), tmp_path / "data", log=lambda line: None)


def _harness(args, env):
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env}, timeout=300)


def test_the_fetch_command_end_to_end_with_hf_endpoint(tmp_path):
    """HF_ENDPOINT pointed at the server, a fresh process: fetch, unpack, then `harness data check` passes."""
    with Hub({LVB: _lvb_repo(tmp_path)}) as server:
        done = _harness(["data", "fetch", "--task", "longvideobench", "--root", str(tmp_path / "data")],
                        {"HF_ENDPOINT": server.url, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf")})
    assert done.returncode == 0, done.stderr
    assert f"annotations={tmp_path / 'data/datasets/longvideobench/lvb_val.json'}" in done.stdout


def test_offline_says_what_would_be_fetched_from_where(tmp_path):
    done = _harness(["data", "fetch", "--task", "videomme", "--root", str(tmp_path)],
                    {"HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"})
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout == (f"would fetch videomme: http://127.0.0.1:9/datasets/lmms-eval/Video-MME @ main: "
                           f"videomme/test-00000-of-00001.parquet, videos_chunked_*.zip (videos_chunked_NN.zip of "
                           f"21-27 GB each (count not verified); about 100.0 GB) -> {tmp_path / 'videomme'} (offline: "
                           f"HF_HUB_OFFLINE=1, nothing fetched)\n")
    models = _harness(["models", "fetch", "tspo-0.4b", "qwen2.5-vl-7b"], {"HF_HUB_OFFLINE": "1"})
    assert models.returncode == 0 and len(models.stdout.splitlines()) == 2
    assert models.stdout.startswith("would fetch tspo-0.4b: https://huggingface.co/hzf666/TSPO-0.4B @ main")


def test_unknown_names_are_one_line_with_a_close_match():
    done = _harness(["data", "fetch", "--task", "videome"], {"HF_HUB_OFFLINE": "1"})
    assert done.returncode == 2
    assert done.stderr == ("harness: error: --task: no dataset for task 'videome' to fetch; did you mean videomme? "
                           "(known: longvideobench, lvbench, mlvu, videomme)\n")
    done = _harness(["models", "fetch", "qwen-7b"], {"HF_HUB_OFFLINE": "1"})
    assert done.returncode == 2 and "did you mean" in done.stderr
