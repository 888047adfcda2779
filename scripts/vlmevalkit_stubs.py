"""Import VLMEvalKit's video dataset modules from a copy of its repository without its heavy package imports
(used by scripts/parity_vlmevalkit.py only; never in CI). `vlmeval/__init__.py` and the package `__init__`s import
every model and dataset, so the packages are created empty here with their real folders as `__path__`, and the few
helpers the dataset modules take from `vlmeval.smp` are replaced: `load`/`dump` keep tables in memory (so a
dataset's own `evaluate` runs on a prediction table given to it), the rest are inert."""
from __future__ import annotations

import importlib.util
import os
import sys
import types

import numpy as np

FILES: dict[str, object] = {}  # path -> table or object written by dump


def _module(name: str, path: str | None = None, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name)
    if path is not None:
        mod.__path__ = [path]
    mod.__dict__.update(attrs)
    sys.modules[name] = mod
    return mod


def _inert(*args, **kwargs):
    return None


def _load(path):
    return FILES[path].copy() if hasattr(FILES[path], "copy") else FILES[path]


def _dump(obj, path):
    FILES[path] = obj


def _intermediate(eval_file, suffix, ext=None):
    stem, dot, old = eval_file.rpartition(".")
    return f"{stem}{suffix}.{ext or old}"


class _FakeReader:
    """decord.VideoReader stand-in: a frame count and an average fps, set per path by `set_video`."""
    VIDEOS: dict[str, tuple[int, float]] = {}

    def __init__(self, path, *args, **kwargs):
        self.n, self.fps = self.VIDEOS[os.path.basename(str(path))]

    def __len__(self):
        return self.n

    def get_avg_fps(self):
        return self.fps


def install(repo: str) -> None:
    """Make `import vlmeval.dataset.videomme` (and longvideobench, mlvu) work from the copy at `repo`."""
    root = os.path.join(repo, "vlmeval")
    if not os.path.isdir(root):
        raise SystemExit(f"{repo} has no vlmeval/ folder (give the root of a VLMEvalKit checkout)")
    _module("decord", VideoReader=_FakeReader)
    if importlib.util.find_spec("portalocker") is None:
        _module("portalocker", Lock=_inert)
    smp_names = dict(load=_load, dump=_dump, md5=_inert, get_cache_path=_inert, download_file=_inert,
                     file_size=_inert, get_file_extension=lambda p: p.rpartition(".")[2],
                     get_intermediate_file_path=_intermediate, modelscope_flag_set=lambda: False,
                     cn_string=lambda s: False, d2df=_inert, get_logger=lambda *a, **k: _Log(),
                     get_pred_file_format=lambda: "xlsx", istype=_inert, timestr=_inert, LMUDataRoot=lambda: "/tmp",
                     INFER_FAIL_MSG="Failed to obtain answer via API.", RUN_STATUS_NAME="status",
                     _prediction_table=_inert, fetch_aux_files=_inert, is_number=_inert, to_number=_inert,
                     build_option_str=lambda choices: "", track_progress_rich=_inert,
                     toliststr=lambda x: list(x) if isinstance(x, (list, tuple)) else [x])
    _module("vlmeval", root)
    _module("vlmeval.smp", os.path.join(root, "smp"), **smp_names)
    for sub in ("file", "log", "vlm", "status_report"):
        _module(f"vlmeval.smp.{sub}", **smp_names)
    _module("vlmeval.utils", os.path.join(root, "utils"), track_progress_rich=_inert)
    import vlmeval.utils.matching_util as matching  # the real matcher

    sys.modules["vlmeval.utils"].can_infer = matching.can_infer
    sys.modules["vlmeval.utils"].can_infer_lego = matching.can_infer_lego
    _module("vlmeval.dataset", os.path.join(root, "dataset"))
    _module("vlmeval.dataset.utils", os.path.join(root, "dataset", "utils"), DEBUG_MESSAGE="", build_judge=_inert)
    _module("vlmeval.dataset.image_base", _choose_primary_metric_key=_inert, _count_markers_in_obj=_inert,
            _score_judge_file_candidate=_inert)
    np.seterr(all="ignore")


class _Log:
    def __getattr__(self, name):
        return _inert


def bare(cls, **attrs):
    """An instance of a VLMEvalKit dataset class without its __init__ (which downloads the dataset)."""
    obj = object.__new__(cls)
    obj.__dict__.update({"data_root": "/data", "frame_root": "/frames", "nframe": 0, "fps": -1,
                         "frame_tmpl": "frame-{}-of-{}.jpg", "frame_tmpl_fps": "frame-{}-of-{}-{}fps.jpg", **attrs})
    obj.frame_paths = lambda *a: []  # nothing to write: its "all frames exist" check passes on an empty list
    obj.frame_paths_fps = lambda *a: []
    return obj
