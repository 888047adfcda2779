"""The project's own regression gate: a stratified subset of the offline default run (`harness run --limit 12`, every
default sampler) must give exactly the answers and selections of results/default.baseline.json, saved from the full
default run. A change that moves a shipped number fails here until the baseline is regenerated on purpose:

    harness run && harness baseline save runs/needle__mini-qwen2.5-vl__* --out results/default.baseline.json

(docs/ci.md). The subset is compared on its own 12 samples per sampler, by sample id.
"""
import json
import xml.etree.ElementTree as ET
from pathlib import Path

from harness.cli.app import main
from harness.config import DEFAULT_SAMPLERS

ROOT = Path(__file__).resolve().parents[2]
BASELINE = ROOT / "results" / "default.baseline.json"
LIMIT = 12


def test_the_baseline_covers_the_default_run():
    doc = json.loads(BASELINE.read_text())
    assert doc["format"] == "longvideo-harness-baseline" and doc["version"] == 1
    labels = sorted(e["label"].split(" / ")[2] for e in doc["runs"])
    assert labels == sorted(DEFAULT_SAMPLERS)
    for entry in doc["runs"]:
        assert entry["subset"]["limit"] is None and len(entry["samples"]) == entry["summary"]["n"] == 200
        assert entry["identity"]["frames"] == 8 and entry["identity"]["backbone"]["name"] == "mini-qwen2.5-vl"


def test_a_subset_of_the_default_run_matches_the_committed_baseline_exactly(tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["run", "--limit", str(LIMIT), "--out", str(out), "--cache-dir", str(tmp_path / "features")]) == 0
    run_dirs = sorted(str(d) for d in out.iterdir())
    assert len(run_dirs) == len(DEFAULT_SAMPLERS)
    capsys.readouterr()
    junit = tmp_path / "regress.xml"
    code = main(["regress", *run_dirs, "--baseline", str(BASELINE), "--mode", "exact", "--junit", str(junit)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert printed.strip().splitlines()[-1].startswith(f"PASS: {len(DEFAULT_SAMPLERS)} runs match baseline")
    cases = ET.parse(junit).getroot().findall(".//testcase")
    assert len(cases) == len(DEFAULT_SAMPLERS) and all(c.find("failure") is None for c in cases)
    for run_dir in run_dirs:  # the runner recorded the subset: 12 of the 200 questions, balanced by question type
        subset = json.loads((Path(run_dir) / "config.json").read_text())["subset"]
        assert subset == {"limit": LIMIT, "stratify": "question_type", "available": 200, "selected": LIMIT}
