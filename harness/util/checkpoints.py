"""Checkpoint folders: which shard holds which tensor (the index files), and what identifies a folder's weights
in a run identity."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from harness.util.text import few

INDEX_NAMES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
SMALL_FILE = 64 << 20  # weight files up to this size are hashed whole for the run identity


def shard_files(folder, index_names=INDEX_NAMES, wanted=None) -> list[Path] | None:
    """The shard files named by the folder's first index found (those holding a tensor for which `wanted(key)` is
    true, or all of them when none does or `wanted` is None); None when the folder has no index. A malformed index,
    one that maps nothing or one naming missing files is a HarnessError."""
    from harness.errors import HarnessError

    folder = Path(folder)
    for name in index_names:
        index = folder / name
        if not index.is_file():
            continue
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            pairs = [(str(k), str(v)) for k, v in weight_map.items()]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise HarnessError(f"cannot read shard index {index}: {' '.join(str(e).split())}") from None
        if not pairs:
            raise HarnessError(f"shard index {index} maps no tensors")
        chosen = {v for k, v in pairs if wanted is not None and wanted(k)} or {v for _, v in pairs}
        missing = sorted(n for n in chosen if not (folder / n).is_file())
        if missing:
            raise HarnessError(f"{folder} lacks shards named in its index {index.name}: {few(missing)}")
        return [folder / n for n in sorted(chosen)]
    return None


def weights_id(source: str) -> str:
    """What identifies the weights for the run identity: content digest of a local folder (small files whole, large
    ones by name and size, so a 15 GB checkpoint is not read), or the hub commit the id resolves to offline."""
    path = Path(source)
    if path.is_dir():
        h = hashlib.sha256()
        for f in sorted(p for p in path.iterdir() if p.is_file()):
            size = f.stat().st_size
            h.update(json.dumps([f.name, size]).encode())
            if size <= SMALL_FILE:
                h.update(f.read_bytes())
        return f"sha256:{h.hexdigest()[:16]}"
    try:
        import huggingface_hub

        offline = huggingface_hub.is_offline_mode()
        return f"{source}@{huggingface_hub.resolve_revision(source, local_files_only=offline)}"
    except Exception:  # unresolvable: loading will report the real problem
        return source
