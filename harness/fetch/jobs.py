"""`harness data fetch` and `harness models fetch`: a catalog entry through hub.py, unpacked, pinned and checked."""
from __future__ import annotations

import fnmatch
from pathlib import Path

from harness.errors import HarnessError
from harness.fetch import hub
from harness.fetch.catalog import DatasetSource, ModelSource, converted_folder, data_root
from harness.fetch.unpack import unpack

HUB_CACHE = "hub"  # under $HF_HOME, where huggingface_hub keeps models


def _endpoint() -> str:
    import huggingface_hub.constants
    return huggingface_hub.constants.ENDPOINT


def dataset_offline_line(src: DatasetSource, root, revision: str | None) -> str:
    rev = revision or hub.read_pins(root).get(src.repo, {}).get("commit") or src.revision
    files = ", ".join(src.patterns())
    return (f"would fetch {src.task}: {_endpoint()}/datasets/{src.repo} @ {rev}: {files} ({src.size_note}; about "
            f"{hub.gigabytes(src.approx_bytes)}) -> {Path(root) / src.folder} (offline: HF_HUB_OFFLINE=1, nothing "
            f"fetched)")


def model_offline_line(src: ModelSource, revision: str | None) -> str:
    rev = revision or hub.read_pins(data_root()).get(src.repo, {}).get("commit") or src.revision
    then = f", then harness convert {src.convert} -> {converted_folder(src)}" if src.convert else ""
    return (f"would fetch {src.name}: {_endpoint()}/{src.repo} @ {rev} ({src.note}; about "
            f"{hub.gigabytes(src.approx_bytes)}) -> the hub cache{then} (offline: HF_HUB_OFFLINE=1, nothing fetched)")


def _commit(root, repo: str, repo_type: str, revision: str | None, default: str):
    """(commit, files) at the requested revision, else the pinned commit, else the catalog's revision (pinned now)."""
    pinned = hub.read_pins(root).get(repo, {}).get("commit")
    commit, files = hub.list_files(repo, repo_type, revision or pinned or default)
    if revision is None and pinned is None:
        hub.write_pin(root, repo, {"commit": commit, "requested": default})
    return commit, files


def fetch_dataset(src: DatasetSource, root=None, revision: str | None = None, keep_archives: bool = False,
                  progress: bool = False, log=print) -> dict:
    """Download and unpack a benchmark under `root`; returns the task options that point at it."""
    root = data_root(root)
    folder = root / src.folder
    commit, listing = _commit(root, src.repo, "dataset", revision, src.revision)
    done = set(hub.read_pins(root).get(src.repo, {}).get("unpacked", []))
    todo_archives = [a for a in src.archives if ",".join(a.patterns) not in done]
    plain = [src.annotations, *src.extra_files]
    wanted = hub.select(listing, plain + [p for a in todo_archives for p in a.patterns], src.repo)
    missing = [f for f in wanted if not _verified(folder / f.path, f)]
    archive_bytes = sum(f.size for f in missing if f.path not in plain)
    need = sum(f.size for f in missing) + archive_bytes  # an archive's contents take about its size again
    log(f"{src.repo} @ {commit}: {len(wanted)} files, {len(missing)} to download ({hub.gigabytes(need)} of disk "
        f"with unpacking)")
    hub.check_disk(need, folder, f"{src.task} ({src.repo})")
    hub.download_all(src.repo, "dataset", commit, missing, local_dir=folder, progress=progress, log=log)
    for archive in todo_archives:
        parts = [folder / f.path for f in wanted if any(fnmatch.fnmatchcase(f.path, p) for p in archive.patterns)]
        log(f"unpacking {len(parts)} {archive.kind} file(s) into {folder / archive.into}")
        n = unpack(archive.kind, parts, folder / archive.into, archive.flat)
        log(f"unpacked {n} files")
        hub.write_pin(root, src.repo, {"unpacked": sorted(done | {",".join(archive.patterns)})})
        done.add(",".join(archive.patterns))
        if not keep_archives:
            for p in parts:
                p.unlink(missing_ok=True)
    if src.links_only:
        log(src.links_only)
    return src.locations(root)


def _verified(path: Path, remote: hub.RemoteFile) -> bool:
    """A file already downloaded whole (its sha256 is checked again by `download` only when it is fetched)."""
    return path.is_file() and path.stat().st_size == remote.size


def fetch_model(src: ModelSource, revision: str | None = None, progress: bool = False, log=print) -> Path:
    """A checkpoint into the hub cache at a pinned commit (converted when the recipes load a converted folder);
    returns the folder recipes load."""
    root = data_root()
    commit, listing = _commit(root, src.repo, "model", revision, src.revision)
    wanted = [f for f in listing if not src.allow or any(fnmatch.fnmatchcase(f.path, p) for p in src.allow)]
    need = sum(f.size for f in wanted) * (2 if src.convert else 1)
    log(f"{src.repo} @ {commit}: {len(wanted)} files ({hub.gigabytes(need)} of disk"
        + (" with the converted copy)" if src.convert else ")"))
    hub.check_disk(need, root, src.name)
    paths = hub.download_all(src.repo, "model", commit, wanted, progress=progress, log=log)
    snapshot = _snapshot_folder(paths[0], wanted[0].path)
    if not src.convert:
        return snapshot
    dst = converted_folder(src)
    if (dst / "config.json").is_file():
        log(f"converted folder {dst} exists; kept")
        return dst
    from harness.registry import BACKBONES

    done = BACKBONES.get(src.convert).factory.convert_checkpoint(str(snapshot), str(dst), log=log)
    log(f"converted {done['tensors']} tensors to {done['dst']}")
    return dst


def _snapshot_folder(path: Path, relpath: str) -> Path:
    folder = Path(path)
    for _ in Path(relpath).parts:
        folder = folder.parent
    return folder


def model_folder(src: ModelSource) -> Path:
    """The folder a recipe's {model:NAME} means; a HarnessError naming the fetch command when it is not there."""
    if src.convert:
        folder = converted_folder(src)
        if (folder / "config.json").is_file():
            return folder
    else:
        from huggingface_hub import try_to_load_from_cache

        commit = hub.read_pins(data_root()).get(src.repo, {}).get("commit")
        hit = try_to_load_from_cache(src.repo, "config.json", revision=commit)
        if isinstance(hit, str):
            return Path(hit).parent
    raise HarnessError(f"model {src.name} ({src.repo}) is not fetched; run `harness models fetch {src.name}`")
