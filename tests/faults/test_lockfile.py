"""Locks whose files go away when released (harness.util.lockfile): a finished run leaves no lock file, in the data
home or its run directory; a held lock refuses a second taker; a taker whose file was removed under it (the holder
released between its open and its lock) locks the file now at the path, never the removed one."""
import fcntl
import os

import pytest

from harness.util import lockfile


def test_a_held_lock_refuses_a_second_taker_and_its_release_removes_the_file(tmp_path):
    path = tmp_path / "x.lock"
    held = lockfile.take(path)
    assert path.is_file()
    with pytest.raises(BlockingIOError):
        lockfile.take(path)  # another open file description: as another process would be refused
    held.release()
    assert not path.exists()
    again = lockfile.take(path)
    again.release()
    held.release()  # twice: nothing more happens
    assert not path.exists()


def test_a_file_removed_between_open_and_lock_is_not_the_lock(tmp_path, monkeypatch):
    path = tmp_path / "x.lock"
    calls = []
    real = fcntl.flock

    def racing(handle, op):  # the previous holder releases (removes the file) just after this taker opened it
        real(handle, op)
        calls.append(os.fstat(handle.fileno()).st_ino)
        if len(calls) == 1:
            os.unlink(path)

    monkeypatch.setattr(lockfile.fcntl, "flock", racing)
    held = lockfile.take(path)
    assert len(calls) == 2 and os.path.samestat(os.fstat(held.fileno()), os.stat(path))
    held.release()


def test_a_finished_run_leaves_no_lock_files(tmp_path, monkeypatch):
    from harness.config import RunConfig
    from harness.run.runner import Run

    monkeypatch.setenv("LONGVIDEO_HARNESS_HOME", str(tmp_path / "home"))
    cfg = RunConfig(task="needle", task_args={"root": str(tmp_path / "videos"), "videos": 1, "min_duration": 20.0,
                                              "max_duration": 24.0},
                    backbone="colour-probe", samplers=["uniform"], frames=4, out=str(tmp_path / "runs"),
                    cache_dir=str(tmp_path / "cache"), workers=0)
    [run_dir] = Run(cfg, progress=False).execute()
    assert (run_dir / "predictions.jsonl").is_file()
    assert (tmp_path / "home" / "locks").is_dir()  # the command lock was taken there
    assert not list((tmp_path / "home").rglob("*.lock")) and not list(run_dir.glob(".lock*"))
