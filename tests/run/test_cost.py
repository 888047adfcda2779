"""What choosing frames cost, measured by the runner per row and summarised by `harness compare`: seconds of
selection per 1000 questions, candidates scored, video-LLM passes (issue 17's cost column)."""
import json

from harness.config import RunConfig
from harness.report.compare import compare, render
from harness.run.runner import Run
from tasks.smoke import FPS


def rows(run_dir):
    return [json.loads(x) for x in (run_dir / "predictions.jsonl").read_text().splitlines()]


def run(tmp_path, backbone):
    cfg = RunConfig(task="smoke", task_args={"videos": 4, "duration": 12.0}, backbone=backbone, frames=4,
                    samplers=["uniform", "topk:encoder=mini-clip"], out=str(tmp_path / backbone),
                    cache_dir=str(tmp_path / "cache"))
    return Run(cfg, progress=False).execute()


def test_rows_record_what_their_selection_and_answer_took(tmp_path):
    uniform, topk = run(tmp_path, "colour-probe")
    grid = 12  # a 12 s smoke video at 8 fps on the 1fps grid: frames 0, 8, ..., 88 (12 candidates)
    assert FPS == 8
    assert {json.dumps(r["cost"], sort_keys=True) for r in rows(uniform)} == {
        json.dumps({"frames_scored": 0, "backbone_passes": 1}, sort_keys=True)}
    assert all(r["cost"] == {"frames_scored": grid, "backbone_passes": 1} for r in rows(topk))
    table = compare([uniform, topk]).table.set_index("sampler")
    assert table.loc["uniform", "frames_scored"] == 0 and table.loc["topk:encoder=mini-clip", "frames_scored"] == grid
    assert (table["backbone_passes"] == 1).all()
    seconds = [r["prediction"]["timings"]["select"] for r in rows(topk)]
    assert table.loc["topk:encoder=mini-clip", "select_s_per_1k"] == 1000 * sum(seconds) / len(seconds) > 0
    md = render(compare([uniform, topk]), "md")
    assert "select s/1k q" in md and "frames scored/q" in md and "backbone passes/q" in md


def test_selection_only_runs_pass_the_backbone_zero_times(tmp_path):
    uniform, topk = run(tmp_path, "none")
    assert all(r["cost"]["backbone_passes"] == 0 for d in (uniform, topk) for r in rows(d))
    assert all(r["cost"]["frames_scored"] == 12 for r in rows(topk))


def test_runs_written_before_costs_show_none(tmp_path):
    uniform, topk = run(tmp_path, "colour-probe")
    for d in (uniform, topk):
        stripped = [{k: v for k, v in r.items() if k not in ("cost", "digest")} for r in rows(d)]
        (d / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in stripped))
    table = compare([uniform, topk]).table
    assert table["frames_scored"].isna().all() and table["backbone_passes"].isna().all()
