"""What the side-environment tests (test_toolkit_readers.py, test_toolkit_real_records.py) share: the export
helpers and the toolkits' own code, imported the way scripts/parity_vlmevalkit.py imports VLMEvalKit."""
import importlib
import os
import sys
from pathlib import Path

import pytest

from export_runs import harness

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))  # vlmevalkit_stubs, vlmevalkit_corpus
LMMS_TASK = {"videomme": "videomme", "longvideobench": "longvideobench_val_v", "mlvu": "mlvu_dev"}
METRIC = {"videomme": "videomme_perception_score", "longvideobench": "lvb_acc", "mlvu": "mlvu_percetion_score",
          "lvbench": "lvbench_score"}


def lmms_export(run_dir, out):
    assert harness("export", run_dir, "--format", "lmms-eval", "--out", out) == 0
    [res] = list(Path(out).rglob("*_results.json"))
    [samples] = list(res.parent.glob("*_samples_*.jsonl"))
    return res, samples


def job_scheduler():
    """lmms-eval's JobScheduler class, imported without its package `__init__`, which starts with the HTTP server's
    imports (uvicorn: lmms-eval's server extra, absent from the [parity] install)."""
    import types

    import lmms_eval

    if "lmms_eval.entrypoints" not in sys.modules:
        pkg = types.ModuleType("lmms_eval.entrypoints")
        pkg.__path__ = [os.path.join(os.path.dirname(lmms_eval.__file__), "entrypoints")]
        sys.modules["lmms_eval.entrypoints"] = pkg
    return importlib.import_module("lmms_eval.entrypoints.job_scheduler").JobScheduler


def hf_doc(task: str, sample, row) -> dict:
    """The sample as the Hugging Face row lmms-eval's task functions read."""
    md = sample.metadata
    if task == "videomme":
        return {**{k: md[k] for k in ("question_id", "duration", "domain", "sub_category", "task_type", "videoID")},
                "answer": row["answer"]}
    if task == "longvideobench":
        return {"id": sample.id, "duration_group": int(md["duration_group"]),
                "question_category": md["question_category"], "correct_choice": sample.answer,
                **{f"option{i}": (sample.options[i] if i < len(sample.options) else "N/A") for i in range(5)}}
    return {"question": md["question"], "task_type": md["task_type"], "answer": row["answer"]}


def install_vlmevalkit():
    """VLMEvalKit's dataset modules from VLMEVALKIT_SRC (stubbed package imports: scripts/vlmevalkit_stubs.py), or a
    skip without it or without openpyxl (its .xlsx reader)."""
    src = os.environ.get("VLMEVALKIT_SRC")
    if not src:
        pytest.skip("VLMEVALKIT_SRC (a copy of VLMEvalKit's repository) is not set")
    pytest.importorskip("openpyxl")
    import vlmevalkit_stubs as stubs
    stubs.install(src)
    return stubs


def vlmevalkit_evaluate(stubs, task: str, xlsx: Path):
    """Its dataset's evaluate on the file as its `load` reads an .xlsx (pd.read_excel)."""
    import pandas as pd

    stubs.FILES[str(xlsx)] = pd.read_excel(xlsx)
    if task == "videomme":
        from vlmeval.dataset.videomme import VideoMME
        return VideoMME.evaluate(str(xlsx), model="exact_matching")
    if task == "longvideobench":
        from vlmeval.dataset.longvideobench import LongVideoBench
        return LongVideoBench.evaluate(str(xlsx), model="exact_matching")
    from vlmeval.dataset.mlvu import MLVU, MLVU_MCQ
    from vlmeval.dataset.video_concat_dataset import ConcatVideoDataset
    ConcatVideoDataset.__init__ = lambda self, dataset, **kw: None  # its __init__ downloads the sub-datasets
    composite = stubs.bare(MLVU)
    MLVU.__init__(composite, dataset="MLVU")
    composite.dataset_name, composite.datasets, composite.dataset_map = "MLVU", ["MLVU_MCQ"], {"MLVU_MCQ": MLVU_MCQ}
    return MLVU.evaluate(composite, str(xlsx), model="exact_matching")
