"""Checkpoints and agent weights a user might receive (issue 16, items 1 and 4): a resume never unpickles the
state it reads back, and TSPO agent weights that are garbage or hold NaN stop with one line naming the file,
never a run of NaN logits; a copied agent folder loads like the agent it is a copy of."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from backbones.base import Backbone
from harness.errors import FatalError, HarnessError
from harness.registry import SAMPLERS, TASKS
from harness.shipped import SHIPPED_AGENTS
from harness.train.config import TSPOTrainConfig
from harness.train.data import TaskSource
from harness.train.tspo import Trainer, train_tspo
from samplers.base import apply_sampler
from samplers.tspo.agent import agent_keys
from samplers.tspo.weights import load_agent, read_selector_state


class _Crafted:
    """Unpickling this object opens (so creates) the marker file: code run by a load."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class _AnswerA(Backbone):
    name = "answer-a"

    def generate(self, frames, timestamps, prompt):
        return "A"


def _one_line(e: BaseException, name: str) -> str:
    message = str(e)
    assert "\n" not in message and name in message, message
    return message


# ---------------------------------------------------------------------------------------------------------------
# Resume state


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from harness.miniworld.tiny import build_tiny_clip

    root = tmp_path_factory.mktemp("checkpoint-faults")
    build_tiny_clip(root / "clip", seed=0)
    task = TASKS.create("smoke", videos=2, duration=10.0, seed=3, root=str(root / "smoke"))
    source = TaskSource(task)
    source.items()
    return root, source


def _config(root: Path, out: str, **kw) -> TSPOTrainConfig:
    base = dict(out=str(root / out), encoder=str(root / "clip"), frames=4, group_size=2, grad_accum=1,
                max_steps=2, save_every=1, watch_every=1, cache_dir=str(root / "cache"), progress=False,
                tensorboard=False, seed=7, init_std=0.2)
    return TSPOTrainConfig(**{**base, **kw})


def test_crafted_pickle_as_resume_state_runs_no_code(world, tmp_path):
    root, source = world
    cfg = _config(root, "crafted")
    Trainer(cfg, backbone=_AnswerA(), source=source).open()  # the run folder, its configuration claimed
    marker = tmp_path / "marker"
    for name in ("state.pt", "state.safetensors"):  # the old name, and the new one holding a pickle
        folder = Path(cfg.out) / "checkpoints" / "step-000001"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        torch.save({"identity_hash": "x", "payload": _Crafted(marker)}, folder / name)
        if name == "state.safetensors":
            (folder / "state.json").write_text('{"format": "harness-tspo-checkpoint", "version": 1}')
        with pytest.raises((HarnessError, FatalError)) as err:
            train_tspo(cfg, backbone=_AnswerA(), source=source)
        assert not marker.exists(), f"resuming from a crafted {name} ran its code"
        _one_line(err.value, "step-000001")


def test_old_state_pt_is_refused_with_one_line(world):
    root, source = world
    cfg = _config(root, "old")
    Trainer(cfg, backbone=_AnswerA(), source=source).open()
    folder = Path(cfg.out) / "checkpoints" / "step-000001"
    folder.mkdir(parents=True)
    torch.save({"step": 1, "identity_hash": "x"}, folder / "state.pt")  # a harmless pickle: still not loaded
    with pytest.raises(HarnessError) as err:
        train_tspo(cfg, backbone=_AnswerA(), source=source)
    assert "older version" in _one_line(err.value, "state.pt")


def test_resume_state_is_tensors_and_json_and_checked(world):
    root, source = world
    cfg = _config(root, "plain", stop_after=1)
    train_tspo(cfg, backbone=_AnswerA(), source=source)
    folder = Path(cfg.out) / "checkpoints" / "step-000001"
    assert sorted(p.name for p in folder.iterdir()) == ["state.json", "state.safetensors"]
    # tensors edited behind the JSON's back: refused, not resumed from
    from safetensors.torch import load_file

    tensors = load_file(str(folder / "state.safetensors"))
    tensors["agent.mlp.0.bias"] = tensors["agent.mlp.0.bias"] + 1
    save_file(tensors, str(folder / "state.safetensors"))
    cfg.stop_after = None
    with pytest.raises(HarnessError) as err:
        train_tspo(cfg, backbone=_AnswerA(), source=source)
    _one_line(err.value, "step-000001")


