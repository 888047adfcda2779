"""Issue 16, item 10: temp files of an interrupted needle video write are cleaned on the next write of that split.

A write killed mid-way leaves the video encoder's temp file (`.needle-<split>-vNNN.<pid>.tmp.mp4`), the job folder
of the parallel writer (`.needle-XXXXXXXX`, or `.needle-<pid>-XXXXXXXX`) and a manifest's atomic-write temp. The
rule: such a name is removed when it has been untouched for a minute and the writer whose pid the name carries is no
longer a live process here (a name without a pid: the minute alone). Anything else stays: other names, the same
names in another split's folder, a live writer's temp, a fresh leftover.
"""
import os
import subprocess
import sys
import time

from tasks.needle import NeedleTask

SHORT = {"min_duration": 60.0, "max_duration": 75.0}
HOUR_AGO = time.time() - 3600


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def aged(path, when=HOUR_AGO):
    for p in [path, *(path.iterdir() if path.is_dir() else ())]:
        os.utime(p, (when, when))
    return path


def leftover_file(root, name, data=b"\x00\x00\x00\x18ftypisom half a video", when=HOUR_AGO):
    (root / name).write_bytes(data)
    return aged(root / name, when)


def leftover_folder(root, name):
    (root / name).mkdir()
    (root / name / "job0.json").write_text('{"root": "x", "specs": []}')
    return aged(root / name)


def videos(root) -> dict:
    return {p.name: p.read_bytes() for p in sorted(root.glob("*.mp4")) if not p.name.startswith(".")}


def test_leftovers_of_an_interrupted_write_are_cleaned_and_the_videos_are_unchanged(tmp_path):
    clean = tmp_path / "clean"
    NeedleTask(videos=2, root=str(clean), **SHORT).samples()
    expected = videos(clean)
    assert len(expected) == 2

    root, other = tmp_path / "dirty", tmp_path / "other-split"
    root.mkdir()
    other.mkdir()
    gone = dead_pid()
    stale = [leftover_file(root, f".needle-test-v000.{gone}.tmp.mp4", expected["needle-test-v000.mp4"][:5000]),
             leftover_file(root, f".needle-test-v001.{gone}.tmp.mp4"),
             leftover_folder(root, ".needle-ab3_x9qz"),
             leftover_folder(root, f".needle-{gone}-k2j4m8pq"),
             leftover_file(root, ".manifest-n2.json.q1w2e3r4.tmp", b'{"version"')]
    kept = [leftover_file(root, f".needle-test-v002.{os.getpid()}.tmp.mp4"),  # a live writer (this process)
            leftover_file(root, f".needle-test-v003.{gone}.tmp.mp4", when=time.time()),  # fresh: maybe remote
            leftover_file(root, "notes.txt", b"mine"), leftover_folder(root, ".needle-notes"),
            leftover_file(other, f".needle-train-v000.{gone}.tmp.mp4"), leftover_folder(other, ".needle-zz00zz00")]

    samples = NeedleTask(videos=2, root=str(root), **SHORT).samples()

    assert [p.name for p in stale if p.exists()] == []
    assert [p.name for p in kept if not p.exists()] == []
    assert videos(root) == expected
    assert sorted(p.name for p in root.iterdir()) == sorted(
        [p.name for p in kept if p.parent == root] + list(expected) + ["manifest-n2.json"])
    assert [s.id for s in samples] == [s.id for s in NeedleTask(videos=2, root=str(clean), **SHORT).samples()]


def test_cleaning_needs_no_write_and_spares_what_cannot_be_told_stale(tmp_path):
    root = tmp_path / "needle"
    NeedleTask(videos=1, root=str(root), **SHORT).samples()
    before = videos(root)
    gone = dead_pid()
    stale = leftover_file(root, f".needle-test-v000.{gone}.tmp.mp4")
    young = leftover_folder(root, ".needle-aaaa1111")
    aged(young, time.time())
    NeedleTask(videos=1, root=str(root), **SHORT).samples()  # every video exists: nothing is rewritten
    assert not stale.exists() and young.exists()
    assert videos(root) == before
