"""Issue 16, item 8: impossible input on the command line, in config files and in the files the harness reads is
refused with one line naming the option, file or record (exit 2), with a close match where there is one; an output
folder that cannot be written or a full disk stops the command with one line naming the file (exit 3)."""
import errno
import json
import os
import pathlib

import pytest

from harness.cli.app import build_parser, main
from harness.config import RunConfig
from harness.errors import HarnessError

RUN = ["run", "--task", "smoke", "--task-arg", "videos=2", "--task-arg", "duration=6", "--backbone", "none",
       "--sampler", "uniform", "--no-progress"]


def one_line(capsys) -> str:
    """The command's stderr, which must be exactly one line."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def refused(capsys, argv, *fragments, code=2) -> str:
    """Run `harness argv`: it returns `code` and says every fragment on one line of stderr."""
    assert main(argv) == code
    line = one_line(capsys)
    for fragment in fragments:
        assert fragment in line, line
    return line


# -- run options out of range ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("option, value, says", [
    ("--frames", "100000", "at most 4096"),
    ("--frames", "0", "at least 1"),
    ("--workers", "-2", "at least 0"),
    ("--batch-size", "0", "at least 1"),
    ("--gpus-per-replica", "0", "at least 1"),
    ("--limit", "0", "at least 1"),
])
def test_run_options_out_of_range_are_refused(tmp_path, capsys, option, value, says):
    line = refused(capsys, [*RUN, "--out", str(tmp_path), option, value], option, says)
    assert value in line
    assert not list(tmp_path.iterdir())  # refused before anything ran


def test_frames_message_says_why():
    with pytest.raises(HarnessError, match="more frames than any video-LLM takes"):
        RunConfig(frames=100000).validate()


def test_sweep_budgets_are_validated(tmp_path, capsys):
    refused(capsys, ["sweep", "--task", "smoke", "--sampler", "uniform", "--backbone", "none", "--frames", "8,100000",
                     "--out", str(tmp_path / "runs"), "--report", str(tmp_path / "report")], "--frames", "100000")


@pytest.mark.parametrize("suffix, text, says", [
    (".toml", 'frames = "eight"\n', "frames must be an integer, got 'eight'"),
    (".toml", "frames = true\n", "frames must be an integer, got True"),
    (".toml", "frames = 100000\n", "frames must be at most 4096"),
    (".toml", 'samplers = "uniform"\n', "samplers must be a list"),
    (".toml", "limit = 1.5\n", "limit must be an integer"),
    (".toml", 'retry_errors = "yes"\n', "retry_errors must be true or false"),
    (".json", '{"task_args": [1, 2]}', "task_args must be a table"),
    (".json", '{"workers": -1}', "workers must be at least 0"),
    (".json", '{"samplers": ["uniform", 3]}', "samplers must be a list of strings"),
])
def test_config_file_fields_are_type_checked(tmp_path, capsys, suffix, text, says):
    path = tmp_path / f"run{suffix}"
    path.write_text(text)
    refused(capsys, [*RUN, "--out", str(tmp_path / "runs"), "--config", str(path)], f"config file {path}", says)


def test_config_file_unknown_field_gets_a_close_match(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("frame = 8\n")
    with pytest.raises(HarnessError, match="did you mean frames"):
        RunConfig.from_file(path)


# -- plug-in options of the wrong type -------------------------------------------------------------------------------
def test_task_option_of_the_wrong_type(tmp_path, capsys):
    refused(capsys, ["run", "--task", "smoke", "--task-arg", "videos=abc", "--backbone", "none", "--sampler",
                     "uniform", "--out", str(tmp_path)],
            "task 'smoke': option videos must be an integer, got 'abc'")


@pytest.mark.parametrize("kind, name, options, says", [
    ("sampler", "aks", {"depth": "abc"}, "sampler 'aks': option depth must be an integer, got 'abc'"),
    ("sampler", "aks", {"t1": "high"}, "sampler 'aks': option t1 must be a number, got 'high'"),
    ("sampler", "uniform", {"variant": [1]}, "sampler 'uniform': option variant must be a string, got [1]"),
    ("task", "smoke", {"videos": 2.5}, "task 'smoke': option videos must be an integer, got 2.5"),
    ("task", "smoke", {"videos": True}, "task 'smoke': option videos must be an integer, got True"),
    ("backbone", "colour-probe", {"device": ["cpu"]}, "backbone 'colour-probe': option device must be a string"),
])
def test_registry_checks_option_types(kind, name, options, says):
    from harness.registry import REGISTRIES

    with pytest.raises(HarnessError) as e:
        REGISTRIES[kind + "s"].create(name, **options)
    assert says in str(e.value)


def test_registry_keeps_values_of_the_right_type():
    from harness.registry import SAMPLERS, TASKS

    assert TASKS.create("smoke", videos=3, duration=5).config()["videos"] == 3  # an int where a float is declared
    assert SAMPLERS.create("aks", depth=None).config()  # an optional option may be null


# -- devices ----------------------------------------------------------------------------------------------------------
def test_missing_cuda_device_is_refused(tmp_path, capsys):
    import torch

    device = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU of this machine (cuda:0 without any)
    refused(capsys, [*RUN, "--out", str(tmp_path), "--device", device], f"device {device!r}", "CUDA device")


def test_torch_device_checks_what_is_there():
    import torch

    from harness.util.checks import torch_device

    if not torch.backends.mps.is_available():
        with pytest.raises(HarnessError, match="'mps'.*not available"):
            torch_device("mps", "the encoder")
    if not torch.cuda.is_available():
        with pytest.raises(HarnessError, match="'cuda'.*no CUDA device"):
            torch_device("cuda")
    with pytest.raises(HarnessError, match="invalid device 'gpu9'"):
        torch_device("gpu9")
    assert torch_device("cpu").type == "cpu"


# -- prompt styles ----------------------------------------------------------------------------------------------------
def test_prompt_style_typo_gets_a_close_match(capsys):
    refused(capsys, ["prompts", "--task", "smoke", "--style", "llava-vid", "--limit", "1"],
            "prompt style 'llava-vid'", "did you mean llava_vid")


def test_prompts_limit_must_be_positive(capsys):
    refused(capsys, ["prompts", "--task", "smoke", "--limit", "0"], "--limit must be at least 1, got 0")


def test_known_prompt_styles_still_print(capsys):
    assert main(["prompts", "--task", "smoke", "--style", "llava_vid", "--limit", "1"]) == 0
    assert "(style llava_vid)" in capsys.readouterr().out


# -- encoders ---------------------------------------------------------------------------------------------------------
@pytest.fixture
def no_hub(monkeypatch):
    """Any attempt to ask the hub (or load a config through transformers) fails the test."""
    import huggingface_hub
    import transformers

    def forbidden(*a, **k):
        raise AssertionError("the hub was asked")

    monkeypatch.setattr(huggingface_hub, "resolve_revision", forbidden, raising=False)
    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", forbidden)


def test_encoder_typo_gets_a_close_match_before_any_hub_call(no_hub):
    from harness.features.encoders import load_encoder

    with pytest.raises(HarnessError) as e:
        load_encoder("mini-clp")
    assert str(e.value).startswith("unknown encoder 'mini-clp'; did you mean mini-clip?")
    with pytest.raises(HarnessError, match="did you mean openai/clip-vit-large-patch14"):
        load_encoder("openai/clip-vit-large-patch41")


def test_encoder_typo_through_the_command_line(tmp_path, capsys, no_hub):
    refused(capsys, [*RUN[:-3], "--sampler", "topk:encoder=mini-clp", "--out", str(tmp_path)],
            "unknown encoder 'mini-clp'; did you mean mini-clip?")


def test_encoder_not_in_the_offline_cache(monkeypatch, tmp_path):
    import huggingface_hub

    from harness.features.encoders import load_encoder

    monkeypatch.setattr(huggingface_hub, "is_offline_mode", lambda: True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(HarnessError) as e:
        load_encoder("some-org/never-downloaded-clip")
    message = str(e.value)
    assert "'some-org/never-downloaded-clip'" in message and "not available offline" in message
    assert "\n" not in message


def test_existing_encoders_still_load(tiny_clip):
    from harness.features.encoders import load_encoder

    assert load_encoder(str(tiny_clip)).dim == 32
    assert load_encoder("mini-clip").kind == "features"


# -- unknown options --------------------------------------------------------------------------------------------------
def test_unknown_option_gets_a_close_match(capsys):
    line = refused(capsys, ["run", "--sampeler", "uniform"], "--sampeler", "did you mean --sampler?")
    assert line.startswith("harness run: error:")


def test_bad_option_values_stay_one_line(capsys):
    refused(capsys, ["run", "--frames", "eight"], "--frames", "'eight'")
    refused(capsys, ["run", "--retry-errors", "maybe"], "--retry-errors", "'maybe'")
    refused(capsys, ["tabel"], "did you mean table")


# -- files that are not text -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished smoke run read by the colour probe (no trained model)."""
    from harness.run.runner import Run

    out = tmp_path_factory.mktemp("runs")
    cfg = RunConfig(task="smoke", task_args={"videos": 2, "duration": 6.0}, backbone="colour-probe",
                    samplers=["uniform"], out=str(out), cache_dir=str(out / "cache"))
    [run] = Run(cfg, progress=False).execute()
    return run