# ---------------------------------------------------------------------------------------------------------------
# Agent weights


def _state(dim=16, seed=0) -> dict:
    g = torch.Generator().manual_seed(seed)
    shapes = {k: (dim,) if k.endswith("bias") else (dim, dim) for k in agent_keys()}
    return {k: torch.randn(*s, generator=g) * 0.1 for k, s in shapes.items()}


def _inputs(n, dim, seed=0):
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(n, dim)).astype(np.float32)
    text = rng.normal(size=dim).astype(np.float32)
    scores = (feats @ text / (np.linalg.norm(feats, axis=1) * np.linalg.norm(text))).astype(np.float32)
    return {"image_features": feats, "text_feature": text, "scores": scores}


def _grid(n):
    from harness.records import CandidateGrid

    return CandidateGrid(list(range(0, 30 * n, 30)), [float(i) for i in range(n)], 30.0, 30 * n, "1fps")


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_random_bytes_agent_file_is_one_line_error(tmp_path, suffix):
    path = tmp_path / f"agent{suffix}"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(HarnessError) as err:
        SAMPLERS.create("tspo", agent=str(path))
    assert "weights_only" not in _one_line(err.value, str(path))  # never advise unpickling
    # the same bytes as the selector file of a copied agent folder
    folder = tmp_path / "copied"
    folder.mkdir()
    shutil.copy(path, folder / "selector.safetensors")
    if suffix == ".safetensors":
        with pytest.raises(HarnessError) as err:
            SAMPLERS.create("tspo", agent=str(folder))
        _one_line(err.value, "selector.safetensors")


def test_nan_agent_weights_are_fatal_naming_the_file(tmp_path):
    state = _state()
    state["mlp.2.weight"][3, 5] = float("nan")
    path = tmp_path / "nan-agent.safetensors"
    save_file(state, str(path))
    with pytest.raises(FatalError) as err:
        SAMPLERS.create("tspo", agent=str(path))
    assert "NaN/inf" in _one_line(err.value, str(path))
    with pytest.raises(FatalError):
        load_agent(path)
    # inf in a copied folder's selector file
    folder = tmp_path / "copied"
    folder.mkdir()
    state = _state()
    state["temporal.Self_q.bias"][0] = float("inf")
    save_file(state, str(folder / "selector.safetensors"))
    with pytest.raises(FatalError) as err:
        read_selector_state(folder)
    _one_line(err.value, "selector.safetensors")


def test_nan_logits_at_selection_are_fatal_naming_the_agent(tmp_path):
    path = tmp_path / "agent.safetensors"
    save_file(_state(), str(path))
    sampler = SAMPLERS.create("tspo", agent=str(path))
    with torch.no_grad():  # weights gone bad after loading (or finite weights that overflow)
        sampler._agent.mlp[0].weight.fill_(float("inf"))
    with pytest.raises(FatalError) as err:
        apply_sampler(sampler, _grid(20), 4, _inputs(20, 16))
    _one_line(err.value, "agent.safetensors")


def test_copied_agent_folder_selects_as_the_shipped_agent(tmp_path):
    shipped_file, shipped_encoder = SHIPPED_AGENTS["mini-tspo"]
    copy = tmp_path / "my-agent"
    shutil.copytree(shipped_file.parent, copy)
    shipped = SAMPLERS.create("tspo", agent="mini-tspo")
    copied = SAMPLERS.create("tspo", agent=str(copy))
    assert copied.encoder == shipped_encoder  # from the folder's training record
    assert copied.config()["agent_sha256"] == shipped.config()["agent_sha256"]
    dim = shipped._agent.dim
    for seed in range(3):
        inputs = _inputs(120, dim, seed)
        a = apply_sampler(shipped, _grid(120), 8, inputs).positions
        b = apply_sampler(copied, _grid(120), 8, inputs).positions
        assert list(a) == list(b)
    assert os.listdir(copy) == os.listdir(shipped_file.parent)
