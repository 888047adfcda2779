"""Every shipped recipe is valid (its task, backbone, sampler and their options exist), the list holds the cells the
issue names, bad recipe files are one line, and a recipe runs end to end offline with its verdict."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.reproduce.recipe import check_registered, load_recipes

ROOT = Path(__file__).resolve().parents[2]
RECIPES = load_recipes()


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_names_registered_plugins_and_options(name):
    check_registered(RECIPES[name])


def test_the_list_holds_tspos_sixteen_cells_and_the_aks_and_bolt_rows():
    # TSPO main table (README main_results): backbone x selector x benchmark
    tspo = {(r.name, c.name): c.published for r in RECIPES.values() if r.name.startswith("tspo-") for c in r.cells
            if c.name != "videomme-long"}
    assert len(tspo) == 16
    assert tspo[("tspo-llava-video-tspo", "longvideobench")] == 63.9
    assert tspo[("tspo-qwen2.5-vl-tspo", "lvbench")] == 46.4
    assert tspo[("tspo-qwen2.5-vl-uniform", "mlvu")] == 65.1
    assert {c.run["task"] for r in RECIPES.values() if r.name.startswith("aks-") for c in r.cells} == {
        "longvideobench", "videomme"}
    bolt = {(r.cells[0].run["task"], c.name): c.published
            for r in RECIPES.values() if r.name.startswith("bolt-") for c in r.cells}
    assert len(bolt) == 18 and bolt[("videomme", "bolt-8")] == 57.4 and bolt[("mlvu", "uniform-32")] == 62.5
    assert RECIPES["needle-default"].world == "offline"
    assert all("../shared" not in r.source for r in RECIPES.values())


def _write(tmp_path, text: str) -> Path:
    folder = tmp_path / "recipes"
    folder.mkdir(exist_ok=True)
    (folder / "r.toml").write_text(text)
    return folder


GOOD = """
[[recipe]]
name = "small"
paper = "p"
table = "t"
row = "r"
source = "paper section 4"
world = "offline"
tolerance = 0.5
tolerance_reason = "why"
[recipe.run]
task = "needle"
backbone = "mini-qwen2.5-vl"
frames = 8
protocol = "harness needle"
[[recipe.cell]]
name = "uniform"
sampler = "uniform"
published = PUBLISHED
"""


@pytest.mark.parametrize("change, message", [
    (("tolerance_reason", "tolerence_reason"), "unknown key 'tolerence_reason'; did you mean tolerance_reason?"),
    (("published = PUBLISHED", ""), "cell 'uniform': missing 'published'"),
    (('source = "paper section 4"', 'source = "../shared/docs/x.md"'), "source must cite the paper"),
    (('world = "offline"', 'world = "cloud"'), "world must be one of gpu, offline"),
])
def test_bad_recipe_files_are_one_line(tmp_path, change, message):
    text = GOOD.replace(*change).replace("PUBLISHED", "1.0")
    with pytest.raises(HarnessError, match=message.replace("(", r"\(").replace("?", r"\?")):
        load_recipes(_write(tmp_path, text))


def test_an_unknown_sampler_option_is_named(tmp_path):
    text = GOOD.replace("PUBLISHED", "1.0").replace('sampler = "uniform"',
                                                      'sampler = "uniform"\nsampler_args = { variamt = "x" }')
    with pytest.raises(HarnessError, match="sampler 'uniform' has no option 'variamt'; did you mean variant"):
        check_registered(load_recipes(_write(tmp_path, text))["small"])


def _harness(args, cwd):
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}, timeout=900)


def test_an_offline_recipe_runs_end_to_end_with_its_verdict(tmp_path):
    """A subset variant of the offline recipe (uniform on 4 questions): the measured number is the run directory's
    accuracy, read here from its predictions (correct rows / rows); the verdict follows the tolerance, and the
    rerun resumes the same run directory."""
    folder = _write(tmp_path, GOOD.replace("PUBLISHED", "50.0"))
    args = ["reproduce", "small", "--recipes", str(folder), "--limit", "4", "--out", str(tmp_path / "runs"),
            "--cache-dir", str(tmp_path / "cache")]
    done = _harness(args, tmp_path)
    assert done.returncode in (0, 4), done.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    rows = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    right = sum(r["prediction"]["parsed"] == r["answer"] for r in rows)
    accuracy = 100.0 * right / len(rows)
    assert len(rows) == 4
    verdict = "within" if abs(accuracy - 50.0) <= 0.5 else "OUTSIDE"
    assert (f"| uniform | 50 | {accuracy:.2f} | {accuracy - 50:+.2f} | +-0.5 | {verdict} | 4 | {run_dir} |"
            in done.stdout), done.stdout
    assert done.returncode == (0 if verdict == "within" else 4)
    again = _harness(args, tmp_path)  # resumes: the same directory, nothing answered again
    assert again.stdout == done.stdout
    assert len((run_dir / "predictions.jsonl").read_text().splitlines()) == 4


def test_unknown_recipe_has_a_close_match(tmp_path):
    done = _harness(["reproduce", "needle-defualt"], tmp_path)
    assert done.returncode == 2 and "did you mean needle-default?" in done.stderr


def test_the_speed_options_reach_every_run_and_its_command(tmp_path):
    """--decode-backend, --gpu-decoders and --nvdec-processes (speed only: the frames are the same) go into each
    run's config, as --workers and --batch-size do, and the printed command is the one run."""
    from harness.reproduce.recipe import load_recipes as load
    from harness.reproduce.runner import Settings, command_line, groups

    recipe = load(_write(tmp_path, GOOD.replace("PUBLISHED", "50.0")))["small"]
    settings = Settings(workers=2, batch_size=3, decode_backend="pyav", gpu_decoders=1, nvdec_processes=True)
    [(cfg, _)] = groups(recipe, settings, resolve=lambda v: v, check=False)
    assert (cfg.decode_backend, cfg.workers, cfg.batch_size, cfg.gpu_decoders, cfg.nvdec_processes) == \
        ("pyav", 2, 3, 1, True)
    assert command_line(cfg).endswith(" --decode-backend pyav --workers 2 --gpu-decoders 1 --batch-size 3 "
                                      "--nvdec-processes")
    [(plain, _)] = groups(recipe, Settings(), resolve=lambda v: v, check=False)
    # reproduce decodes in the main process unless told (harness run's default is one worker): said in the command
    assert command_line(plain).endswith(" --workers 0")
    assert not {"--decode-backend", "--gpu-decoders", "--nvdec-processes"} & set(command_line(plain).split())


def test_gpu_decoders_without_a_gpu_decoder_are_one_line(tmp_path):
    folder = _write(tmp_path, GOOD.replace("PUBLISHED", "50.0"))
    done = _harness(["reproduce", "small", "--recipes", str(folder), "--limit", "1", "--out", str(tmp_path / "runs"),
                     "--workers", "1", "--decode-backend", "pyav", "--gpu-decoders", "1"], tmp_path)
    assert done.returncode == 2 and "--gpu-decoders 1" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "runs").exists()