def test_predictions_line_not_utf8(run_dir, tmp_path, capsys):
    import shutil

    bad = tmp_path / "run"
    shutil.copytree(run_dir, bad)
    rows = (bad / "predictions.jsonl").read_bytes()
    (bad / "predictions.jsonl").write_bytes(rows + b'{"sample_id": "\xff\xfe"}\n')
    refused(capsys, ["table", str(bad)], f"{bad / 'predictions.jsonl'}:3: not UTF-8 text")


def test_json_objects_names_the_line():
    from harness.util.fileio import json_objects

    with pytest.raises(HarnessError, match=r"^f.jsonl:2: not UTF-8 text$"):
        list(json_objects([b'{"a": 1}', b'{"a": "\xff"}'], "f.jsonl"))
    with pytest.raises(HarnessError, match=r"^f.jsonl:2: not valid JSON"):
        list(json_objects(['{"a": 1}', "garbage"], "f.jsonl"))
    assert list(json_objects([b'{"a": 1}', b"", '{"b": 2}'], "f")) == [(1, {"a": 1}), (3, {"b": 2})]


def test_json_objects_on_a_text_file_names_the_line(tmp_path):
    from harness.util.fileio import json_objects

    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"a": 1}\n' * 3000 + b'{"a": "\xc3("}\n' + b'{"a": 2}\n')  # past the decoder's first chunk
    with open(path) as f, pytest.raises(HarnessError, match=rf"^{path}:3001: not UTF-8 text$"):
        list(json_objects(f, str(path)))


