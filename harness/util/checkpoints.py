"""Reading a sharded checkpoint folder's index (`model.safetensors.index.json`, `pytorch_model.bin.index.json`):
the one place converters and weight readers learn which file holds which tensor."""
from __future__ import annotations

import json
from pathlib import Path

from harness.util.text import few

INDEX_NAMES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


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
