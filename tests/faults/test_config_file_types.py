"""Issue 19 item 6: every value of a config file is checked against its field's type (and, for the options that
take one of a few names, against those names) before anything runs: one line naming the file and key, exit 2,
never `internal error: TypeError`. Through the CLI, as a user meets it."""
import pytest

from harness.cli.app import main
from harness.config import CHOICES, RunConfig

RUN = ["run", "--task", "smoke", "--task-arg", "videos=2", "--backbone", "none", "--no-progress"]


@pytest.mark.parametrize("text, says", [
    ('frames = "eight"\n', "frames must be an integer, got 'eight'"),
    ("frames = 8.5\n", "frames must be an integer, got 8.5"),
    ('limit = "all"\n', "limit must be an integer, got 'all'"),
    ("task = 3\n", "task must be a string, got 3"),
    ("backbone_args = 1\n", "backbone_args must be a table, got 1"),
    ("samplers = [\"uniform\", 2]\n", "samplers must be a list of strings, got ['uniform', 2]"),
    ("workers = 1.0\n", "workers must be an integer, got 1.0"),
    ('batch_size = "4"\n', "batch_size must be an integer, got '4'"),
    ("gpus_per_replica = true\n", "gpus_per_replica must be an integer, got True"),
    ("retry_errors = 1\n", "retry_errors must be true or false, got 1"),
    ("cache_dir = 5\n", "cache_dir must be a string, got 5"),
    ('dtype = "float64"\n', "dtype must be one of float32, bfloat16, float16, got 'float64'; did you mean float16?"),
    ('decode_backend = "pyv"\n', "decode_backend must be one of decord, pyav, torchcodec, nvdec, got 'pyv'; did you mean pyav?"),
    ('short_grid = "loop"\n', "short_grid must be one of all, repeat, linspace, got 'loop'"),
])
def test_config_file_values_are_typed(tmp_path, capsys, text, says):
    path = tmp_path / "run.toml"
    path.write_text(text)
    assert main([*RUN, "--out", str(tmp_path / "runs"), "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [f"harness: error: config file {path}: {says}"]
    assert not (tmp_path / "runs").exists()  # refused before anything ran


def test_every_field_has_a_checked_type():
    # a field added later without a type the check knows would slip through: the annotations are all checkable
    import typing
    kinds = {int, float, bool, str, dict, list}
    for name, hint in typing.get_type_hints(RunConfig).items():
        args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
        assert all((typing.get_origin(a) or a) in kinds for a in args), name


def test_choices_are_those_of_their_owners():
    from harness.video.reader import _BACKENDS
    from samplers.base import SHORT_GRID_RULES
    from harness.cli.evaluate import CHOICES as CLI_CHOICES
    assert CHOICES["decode_backend"] == tuple(_BACKENDS)
    assert set(CHOICES["short_grid"]) == set(SHORT_GRID_RULES)
    assert CHOICES["dtype"] == tuple(CLI_CHOICES["dtype"]["choices"])
    assert main([*RUN, "--decode-backend", "pyv"]) == 2  # the command line is checked the same way
