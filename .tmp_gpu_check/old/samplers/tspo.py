"""TSPO: the temporal agent of the official TSPO code (docs/reference/tspo.md §1.2-1.3) and its frame sampler.

The agent turns per-candidate CLIP features into one logit per candidate:

    X   = F + PE                                  (sinusoidal PE over positions t / T)
    Ctx = windowed multi-head self-attention(X)   (row j sees columns j - w//2 .. j + w - w//2 - 1; no out-proj)
    E   = MLP(Ctx) + F                            (the residual adds F, not X)
    logit_t = (<E_t, q> / (|E_t| |q| + 1e-6) + clip_score_t) / tau

and a selection rule (`topk`, `bin-max`, `aks`) turns logits into candidate positions (§2.2).

Inputs the runner supplies to the sampler (`needs`), for the n grid candidates under the sampler's `encoder`:

    image_features  (n, D) float32: CLIP `get_image_features` output, NOT L2-normalised. The official agent adds
                    the sinusoidal PE to, and takes its residual from, the raw features, so a trained agent's
                    logits depend on their scale (a zero agent's do not).
    text_feature    (D,) float32: CLIP `get_text_features` of the query (scale is irrelevant: only its direction
                    enters the cosine).
    scores          (n,) float: cosine of each image feature with the text feature (the official clip_scores).
"""
from __future__ import annotations

import hashlib
import json
import math
import pickle
import warnings
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from torch import nn

from harness.errors import HarnessError
from harness.options import torch_device
from harness.registry import SAMPLERS
from samplers.base import Sampler

DEFAULT_DIM = 768  # CLIP ViT-L/14 projection dim; the official checkpoint's
NUM_HEADS = 8
DEFAULT_WINDOW = 12
DEFAULT_TAU = 0.025
DEFAULT_ENCODER = "openai/clip-vit-large-patch14"
METHODS = ("topk", "bin-max", "aks")
# The official AKS rule on TSPO scores has these hard-coded (its comments quote 0.8/5 for Video-MME).
AKS_T1, AKS_DEPTH = 0.2, 3
MASKED_SCORE = -1e6  # what the official code writes into masked attention scores (not -inf)
COSINE_EPS = 1e-6  # added to the norm product, as the official `pair_cosine` does
# Where the selector's keys live: `selector.` in the TSPO-0.4B CLIP folder, `multiModal_align.` in the LLaVA
# training model (tspo.md §1.2).
CHECKPOINT_PREFIXES = ("selector.", "multiModal_align.")
# The official evaluation settings per benchmark (tspo.md §2.3); every one uses K = 64 frames (--frames 64).
PRESETS = {
    "longvideobench": {"method": "topk", "window": 12, "tau": DEFAULT_TAU, "frames": 64},
    "mlvu": {"method": "topk", "window": 12, "tau": DEFAULT_TAU, "frames": 64},
    "lvbench": {"method": "topk", "window": 12, "tau": DEFAULT_TAU, "frames": 64},
    "videomme": {"method": "bin-max", "window": 12, "tau": DEFAULT_TAU, "frames": 64},
}
COMPUTE_DTYPES = ("float32", "float64", "bfloat16")


# ---------------------------------------------------------------------------------------------------------------
# The agent


def positional_encoding(length: int, dim: int, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """[length, dim] sinusoids, sin on even and cos on odd channels, at positions t / length (so in [0, 1))."""
    if dim % 2:
        raise ValueError(f"positional encoding needs an even feature dim, got {dim}")
    # float64 only when asked for: some devices lack it, and the official code computes it in float32
    work = torch.float64 if dtype == torch.float64 else torch.float32
    position = torch.arange(length, dtype=work, device=device)[:, None] / length
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=work, device=device) * (-math.log(10000.0) / dim))
    pe = torch.empty(length, dim, dtype=work, device=device)
    pe[:, 0::2] = torch.sin(position * frequency)
    pe[:, 1::2] = torch.cos(position * frequency)
    return pe.to(dtype)


