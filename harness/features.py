"""CLIP image/text features, query scores, and an on-disk per-video feature cache.

Features are float32 and L2-normalised, so a dot product is a cosine similarity. The cache is keyed by everything
that could change the numbers (video file identity, frame grid, encoder weights, preprocessing, dtype, code
version), so a stale entry is never read: a changed input simply gives a different key.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np

from harness.errors import HarnessError, VideoError
from harness.fileio import atomic_write

DTYPES = ("float32", "bfloat16", "float16")


def _one_line(text) -> str:
    return " ".join(str(text).split())


def _digest(obj) -> str:
    """sha256 of a canonical JSON form: the same parts always give the same hex, whatever the dict order."""
    canon = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()


def _looks_like_path(model: str) -> bool:
    # Hub ids are "name" or "org/name"; anything else that does not exist is a mistyped local folder.
    return model.startswith(("/", ".", "~")) or model.count("/") > 1 or (os.sep != "/" and os.sep in model)


class ClipEncoder:
    """A Hugging Face `CLIPModel` + `CLIPProcessor`, from a local folder or a hub id, in inference mode."""

    def __init__(self, model: str, device: str = "cpu", dtype: str = "float32", revision: str | None = None):
        from harness.miniworld import resolve_model
        model = resolve_model(model)  # a shipped name such as "mini-clip" means its folder
        import torch  # heavy imports stay out of `import harness.features` (the cache needs neither)
        from transformers import CLIPModel, CLIPProcessor

        if dtype not in DTYPES:
            raise HarnessError(f"unknown dtype {dtype!r} (known: {', '.join(DTYPES)})")
        model = str(model)
        local = Path(model).expanduser()
        try:
            self.device = torch.device(device)
        except RuntimeError as e:
            raise HarnessError(f"invalid device {device!r}: {_one_line(e)}") from None
        if local.exists():
            source, revision = str(local), None
            self.encoder_id = f"{local.resolve()}@{_folder_fingerprint(local)}"
        elif _looks_like_path(model):
            raise HarnessError(f"cannot load CLIP model {model!r}: no such folder")
        else:
            # Resolve the revision once so weights and processor come from one commit, and the commit names the cache.
            source, revision = model, _resolve_revision(model, revision)
            commit = getattr(revision, "resolved", None) or revision or "main"
            self.encoder_id = f"{model}@{commit}"
        self.dtype = dtype
        try:
            self.model = CLIPModel.from_pretrained(source, revision=revision, dtype=getattr(torch, dtype))
            self.processor = CLIPProcessor.from_pretrained(source, revision=revision)
        except Exception as e:  # transformers raises OSError, ValueError, EnvironmentError... all mean "can't load"
            raise HarnessError(f"cannot load CLIP model {model!r}: {_one_line(e)}") from None
        self.model.to(self.device).eval()
        self.max_text_length = self.model.config.text_config.max_position_embeddings  # 77 for every CLIP

    @property
    def dim(self) -> int:
        return self.model.config.projection_dim

    @property
    def preprocess_id(self) -> str:
        """A short digest of the image preprocessing settings, for cache keys."""
        return _digest(self.processor.image_processor.to_dict())[:16]

    def image_features(self, frames: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """(n, H, W, 3) uint8 RGB frames -> (n, d) float32 unit vectors."""
        import torch

        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be (n, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
        out = [np.zeros((0, self.dim), np.float32)]
        with torch.inference_mode():
            for start in range(0, len(frames), max(1, batch_size)):
                # A channels-first tensor batch: the torchvision backend processes it in one go.
                batch = torch.from_numpy(frames[start:start + batch_size]).permute(0, 3, 1, 2)
                pixels = self.processor.image_processor(images=batch, return_tensors="pt")["pixel_values"]
                feats = self.model.get_image_features(pixel_values=pixels.to(self.device, self.model.dtype))
                out.append(_normalised(feats))
        return np.concatenate(out)

    def text_features(self, texts: list[str], batch_size: int = 256) -> np.ndarray:
        """Texts -> (m, d) float32 unit vectors; longer texts are truncated to CLIP's 77 tokens."""
        import torch

        if isinstance(texts, str):
            raise TypeError("text_features takes a list of strings, not one string")
        texts = list(texts)
        out = [np.zeros((0, self.dim), np.float32)]
        with torch.inference_mode():
            for start in range(0, len(texts), max(1, batch_size)):
                tokens = self.processor.tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                                                  max_length=self.max_text_length, return_tensors="pt")
                feats = self.model.get_text_features(
                    input_ids=tokens["input_ids"].to(self.device),
                    attention_mask=tokens["attention_mask"].to(self.device))
                out.append(_normalised(feats))
        return np.concatenate(out)


