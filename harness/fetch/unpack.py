"""Archives into the layout the tasks read: zip, tar, or tar split into parts (LongVideoBench's videos.tar.part.aa
... .be, concatenated in name order as lmms-eval does). Member paths that are absolute or climb out with `..` are
refused; `flat` keeps only each member's file name (MLVU and Video-MME videos lie flat)."""
from __future__ import annotations

import shutil
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from harness.errors import FatalError


def _target(dest: Path, name: str, flat: bool, archive: Path) -> Path | None:
    """Where a member goes (None: a folder entry to skip)."""
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts:
        raise FatalError(f"{archive.name} holds an unsafe member path {name!r}; not unpacking it")
    if name.endswith("/"):
        return None
    return dest / (p.name if flat else p)


def _write(target: Path, src) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 22)


def unzip(archive: Path, dest: Path, flat: bool) -> int:
    n = 0
    with zipfile.ZipFile(archive) as z:
        for info in z.infolist():
            target = _target(dest, info.filename, flat, archive)
            if target is None or info.is_dir():
                continue
            with z.open(info) as src:
                _write(target, src)
            n += 1
    return n


class _Joined:
    """The parts of a split tar read as one stream (no concatenated copy on disk)."""

    def __init__(self, parts):
        self.parts, self.current = list(parts), None

    def read(self, size=-1) -> bytes:
        while True:
            if self.current is None:
                if not self.parts:
                    return b""
                self.current = open(self.parts.pop(0), "rb")
            data = self.current.read(size)
            if data:
                return data
            self.current.close()
            self.current = None


def untar(stream_or_path, dest: Path, flat: bool, name: Path) -> int:
    n = 0
    opened = tarfile.open(name=str(stream_or_path), mode="r:*") if isinstance(stream_or_path, Path) else \
        tarfile.open(fileobj=stream_or_path, mode="r|*")
    with opened as tar:
        for member in tar:
            target = _target(dest, member.name, flat, name)
            if target is None or not member.isfile():
                continue
            with tar.extractfile(member) as src:
                _write(target, src)
            n += 1
    return n


def unpack(kind: str, files: list[Path], dest: Path, flat: bool) -> int:
    """Files written under `dest` from `files` (one archive each, or the parts of one tar)."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if kind == "zip":
            return sum(unzip(f, dest, flat) for f in files)
        if kind == "tar":
            return sum(untar(f, dest, flat, f) for f in files)
        if kind == "tar-parts":
            return untar(_Joined(sorted(files)), dest, flat, files[0])
    except (zipfile.BadZipFile, tarfile.TarError) as e:
        raise FatalError(f"cannot unpack {files[0].name}: {e}") from None
    raise ValueError(f"unknown archive kind {kind!r}")
