"""What `harness data fetch` and `harness models fetch` download, from where, and where it lands.

Datasets land under a data root (default `$HF_HOME`) in lmms-eval's own layout, so a task finds its videos with no
option when the root is `$HF_HOME` (tasks/*.py `default_video_subdir`). Annotations are the files the tasks read as
`annotations=FILE` (the parquet lmms-eval loads, or the official JSON). Repositories, file names and sizes are those
lmms-eval and the benchmark authors publish (docs/reproduce.md cites each); the sizes here are the published
approximations for the offline line and the docs: an online fetch reads each file's exact size (and its LFS sha256)
from the hub's listing before it starts.

`revision` is the commit a fetch pins to. The upstream commits could not be read from this machine, so the catalog
says "main": the first fetch resolves it to a commit and records it in `<root>/harness-fetch.json`, and later
fetches (and the verdict tables) use that commit; `--revision` overrides.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError

GB = 10 ** 9


@dataclass(frozen=True)
class Archive:
    """Repository files (glob patterns, in order) that unpack into `into` (relative to the dataset folder):
    `kind` zip, tar, or tar-parts (concatenated in name order, then untarred); `flat` drops member folders."""

    patterns: tuple[str, ...]
    kind: str
    into: str = "."
    flat: bool = False


@dataclass(frozen=True)
class DatasetSource:
    task: str  # the harness task it feeds
    repo: str  # Hugging Face dataset repository
    folder: str  # under the data root: where the repository's files land (lmms-eval's cache layout)
    annotations: str  # repository path of the file passed as annotations=
    video_subdir: str  # under `folder`: the task's video_root after unpacking
    archives: tuple[Archive, ...]
    approx_bytes: int  # published size of the files fetched (docs/reproduce.md cites it)
    size_note: str
    gated: bool = False
    revision: str = "main"
    links_only: str = ""  # videos the hub does not hold: what to fetch by hand and where to put it
    extra_files: tuple[str, ...] = ()  # other repository files to fetch as they are

    def patterns(self) -> tuple[str, ...]:
        return (self.annotations, *self.extra_files, *(p for a in self.archives for p in a.patterns))

    def locations(self, root) -> dict:
        """The task options that point the task at this data under `root`."""
        base = Path(root) / self.folder
        return {"annotations": str(base / self.annotations), "video_root": str(base / self.video_subdir)}


@dataclass(frozen=True)
class ModelSource:
    name: str  # what recipes call it: {model:NAME}
    repo: str  # Hugging Face model repository
    approx_bytes: int
    note: str
    revision: str = "main"
    convert: str = ""  # backbone whose `harness convert` turns the download into the folder recipes load
    allow: tuple[str, ...] = field(default=())  # file patterns to fetch (empty: all)


DATASETS: dict[str, DatasetSource] = {s.task: s for s in (
    DatasetSource(
        task="longvideobench", repo="longvideobench/LongVideoBench", folder="datasets/longvideobench",
        annotations="lvb_val.json", video_subdir="videos",
        archives=(Archive(("videos.tar.part.*",), "tar-parts"),),
        approx_bytes=int(31 * 5.24 * GB), size_note="31 tar parts of 5.24 GB (videos.tar.part.aa ... .be)",
        gated=True),
    DatasetSource(
        task="mlvu", repo="sy1998/MLVU_dev", folder="mlvu", annotations="mlvu/test-00000-of-00001.parquet",
        video_subdir=".", archives=(Archive(("video_part_*.zip", "action_count.zip"), "zip", flat=True),),
        approx_bytes=8 * 35 * GB, size_note="8 video_part zips of 30-41 GB plus action_count.zip"),
    DatasetSource(
        task="videomme", repo="lmms-eval/Video-MME", folder="videomme",
        annotations="videomme/test-00000-of-00001.parquet", video_subdir="data",
        archives=(Archive(("videos_chunked_*.zip",), "zip", into="data", flat=True),),
        approx_bytes=4 * 25 * GB, size_note="videos_chunked_NN.zip of 21-27 GB each (count not verified)"),
    DatasetSource(
        task="lvbench", repo="lmms-eval/LVBench", folder="lvbench", annotations="data/train-00000-of-00001.parquet",
        video_subdir=".", archives=(Archive(("video_chunks/videos_chunk_*.zip",), "zip"),),
        approx_bytes=62 * GB, size_note="video_chunks/videos_chunk_NNN.zip, about 62 GB in all"),
)}

MODELS: dict[str, ModelSource] = {m.name: m for m in (
    ModelSource("qwen2.5-vl-7b", "Qwen/Qwen2.5-VL-7B-Instruct", int(16.6 * GB), "5 safetensors shards, bf16"),
    ModelSource("llava-video-7b", "lmms-lab/LLaVA-Video-7B-Qwen2", int(16.1 * GB),
                "original LLaVA-NeXT layout, converted with `harness convert llava-video`", convert="llava-video"),
    ModelSource("tspo-0.4b", "hzf666/TSPO-0.4B", int(0.9 * GB), "CLIP ViT-L/14 plus the TSPO selector"),
    ModelSource("clip-vit-large-patch14", "openai/clip-vit-large-patch14", int(1.7 * GB),
                "BOLT's and TSPO's CLIP", allow=("*.json", "*.txt", "model.safetensors")),
    ModelSource("blip-itm-large-coco", "Salesforce/blip-itm-large-coco", int(1.8 * GB), "AKS's BLIP ITM scorer",
                allow=("*.json", "*.txt", "model.safetensors")),
)}


def _pick(table: dict, name: str, kind: str, option: str):
    if name in table:
        return table[name]
    close = difflib.get_close_matches(name, sorted(table), n=1, cutoff=0.5)
    raise HarnessError(f"{option}: no {kind} {name!r} to fetch" + (f"; did you mean {close[0]}?" if close else "")
                       + f" (known: {', '.join(sorted(table))})")


def dataset(task: str) -> DatasetSource:
    return _pick(DATASETS, task, "dataset for task", "--task")


def model(name: str) -> ModelSource:
    return _pick(MODELS, name, "model", "NAME")


def data_root(root=None) -> Path:
    """--root, else $HF_HOME (where lmms-eval and the tasks' defaults look)."""
    return Path(os.path.expanduser(root or os.environ.get("HF_HOME", "~/.cache/huggingface")))


def converted_folder(source: ModelSource) -> Path:
    """Where `harness models fetch` puts a converted checkpoint: beside the hub cache."""
    return data_root() / "harness-converted" / source.name