def window_bounds(length: int, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """First and last column each row attends to. The official mask sets columns clamp(j - w//2 + k, 0, T-1) for
    k < w; clamping consecutive integers gives a contiguous range, so the window shrinks at the edges."""
    if window < 1:
        raise ValueError(f"window size must be at least 1, got {window}")
    rows = torch.arange(length)
    first = (rows - window // 2).clamp(0, length - 1)
    last = (rows - window // 2 + window - 1).clamp(0, length - 1)
    return first, last


def window_mask(length: int, window: int) -> torch.Tensor:
    """[length, length] bool, True where row j may attend to column c."""
    first, last = window_bounds(length, window)
    columns = torch.arange(length)
    return (columns[None, :] >= first[:, None]) & (columns[None, :] <= last[:, None])


class LocalSelfAttention(nn.Module):
    """`temporal.*` of the checkpoint: multi-head self-attention restricted to a window, with no output projection.

    Attribute names are the official ones so state dicts load strictly. `ffn_o` is never used in the forward (the
    official code defines and saves it but does not call it); it is kept only so checkpoints load.
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"feature dim {dim} is not divisible by {num_heads} heads")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.Self_q = nn.Linear(dim, dim)
        self.Self_k = nn.Linear(dim, dim)
        self.Self_v = nn.Linear(dim, dim)
        self.ffn_o = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, window: int) -> torch.Tensor:
        length, dim = x.shape
        heads = (length, self.num_heads, self.head_dim)
        q, k, v = (proj(x).view(heads) for proj in (self.Self_q, self.Self_k, self.Self_v))
        # Banded evaluation of the official dense masked softmax: a masked score of -1e6 gets exactly zero weight,
        # so only the <= w columns in the window matter. Memory stays O(T·D) where the dense form is O(T²) per head
        # (about 34 GB for a 9-hour video at 1 fps).
        first, last = window_bounds(length, window)
        rows = torch.arange(length, device=x.device)
        first, last = first.to(x.device), last.to(x.device)
        # column = row + r for the offsets r inside the window of some row and inside the video
        offsets = range(max(-(window // 2), -(length - 1)), min(window - window // 2 - 1, length - 1) + 1)
        valid = torch.stack([(rows + r >= first) & (rows + r <= last) for r in offsets], dim=-1)  # [T, R]
        # Zero rows around k and v make "row + r" a slice (a view, no gather); they only meet masked scores.
        before, after = -offsets.start, offsets.stop - 1
        k, v = (torch.cat([t.new_zeros(before, *heads[1:]), t, t.new_zeros(after, *heads[1:])]) for t in (k, v))
        shifted = [slice(before + r, before + r + length) for r in offsets]
        scale = self.head_dim ** 0.5
        scores = torch.stack([(q * k[s]).sum(-1) / scale for s in shifted], dim=-1)  # [T, H, R]
        scores = scores.masked_fill(~valid[:, None, :], MASKED_SCORE)
        weights = torch.softmax(scores, dim=-1)
        context = sum(weights[..., i, None] * v[s] for i, s in enumerate(shifted))  # [T, H, head_dim]
        return context.reshape(length, dim)


class TemporalAgent(nn.Module):
    """The TSPO selector (`MultiModal_Align`), without its `selector.` prefix. Device and dtype follow the module:
    inputs are moved to the parameters' device and dtype.

    State-dict keys: temporal.Self_{q,k,v}.{weight,bias}, temporal.ffn_o.{weight,bias} (unused), mlp.0.{weight,bias},
    mlp.2.{weight,bias}; 6·(D² + D) parameters, 3,543,552 for D = 768.
    """

    def __init__(self, dim: int = DEFAULT_DIM, num_heads: int = NUM_HEADS):
        super().__init__()
        self.dim = dim
        self.temporal = LocalSelfAttention(dim, num_heads)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))

    @classmethod
    def zeros(cls, dim: int = DEFAULT_DIM, num_heads: int = NUM_HEADS) -> "TemporalAgent":
        """Every parameter zero: E = F, so logits = (cos + clip_scores) / tau ≈ 2·clip_scores / tau: CLIP ranking."""
        agent = cls(dim, num_heads)
        with torch.no_grad():
            for p in agent.parameters():
                p.zero_()
        return agent

    @classmethod
    def initialised(cls, dim: int = DEFAULT_DIM, std: float = 0.02, generator: torch.Generator | None = None,
                    num_heads: int = NUM_HEADS) -> "TemporalAgent":
        """The official training start (tspo.md §1.2, inferred): weights ~ N(0, std), biases 0."""
        agent = cls(dim, num_heads)
        with torch.no_grad():
            for name, p in agent.named_parameters():
                if name.endswith("weight"):
                    p.normal_(0.0, std, generator=generator)
                else:
                    p.zero_()
        return agent

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor], source: str = "state dict",
                        num_heads: int = NUM_HEADS) -> "TemporalAgent":
        """An agent holding exactly these tensors (no prefix); HarnessError naming `source` on any mismatch."""
        expected = agent_keys()
        missing = [key for key in expected if key not in state]
        unexpected = sorted(key for key in state if key not in expected)
        if missing or unexpected:
            parts = [f"missing keys {_few(missing)}" if missing else "",
                     f"unexpected keys {_few(unexpected)}" if unexpected else ""]
            raise HarnessError(f"{source} is not a TSPO selector state dict: {'; '.join(p for p in parts if p)}")
        dim = int(state["temporal.Self_q.weight"].shape[-1])
        try:
            agent = cls(dim, num_heads)
        except ValueError as e:
            raise HarnessError(f"{source}: {e}") from None
        wrong = [f"{key} {tuple(state[key].shape)} (expected {tuple(p.shape)})"
                 for key, p in agent.state_dict().items() if tuple(state[key].shape) != tuple(p.shape)]
        if wrong:
            raise HarnessError(f"{source}: selector tensors of inconsistent shapes: {_few(wrong)}")
        agent.load_state_dict({key: state[key] for key in expected}, strict=True)
        return agent

    def forward(self, image_feats: torch.Tensor, text_feat: torch.Tensor, clip_scores: torch.Tensor,
                window_size: int = DEFAULT_WINDOW, tau: float = DEFAULT_TAU) -> torch.Tensor:
        """image_feats [T, D], text_feat [D] or [1, D], clip_scores [T] -> logits [T]."""
        weight = self.mlp[0].weight
        feats = torch.as_tensor(image_feats).to(weight.device, weight.dtype)
        text = torch.as_tensor(text_feat).to(weight.device, weight.dtype).reshape(-1)
        clip = torch.as_tensor(clip_scores).to(weight.device, weight.dtype).reshape(-1)
        if feats.ndim != 2 or feats.shape[1] != self.dim or text.shape[0] != self.dim:
            raise ValueError(f"agent of dim {self.dim} got image features {tuple(feats.shape)} and text feature "
                             f"{tuple(torch.as_tensor(text_feat).shape)}")
        if feats.shape[0] == 0:
            raise ValueError("the agent needs at least one candidate")
        if clip.shape[0] != feats.shape[0]:
            raise ValueError(f"{clip.shape[0]} clip scores for {feats.shape[0]} image features")
        timed = feats + positional_encoding(*feats.shape, dtype=feats.dtype, device=feats.device)
        context = self.temporal(timed, window_size)
        enriched = self.mlp(context) + feats  # residual on the features without PE, as the official code does
        norms = torch.sqrt((enriched ** 2).sum(-1)) * torch.sqrt((text ** 2).sum())
        cosine = (enriched @ text) / (norms + COSINE_EPS)
        return (cosine + clip) / tau


def agent_keys() -> list[str]:
    """The selector's state-dict keys, in the official order."""
    keys = []
    for module in ("temporal.Self_q", "temporal.Self_k", "temporal.Self_v", "temporal.ffn_o", "mlp.0", "mlp.2"):
        keys += [f"{module}.weight", f"{module}.bias"]
    return keys


def _few(items, limit: int = 6) -> str:
    items = list(items)
    more = f" (and {len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


# ---------------------------------------------------------------------------------------------------------------
# Loading


def read_selector_state(path) -> dict[str, torch.Tensor]:
    """The selector tensors (prefix stripped, dtype as stored) of a TSPO checkpoint folder (a CLIPModel whose
    safetensors / pytorch_model*.bin also hold `selector.*`), or of a single state-dict file (.safetensors, .pt,
    .pth, .bin) that is either a bare selector state dict or holds prefixed selector keys among others."""
    path = Path(path).expanduser()
    if path.is_dir():
        return _read_folder(path)
    if path.is_file():
        return _strip_prefix(_read_tensor_file(path), bare_ok=True)
    raise HarnessError(f"TSPO agent {str(path)!r}: no such file or folder")


def load_agent(path, device="cpu", dtype="float32") -> TemporalAgent:
    """A TemporalAgent in eval mode from a checkpoint folder or a state-dict file (see `read_selector_state`)."""
    source = str(Path(path).expanduser())
    agent = TemporalAgent.from_state_dict(read_selector_state(path), source=source)
    return agent.to(device=torch.device(device), dtype=_torch_dtype(dtype)).eval()


def state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 of the tensors (names, dtypes, shapes, bytes): the same weights give the same digest wherever they lie."""
    h = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        h.update(json.dumps([key, str(tensor.dtype), list(tensor.shape)]).encode())
        h.update(tensor.flatten().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def folder_has_clip(path) -> bool:
    """True for a folder holding a Hugging Face CLIP config (a TSPO-0.4B checkpoint is one)."""
    config = Path(path).expanduser() / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("model_type") == "clip"
    except (OSError, ValueError, AttributeError):
        return False


def _read_folder(folder: Path) -> dict[str, torch.Tensor]:
    files = _weight_files(folder)
    if not files:
        raise HarnessError(f"TSPO agent folder {str(folder)!r} has no *.safetensors or pytorch_model*.bin files")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(_strip_prefix(_read_tensor_file(file, only_prefixed=True), bare_ok=False))
    if not state:
        raise HarnessError(f"TSPO agent folder {str(folder)!r}: no selector tensors (keys starting with "
                           f"{' or '.join(CHECKPOINT_PREFIXES)}) in {', '.join(f.name for f in files)}; "
                           f"is it a TSPO checkpoint?")
    return state


def _weight_files(folder: Path) -> list[Path]:
    # Follow the shard index where there is one (not a guessed last-shard name, tspo.md §8.13).
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = folder / index_name
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise HarnessError(f"cannot read shard index {index}: {' '.join(str(e).split())}") from None
            # the shards that hold the selector; all of them when none does, so the caller reports what it found
            names = sorted({name for key, name in weight_map.items() if key.startswith(CHECKPOINT_PREFIXES)}
                           or set(weight_map.values()))
            missing = [name for name in names if not (folder / name).is_file()]
            if missing:
                raise HarnessError(f"shard index {index} names missing files: {_few(missing)}")
            return [folder / name for name in names]
    safetensors = sorted(folder.glob("*.safetensors"))
    return safetensors or sorted(folder.glob("pytorch_model*.bin"))


def _read_tensor_file(file: Path, only_prefixed: bool = False) -> dict[str, torch.Tensor]:
    """All tensors of a file (or only the prefixed ones, so a 1.7 GB CLIP shard is not read whole)."""
    try:
        if file.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(file), framework="pt", device="cpu") as f:
                keys = [k for k in f.keys() if not only_prefixed or k.startswith(CHECKPOINT_PREFIXES)]
                return {k: f.get_tensor(k) for k in keys}
        if file.suffix in (".pt", ".pth", ".bin"):
            obj = torch.load(file, map_location="cpu", weights_only=True)
            if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
                raise HarnessError(f"TSPO agent file {str(file)!r} does not hold a state dict (name -> tensor)")
            return {str(k): v for k, v in obj.items() if not only_prefixed or str(k).startswith(CHECKPOINT_PREFIXES)}
    except HarnessError:
        raise
    except (OSError, RuntimeError, ValueError, pickle.UnpicklingError, EOFError) as e:
        raise HarnessError(f"cannot read TSPO agent file {str(file)!r}: {' '.join(str(e).split())}") from None
    raise HarnessError(f"TSPO agent file {str(file)!r}: unknown format (expected .safetensors, .pt, .pth or .bin)")


def _strip_prefix(tensors: dict, bare_ok: bool) -> dict[str, torch.Tensor]:
    """The selector tensors without their prefix; a file without prefixed keys is a bare state dict if allowed."""
    for prefix in CHECKPOINT_PREFIXES:
        found = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        if found:
            return found
    if bare_ok:
        return dict(tensors)
    return {}


def _torch_dtype(name) -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    if name not in COMPUTE_DTYPES:
        raise HarnessError(f"unknown TSPO dtype {name!r} (known: {', '.join(COMPUTE_DTYPES)})")
    return getattr(torch, name)


# ---------------------------------------------------------------------------------------------------------------
# Selection rules (tspo.md §2.2)


def uniform_proposals(last: int, count: int) -> list[int]:
    """round(i · last / (count - 1)) for i < count with Python's half-to-even round; [last] for one proposal."""
    if count <= 0:
        return []
    if count == 1:
        return [last]
    step = last / (count - 1)
    return [round(i * step) for i in range(count)]


def bin_assignment(length: int, count: int) -> np.ndarray:
    """The bin of each of `length` candidates: its nearest proposal, the earlier one on ties."""
    proposals = np.asarray(uniform_proposals(length - 1, count), dtype=np.int64)
    distance = np.abs(np.arange(length)[:, None] - proposals[None, :])
    return np.argmin(distance, axis=1)  # argmin keeps the first minimum: ties go to the earlier bin


def select(logits, k: int, method: str) -> list[int]:
    """Ascending candidate positions from per-candidate logits (any array-like or tensor of shape [T]).

    topk: the min(T, k) largest, ties to the earlier candidate (torch.topk's tie order is unspecified).
    bin-max: min(T, k) bins around uniform proposals, the argmax of each (first on ties).
    aks: the AKS rule (min-max normalised scores, t1 0.2, depth 3), which may return fewer than k.
    """
    if isinstance(logits, torch.Tensor):
        logits = logits.detach().to(torch.float64).cpu().numpy()
    scores = np.asarray(logits, dtype=np.float64).reshape(-1)
    if k < 1:
        raise HarnessError(f"TSPO selection needs k >= 1, got {k}")
    if scores.size == 0:
        raise HarnessError("TSPO selection got no scores")
    if np.isnan(scores).any():
        raise HarnessError("TSPO selection got NaN scores")
    count = min(len(scores), k)
    if method == "topk":
        order = np.argsort(-scores, kind="stable")
        return sorted(int(i) for i in order[:count])
    if method == "bin-max":
        bins = bin_assignment(len(scores), count)
        chosen = []
        for b in np.unique(bins):  # bins are contiguous and ascending
            members = np.flatnonzero(bins == b)
            chosen.append(int(members[np.argmax(scores[members])]))
        return chosen
    if method == "aks":
        from samplers.aks import aks_select  # imported here: only this method needs it

        return [int(i) for i in aks_select(scores, k, t1=AKS_T1, depth=AKS_DEPTH, mode="official")]
    raise HarnessError(f"unknown TSPO selection method {method!r} (known: {', '.join(METHODS)})")


# ---------------------------------------------------------------------------------------------------------------
# The sampler


@SAMPLERS.register(
    "tspo", description="TSPO temporal agent over CLIP features (official selector), then top-k / bin-max / AKS",
    help={"agent": "'zero' (zero-initialised agent = CLIP ranking), 'mini-tspo' (trained here over mini-clip), a "
                   "TSPO checkpoint folder (e.g. TSPO-0.4B), or a selector state-dict file (.safetensors/.pt/.bin)",
          "encoder": "CLIP model the features come from (default: the agent folder when it holds a CLIPModel, "
                     f"mini-clip for mini-tspo, else {DEFAULT_ENCODER})",
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
        torch_dtype = _torch_dtype(dtype)
        self.device = torch_device(device, "'tspo'")

        from harness.miniworld import SHIPPED_AGENTS

        self.agent_source = str(agent)
        self._zero_agents: dict[int, TemporalAgent] = {}  # the zero agent takes its dim from the features
        if self.agent_source == "zero":
            self.agent_kind, self.agent_digest, self._agent = "zero", "zero", None
            default_encoder = DEFAULT_ENCODER
        else:
            shipped = SHIPPED_AGENTS.get(self.agent_source)
            path = shipped[0] if shipped else Path(self.agent_source).expanduser()
            state = read_selector_state(path)
            self.agent_kind = "shipped" if shipped else "checkpoint-folder" if path.is_dir() else "state-dict-file"
            self.agent_digest = state_digest(state)
            self._agent = TemporalAgent.from_state_dict(state, source=str(path)).to(self.device, torch_dtype).eval()
            default_encoder = (shipped[1] if shipped else
                               str(path) if path.is_dir() and folder_has_clip(path) else DEFAULT_ENCODER)
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

    def agent_for(self, dim: int) -> TemporalAgent:
        if self._agent is not None:
            if self._agent.dim != dim:
                raise HarnessError(f"TSPO agent {self.agent_source!r} has feature dim {self._agent.dim}, but the "
                                   f"features of encoder {self.encoder!r} have dim {dim} (another CLIP model?)")
            return self._agent
        if dim not in self._zero_agents:
            try:
                agent = TemporalAgent.zeros(dim)
            except ValueError as e:
                raise HarnessError(f"TSPO zero agent: {e}") from None
            self._zero_agents[dim] = agent.to(self.device, _torch_dtype(self.dtype)).eval()
        return self._zero_agents[dim]

    def logits(self, inputs: Mapping[str, np.ndarray]) -> torch.Tensor:
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
                              "features (tspo.md §1.1); a trained agent's logits will differ", stacklevel=2)
        with torch.inference_mode():
            return agent(torch.from_numpy(feats), torch.from_numpy(text), torch.from_numpy(scores),
                         window_size=self.window, tau=self.tau)

    def positions(self, n: int, k: int, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.asarray(select(self.logits(inputs), k, self.method), dtype=np.int64)