@pytest.mark.parametrize("name, data, says", [
    ("sel.jsonl", b'{"sample_id": "a", "frame_indices": [1]}\n{"sample_id": "\xff"}\n', "sel.jsonl:2: not UTF-8 text"),
    ("sel.jsonl", b'{"sample_id": "a", "frame_indices": [1]}\nnot json\n', "sel.jsonl:2: not valid JSON"),
    ("sel.jsonl", b'{"sample_id": "a", "selection": 5}\n', "sel.jsonl:1: selection must be an object"),
    ("tspo.json", b'[{"id": "\xff"}]', "tspo.json: not UTF-8 text"),
])
def test_selection_files_that_are_not_text(tmp_path, name, data, says):
    from harness.store.selections import load_selections

    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(HarnessError) as e:
        load_selections(path)
    assert says in str(e.value) and str(tmp_path) in str(e.value)


def test_replay_of_a_non_utf8_selection_file(tmp_path, capsys):
    path = tmp_path / "sel.jsonl"
    path.write_bytes(b'{"sample_id": "a", "frame_indices": [1]}\n\xff\xfe garbage\n')
    refused(capsys, [*RUN[:-3], "--sampler", f"replay:file={path}", "--grid", "all", "--out", str(tmp_path / "o")],
            f"{path}:2: not UTF-8 text")


# -- output that cannot be written ------------------------------------------------------------------------------------
def test_unwritable_output_folder_stops_with_the_path(tmp_path, capsys, monkeypatch):
    locked = tmp_path / "read-only"
    locked.mkdir()
    locked.chmod(0o555)
    if os.geteuid() == 0:  # root writes through chmod: fail as the OS would for anyone else
        real = pathlib.Path.mkdir

        def mkdir(self, *a, **k):
            if str(self).startswith(str(locked)) and self != locked:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
            return real(self, *a, **k)

        monkeypatch.setattr(pathlib.Path, "mkdir", mkdir)
    try:
        line = refused(capsys, [*RUN, "--out", str(locked / "runs")], "harness: stopped: Permission denied: ",
                       str(locked / "runs"), code=3)
    finally:
        locked.chmod(0o755)
    assert "internal error" not in line


def test_output_under_a_file_stops_with_the_path(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    refused(capsys, [*RUN, "--out", str(tmp_path / "file" / "runs")], "harness: stopped: Not a directory: ",
            str(tmp_path / "file" / "runs"), code=3)


def test_full_disk_stops_with_the_path(tmp_path, capsys, monkeypatch):
    from harness.store import runs

    def full(self, row):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.dir / runs.PREDICTIONS))

    monkeypatch.setattr(runs.RunStore, "append", full)
    line = refused(capsys, [*RUN, "--out", str(tmp_path / "runs")], "harness: stopped: No space left on device: ",
                   "predictions.jsonl", code=3)
    assert str(tmp_path / "runs") in line


# -- --retry-errors ---------------------------------------------------------------------------------------------------
def test_bool_options_are_flags():
    from harness.cli.evaluate import run_config

    args = build_parser(["run"]).parse_args(["run", "--retry-errors"])
    assert run_config(args).retry_errors is True
    args = build_parser(["run"]).parse_args(["run", "--retry-errors", "--frames", "4"])
    assert run_config(args).retry_errors is True and run_config(args).frames == 4
    assert run_config(build_parser(["run"]).parse_args(["run"])).retry_errors is False
    assert run_config(build_parser(["run"]).parse_args(["run", "--retry-errors", "false"])).retry_errors is False


def test_config_file_bool_stays_unless_the_flag_is_given(tmp_path):
    from harness.cli.evaluate import run_config

    path = tmp_path / "run.json"
    path.write_text(json.dumps({"retry_errors": True}))
    args = build_parser(["run"]).parse_args(["run", "--config", str(path)])
    assert run_config(args).retry_errors is True
