"""The `tspo` sampler: the agent's logits over the candidates, then a selection rule."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Mapping

import numpy as np

from harness.errors import FatalError, HarnessError
from harness.registry import SAMPLERS
from harness.util.checks import torch_device
from samplers.base import Sampler
from samplers.tspo.rules import rule_positions
from samplers.tspo.settings import (AKS_DEPTH, AKS_T1, COMPUTE_DTYPES, DEFAULT_ENCODER, DEFAULT_TAU, DEFAULT_WINDOW,
                                    METHODS, PRESETS)



@SAMPLERS.register(
    "tspo", description="TSPO temporal agent over CLIP features (official selector), then top-k / bin-max / AKS",
    help={"agent": "'zero' (zero-initialised agent = CLIP ranking), 'mini-tspo' (trained here over mini-clip), a "
                   "TSPO checkpoint folder (e.g. TSPO-0.4B), a folder holding selector.safetensors (a copied agent, a "
                   "training run), or a selector state-dict file (.safetensors/.pt/.bin)",
          "encoder": "CLIP model the features come from (default: the agent folder when it holds a CLIPModel, "
                     "mini-clip for mini-tspo, the encoder a copied agent's training record names, else "
                     f"{DEFAULT_ENCODER})",
          "method": "selection rule over the agent's logits (default: the preset's, else topk)",
          "window": f"attention window in candidates (default: the preset's, else {DEFAULT_WINDOW})",
          "tau": f"logit temperature (default {DEFAULT_TAU}; no effect on any selection rule)",
          "preset": "official settings of a benchmark: " + "; ".join(
              f"{name}: {p['method']}, window {p['window']}, --frames {p['frames']}" for name, p in PRESETS.items())
              + " (explicit options override)",
          "query": "text the candidates are scored against (official: question)",
          "device": "where the agent runs",
          "dtype": "agent precision (official: bfloat16; float32 is stable across machines)"},
    choices={"method": METHODS, "preset": tuple(PRESETS), "query": ("question", "question+options"),
             "dtype": COMPUTE_DTYPES})
class TSPO(Sampler):
    name = "tspo"
    needs = ("image_features", "text_feature", "scores")
    per_sample = ("text_feature",)

    def __init__(self, agent: str = "zero", encoder: str | None = None, method: str | None = None,
                 window: int | None = None, tau: float | None = None, preset: str | None = None,
                 query: str = "question", device: str = "cpu", dtype: str = "float32"):
        if preset is not None and preset not in PRESETS:
            raise HarnessError(f"option preset={preset!r} of 'tspo' must be one of {', '.join(PRESETS)}")
        settings = PRESETS.get(preset, {})
        self.preset = preset
        self.method = method if method is not None else settings.get("method", "topk")
        self.window = window if window is not None else settings.get("window", DEFAULT_WINDOW)
        self.tau = tau if tau is not None else settings.get("tau", DEFAULT_TAU)
        if self.method not in METHODS:
            raise HarnessError(f"option method={self.method!r} of 'tspo' must be one of {', '.join(METHODS)}")
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 1:
            raise HarnessError(f"option window of 'tspo' must be a whole number >= 1, got {self.window!r}")
        if isinstance(self.tau, bool) or not isinstance(self.tau, (int, float)) or not self.tau > 0:
            raise HarnessError(f"option tau of 'tspo' must be a positive number, got {self.tau!r}")
        self.tau = float(self.tau)
        if query not in ("question", "question+options"):
            raise HarnessError(f"option query={query!r} of 'tspo' must be question or question+options")
        self.query = query
        self.dtype = dtype
        from samplers.tspo.agent import TemporalAgent
        from samplers.tspo.weights import (folder_has_clip, read_selector_state, recorded_encoder, state_digest,
                                           torch_dtype)

        compute_dtype = torch_dtype(dtype)
        self.device = torch_device(device, "'tspo'")

        from harness.shipped import SHIPPED_AGENTS

        self.agent_source = str(agent)
        self._zero_agents: dict = {}  # the zero agent takes its dim from the features
        if self.agent_source == "zero":
            self.agent_kind, self.agent_digest, self._agent = "zero", "zero", None
            default_encoder = DEFAULT_ENCODER
        else:
            shipped = SHIPPED_AGENTS.get(self.agent_source)
            path = shipped[0] if shipped else Path(self.agent_source).expanduser()
            state = read_selector_state(path)
            self.agent_kind = "shipped" if shipped else "checkpoint-folder" if path.is_dir() else "state-dict-file"
            self.agent_digest = state_digest(state)
            self._agent = TemporalAgent.from_state_dict(state, source=str(path)).to(self.device, compute_dtype).eval()
            default_encoder = (shipped[1] if shipped else
                               str(path) if path.is_dir() and folder_has_clip(path) else
                               (path.is_dir() and recorded_encoder(path)) or DEFAULT_ENCODER)
        self.encoder = encoder if encoder else default_encoder
        self._warned_unit_norm = False

    def config(self) -> dict:
        # The weights' content, not where they lie, decides the selection; the source name is kept for readers.
        named = self.agent_kind in ("zero", "shipped")
        return {"agent": self.agent_source if named else Path(self.agent_source).name,
                "agent_kind": self.agent_kind, "agent_sha256": self.agent_digest, "encoder": self.encoder,
                "query": self.query, "preset": self.preset, "method": self.method, "window": self.window,
                "tau": self.tau, "dtype": self.dtype,
                **({"aks_t1": AKS_T1, "aks_depth": AKS_DEPTH} if self.method == "aks" else {})}

    def agent_for(self, dim: int):
        if self._agent is not None:
            if self._agent.dim != dim:
                raise HarnessError(f"TSPO agent {self.agent_source!r} has feature dim {self._agent.dim}, but the "
                                   f"features of encoder {self.encoder!r} have dim {dim} (another CLIP model?)")
            return self._agent
        if dim not in self._zero_agents:
            from samplers.tspo.agent import TemporalAgent
            from samplers.tspo.weights import torch_dtype

            try:
                agent = TemporalAgent.zeros(dim)
            except ValueError as e:
                raise HarnessError(f"TSPO zero agent: {e}") from None
            self._zero_agents[dim] = agent.to(self.device, torch_dtype(self.dtype)).eval()
        return self._zero_agents[dim]

    def logits(self, inputs: Mapping[str, np.ndarray]):
        """The agent's logit per candidate (a torch tensor)."""
        import torch

        feats = np.asarray(inputs["image_features"], dtype=np.float32)
        text = np.asarray(inputs["text_feature"], dtype=np.float32).reshape(-1)
        scores = np.asarray(inputs["scores"], dtype=np.float32).reshape(-1)
        if feats.ndim != 2 or feats.shape[1] != text.shape[0] or len(scores) != len(feats):
            raise HarnessError(f"tspo: inconsistent inputs: image_features {feats.shape}, text_feature "
                               f"{text.shape}, scores {scores.shape}")
        agent = self.agent_for(feats.shape[1])
        if self.agent_kind != "zero" and not self._warned_unit_norm:
            norms = np.linalg.norm(feats, axis=1)
            if np.allclose(norms, 1.0, atol=1e-3):
                self._warned_unit_norm = True
                warnings.warn("tspo: the image features are unit vectors, but the official agent sees raw CLIP "
                              "features (TSPOModel in `model/temporal_agent.py`); a trained agent's logits will differ", stacklevel=2)
        with torch.inference_mode():
            logits = agent(torch.from_numpy(feats), torch.from_numpy(text), torch.from_numpy(scores),
                           window_size=self.window, tau=self.tau)
        if not bool(torch.isfinite(logits).all()):
            # every question would be ranked by NaN: the weights (or the encoder's features) are broken, not a sample
            if not (np.isfinite(feats).all() and np.isfinite(text).all() and np.isfinite(scores).all()):
                raise FatalError(f"tspo: the features of encoder {self.encoder!r} hold NaN/inf values")
            raise FatalError(f"tspo agent {self.agent_source!r} gives NaN/inf logits (its weights, in "
                             f"{self.dtype}, are broken)")
        return logits

    def positions(self, n: int, k: int, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.asarray(rule_positions(self.logits(inputs), k, self.method), dtype=np.int64)

    def frame_scores(self, inputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, str]:
        """The agent's logits: what TSPO ranks candidates by (not the raw CLIP scores)."""
        logits = self.logits(inputs).float().cpu().numpy()
        return np.asarray(logits, np.float64).reshape(-1), f"{self.name} logit ({self.encoder})"