def _normalised(feats) -> np.ndarray:
    import torch.nn.functional as F

    # transformers 5 returns a model output whose `pooler_output` is the projected embedding; 4.x a plain tensor.
    feats = getattr(feats, "pooler_output", feats)
    # Normalise in float32 even for a half-precision model, so unit norm holds to float32 accuracy.
    return F.normalize(feats.float(), dim=-1).cpu().numpy()


def _resolve_revision(model: str, revision: str | None):
    """The commit a hub revision points to (from the local cache when offline); unresolved on any failure, in which
    case `from_pretrained` reports the real problem."""
    import huggingface_hub

    try:
        return huggingface_hub.resolve_revision(
            model, revision=revision, local_files_only=huggingface_hub.is_offline_mode())
    except Exception:
        return revision


def _folder_fingerprint(folder: Path) -> str:
    """Name, size and mtime of the folder's files: retraining into the same folder changes the encoder id, without
    hashing gigabytes of weights."""
    files = [folder] if folder.is_file() else sorted(p for p in folder.iterdir() if p.is_file())
    return _digest([(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files])[:16]


def cosine_scores(image_feats: np.ndarray, text_feat: np.ndarray) -> np.ndarray:
    """Cosine similarity of each of n image features with one text feature: (n, d), (d,) or (1, d) -> (n,)."""
    images = np.asarray(image_feats, np.float64)
    text = np.asarray(text_feat, np.float64).reshape(-1)
    norms = np.linalg.norm(images, axis=1) * np.linalg.norm(text)
    return images @ text / np.maximum(norms, 1e-12)  # guard: a zero vector scores 0, not NaN


def video_identity(path) -> dict:
    """What identifies a video's content for caching, without reading it: absolute path, size, mtime."""
    path = Path(path).expanduser().resolve()
    try:
        st = path.stat()
    except OSError as e:
        raise VideoError(f"cannot read video {str(path)!r}: {e.strerror or e}") from None
    return dict(video=str(path), video_size=st.st_size, video_mtime_ns=st.st_mtime_ns)


class FeatureCache:
    """Arrays on disk under `root`, one safetensors file per key with a JSON manifest next to it.

    Writes are atomic (a temp file in the same folder, then `os.replace`), so readers see either nothing or a
    whole file, a killed writer leaves at most a `.tmp` file that is never read, and concurrent writers of one
    key simply race to replace it with equal content. A corrupt entry (which atomic writes cannot produce: it
    means outside damage) is treated as missing, with a warning naming the file; the next `save` replaces it.
    """

    ARRAY = "features"

    def __init__(self, root):
        self.root = Path(root)

    def key(self, *, video: str, video_size: int, video_mtime_ns: int, grid_rule: str, encoder_id: str,
            preprocess: str, dtype: str, version: str) -> str:
        return _digest(dict(video=video, video_size=video_size, video_mtime_ns=video_mtime_ns, grid_rule=grid_rule,
                            encoder_id=encoder_id, preprocess=preprocess, dtype=dtype, version=version))

    def path(self, key: str) -> Path:
        # Two-level fan-out keeps directories small on big benchmarks.
        return self.root / key[:2] / f"{key}.safetensors"

    def manifest_path(self, key: str) -> Path:
        return self.path(key).with_suffix(".json")

    def load(self, key: str) -> np.ndarray | None:
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        path = self.path(key)
        if not path.is_file():
            return None
        try:
            tensors = load_file(path)
            problem = None if self.ARRAY in tensors else f"no {self.ARRAY!r} array"
        except (SafetensorError, OSError, ValueError) as e:
            problem = _one_line(e)
        if problem:
            warnings.warn(f"ignoring corrupt feature cache file {path}: {problem}", stacklevel=2)
            return None
        return tensors[self.ARRAY]

    def save(self, key: str, array: np.ndarray, manifest: dict) -> None:
        from safetensors.numpy import save

        array = np.ascontiguousarray(array)
        manifest = dict(manifest, key=key, shape=list(array.shape), dtype=str(array.dtype))
        # Manifest first: whenever the array exists, its manifest does too.
        atomic_write(self.manifest_path(key),
                      (json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8"))
        atomic_write(self.path(key), save({self.ARRAY: array}, metadata={"key": key}))

