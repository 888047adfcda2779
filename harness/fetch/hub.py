"""Listing, downloading and verifying files of Hugging Face repositories through the real `huggingface_hub`.

One fetch: resolve the revision to a commit (pinned in `<root>/harness-fetch.json` on first use), list the
repository's files with their sizes and LFS sha256 at that commit, keep those the catalog names, refuse up front when
the disk cannot hold them (archives count twice: the download and what unpacks from it), then download each one with
`hf_hub_download` (a dropped connection resumes from the byte it reached, with a Range request) and compare its
sha256 with the published one; a mismatch removes the file and stops with one line. Offline (`HF_HUB_OFFLINE=1`)
nothing is contacted: `offline_line` says what would be fetched from where.

Faults of the machine or the network (disk, checksum, hub unreachable, gated repository without a token) are
`FatalError`s: the CLI exits 3 with one line, and the same command resumes.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from harness.errors import FatalError, HarnessError
from harness.util.fileio import atomic_write

PIN_FILE = "harness-fetch.json"
DISK_MARGIN = 1.02  # 2% head room over the listed sizes


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    sha256: str | None  # the LFS object's sha256 the hub publishes (None for small files stored in git)


def is_offline() -> bool:
    import huggingface_hub.constants
    return bool(huggingface_hub.constants.is_offline_mode())


def gigabytes(n: int) -> str:
    return f"{n / 1e9:.1f} GB"


# ---------------------------------------------------------------------------------------------------------------
# pinned commits


def read_pins(root) -> dict:
    path = Path(root) / PIN_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError:
        raise HarnessError(f"{path} is malformed; delete it to pin the revisions again") from None


def write_pin(root, key: str, value: dict) -> None:
    pins = read_pins(root)
    pins[key] = {**pins.get(key, {}), **value}
    Path(root).mkdir(parents=True, exist_ok=True)
    atomic_write(Path(root) / PIN_FILE, json.dumps(pins, indent=2, sort_keys=True) + "\n")


# ---------------------------------------------------------------------------------------------------------------
# listing


def _hub_failure(what: str, e: Exception) -> FatalError:
    first = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
    hint = ""
    if type(e).__name__ in ("GatedRepoError", "RepositoryNotFoundError") or "401" in first or "403" in first:
        hint = " (a gated repository: accept its terms on the hub and run `hf auth login`, or set HF_TOKEN)"
    return FatalError(f"{what}: {type(e).__name__}: {first[:200]}{hint}")


def list_files(repo: str, repo_type: str, revision: str) -> tuple[str, list[RemoteFile]]:
    """(commit, files with sizes and published sha256) of a repository at a revision."""
    from huggingface_hub import HfApi

    try:
        info = HfApi().repo_info(repo, repo_type=repo_type, revision=revision, files_metadata=True)
    except Exception as e:
        raise _hub_failure(f"cannot list {repo_type} {repo} at {revision}", e) from None
    files = [RemoteFile(s.rfilename, int(s.lfs.size if s.lfs else (s.size or 0)), s.lfs.sha256 if s.lfs else None)
             for s in info.siblings or []]
    return info.sha or revision, files


def select(files: list[RemoteFile], patterns, repo: str) -> list[RemoteFile]:
    """The files matching each pattern, in pattern then name order; a pattern that matches nothing means the
    repository's layout is not the one the catalog expects (docs/reproduce.md lists it): FatalError."""
    chosen: dict[str, RemoteFile] = {}
    for pattern in patterns:
        hits = sorted((f for f in files if fnmatch.fnmatchcase(f.path, pattern)), key=lambda f: f.path)
        if not hits:
            raise FatalError(f"{repo} has no file matching {pattern!r} (its layout changed? docs/reproduce.md "
                             f"lists the files expected)")
        chosen.update((f.path, f) for f in hits)
    return list(chosen.values())


# ---------------------------------------------------------------------------------------------------------------
# disk


def free_bytes(folder) -> int:
    """Free space of the file system that holds `folder` (its nearest existing parent)."""
    folder = Path(folder).absolute()
    while not folder.exists():
        folder = folder.parent
    return shutil.disk_usage(folder).free


def check_disk(need: int, folder, what: str) -> None:
    free = free_bytes(folder)
    if need * DISK_MARGIN > free:
        raise FatalError(f"not enough disk for {what}: needs {gigabytes(need)} (+2% margin), {gigabytes(free)} free "
                         f"under {folder}; free space or pass --root on a larger disk")


# ---------------------------------------------------------------------------------------------------------------
# download and verification


def sha256_of(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def verify(path: Path, remote: RemoteFile, repo: str) -> None:
    """Size and published sha256; a file that does not match is removed (a rerun downloads it again)."""
    size = path.stat().st_size
    digest = sha256_of(path) if remote.sha256 else None
    if size != remote.size or (remote.sha256 and digest != remote.sha256):
        path.unlink()
        got = f"sha256 {digest}" if digest and digest != remote.sha256 else f"{size} bytes"
        want = f"sha256 {remote.sha256}" if digest and digest != remote.sha256 else f"{remote.size} bytes"
        raise FatalError(f"checksum mismatch for {repo}/{remote.path}: got {got}, the hub publishes {want}; the "
                         f"file was removed, rerun to download it again")


def download(repo: str, repo_type: str, commit: str, remote: RemoteFile, local_dir=None) -> Path:
    """One file at `commit` (into `local_dir`, else the hub cache), verified against the listing."""
    from huggingface_hub import hf_hub_download

    try:
        path = Path(hf_hub_download(repo, remote.path, repo_type=repo_type, revision=commit,
                                    local_dir=str(local_dir) if local_dir is not None else None))
    except Exception as e:
        raise _hub_failure(f"cannot download {repo}/{remote.path}", e) from None
    verify(path.resolve(), remote, repo)
    return path


def download_all(repo: str, repo_type: str, commit: str, files: list[RemoteFile], local_dir=None,
                 progress: bool = False, log=print) -> list[Path]:
    """Every file, with one rich bar over their megabytes (files already verified pass quickly)."""
    from harness.util.progress import progress_bar

    paths = []
    total = sum(f.size for f in files)
    with progress_bar(progress, f"{repo}", max(1, total // 10 ** 6), unit="MB") as advance:
        for f in files:
            log(f"fetching {repo}/{f.path} ({gigabytes(f.size)})")
            paths.append(download(repo, repo_type, commit, f, local_dir))
            advance(f.size // 10 ** 6)
    return paths
