"""Frame scorers: image/text encoders (CLIP through transformers or open_clip) and BLIP image-text matching.

One spec string names an encoder everywhere (`--sampler topk:encoder=...`, `harness features --encoder ...`):

    openai/clip-vit-large-patch14         a hub id (CLIPModel, or BlipForImageTextRetrieval by its config)
    ./my-clip, /models/blip-itm           a local folder in the same layouts
    mini-clip                             a model shipped with the harness (harness.shipped)
    open_clip:ViT-B-32:laion2b_s34b_b79k  an open_clip architecture with a pretrained tag, a checkpoint file, or
                                          `random` (explicitly random weights, for throughput work);
                                          open_clip:hf-hub:ORG/REPO also works
    scenedetect:content                   no model: PySceneDetect's content value between consecutive candidates
                                          (kind "frame-diff", harness.features.framediff)
    backbone:mini-qwen2.5-vl              a backbone scoring each frame alone (FRAG; harness.features.backbone_scorer)

Encoders (`ClipEncoder`, `OpenClipEncoder`) give float32 projected features (`get_image_features`,
`encode_image`), not L2-normalised (TSPO's agent needs their scale), query-independent on the image side, so image features are cached per video. `BlipItmScorer` scores (frame, question) pairs: BLIP's ITM head is
conditioned on the question, so nothing of it is reusable across questions except the frames' vision embeddings
within one decode pass. Every scorer has an `encoder_id` (weights and revision) and a `preprocess_id` (image
preprocessing) for cache keys.
"""
from __future__ import annotations

import difflib
import os
import re
from pathlib import Path

import numpy as np

from harness.errors import HarnessError
from harness.features import backbone_scorer, framediff
from harness.util.frames import check_frames
from harness.util.text import one_line
from harness.util.checks import check_choices, torch_device
from harness.util.hashing import digest

DTYPES = ("float32", "bfloat16", "float16")
OPEN_CLIP = "open_clip:"
# Hub ids of the encoders the samplers default to and their common siblings: a name close to one of these (or to
# a shipped name) that is none of them is a typo, told before any hub call
KNOWN_ENCODERS = ("openai/clip-vit-large-patch14", "openai/clip-vit-large-patch14-336", "openai/clip-vit-base-patch16",
                  "openai/clip-vit-base-patch32", "Salesforce/blip-itm-large-coco", "Salesforce/blip-itm-base-coco",
                  "Salesforce/blip-itm-large-flickr", "Salesforce/blip-itm-base-flickr")


def _looks_like_path(model: str) -> bool:
    # Hub ids are "name" or "org/name"; anything else that does not exist is a mistyped local folder.
    return model.startswith(("/", ".", "~")) or model.count("/") > 1 or (os.sep != "/" and os.sep in model)


def _close_name(name: str) -> str | None:
    """The shipped name or known hub id `name` is a typo of, if any."""
    from harness.shipped import SHIPPED

    known = [*SHIPPED, *KNOWN_ENCODERS]
    if name in known:
        return None
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
    return close[0] if close else None


def check_hub_name(name: str, revision: str | None = None, what: str = "encoder") -> None:
    """Before any hub call: a name that is neither an existing path nor shipped, and is close to a shipped name or
    a known hub id (`mini-clp`), is a HarnessError with the close match; offline, a hub id that is not in the local
    Hugging Face cache is one line saying so."""
    import huggingface_hub
    from huggingface_hub import constants

    from harness.shipped import SHIPPED

    if name in SHIPPED or Path(name).expanduser().exists() or _looks_like_path(name):
        return  # a shipped model or a folder; a mistyped folder is reported as a missing folder
    close = _close_name(name)
    hint = f"; did you mean {close}?" if close else ""
    if close and "/" not in name:  # hub ids name their organisation: a bare name is a typo of a shipped one
        raise HarnessError(f"unknown {what} {name!r}{hint}")
    if huggingface_hub.is_offline_mode():
        try:
            cached = huggingface_hub.try_to_load_from_cache(name, "config.json", revision=revision)
        except Exception:  # not a valid repository id at all
            cached = None
        if not isinstance(cached, str):
            raise HarnessError(f"cannot load {what} {name!r}: not available offline, not in the Hugging Face cache "
                               f"{constants.HF_HUB_CACHE}{hint} (download it once online, or give a local folder)")


def _torch_setup(device: str, dtype: str):
    import torch
    check_choices([("dtype", dtype, DTYPES)])
    return torch_device(device), getattr(torch, dtype)


def _hf_source(model: str, revision: str | None, what: str) -> tuple[str, object, str]:
    """(what from_pretrained loads, the revision to pass, an id naming the exact weights)."""
    from harness.shipped import resolve_model
    model = resolve_model(model)  # a shipped name such as "mini-clip" means its folder
    local = Path(model).expanduser()
    if local.exists():
        return str(local), None, f"{local.resolve()}@{_folder_fingerprint(local)}"
    if _looks_like_path(model):
        raise HarnessError(f"cannot load {what} {model!r}: no such folder")
    check_hub_name(model, revision, what)
    # Resolve the revision once so weights and processor come from one commit, and the commit names the cache.
    revision = _resolve_revision(model, revision)
    commit = getattr(revision, "resolved", None) or revision or "main"
    return model, revision, f"{model}@{commit}"


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
    return digest([(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files])[:16]


def _load_pretrained(model_cls, processor_cls, model: str, revision, torch_dtype, device, what: str):
    """(model in eval mode on `device`, processor, encoder id) of a transformers folder or hub id, or one line."""
    source, revision, encoder_id = _hf_source(str(model), revision, what)
    try:
        loaded = model_cls.from_pretrained(source, revision=revision, dtype=torch_dtype)
        processor = processor_cls.from_pretrained(source, revision=revision)
    except Exception as e:  # transformers raises OSError, ValueError, EnvironmentError... all mean "can't load"
        raise HarnessError(f"cannot load {what} {model!r}: {one_line(e)}") from None
    return loaded.to(device).eval(), processor, encoder_id


def _check_texts(texts) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("text_features takes a list of strings, not one string")
    return list(texts)


def _batched(items, batch_size: int, dim: int, encode) -> np.ndarray:
    """`encode` over consecutive batches of `items`, in inference mode, as one (n, dim) float32 array."""
    import torch

    out = [np.zeros((0, dim), np.float32)]
    with torch.inference_mode():
        for start in range(0, len(items), max(1, batch_size)):
            out.append(_projected(encode(items[start:start + batch_size])))
    return np.concatenate(out)


def _projected(feats) -> np.ndarray:
    """The projected embedding as float32, NOT L2-normalised: TSPO's agent adds positional encodings to the raw
    features, so their scale matters; cosine scores normalise where they are computed."""
    # transformers 5 returns a model output whose `pooler_output` is the projected embedding; 4.x a plain tensor.
    return getattr(feats, "pooler_output", feats).float().cpu().numpy()


class ClipEncoder:
    """A Hugging Face `CLIPModel` + `CLIPProcessor`, from a local folder or a hub id, in inference mode."""

    kind = "features"

    def __init__(self, model: str, device: str = "cpu", dtype: str = "float32", revision: str | None = None):
        from transformers import CLIPModel, CLIPProcessor

        self.device, torch_dtype = _torch_setup(device, dtype)
        self.dtype = dtype
        self.model, self.processor, self.encoder_id = _load_pretrained(
            CLIPModel, CLIPProcessor, model, revision, torch_dtype, self.device, "CLIP model")
        self.max_text_length = self.model.config.text_config.max_position_embeddings  # 77 for every CLIP

    @property
    def dim(self) -> int:
        return self.model.config.projection_dim

    @property
    def preprocess_id(self) -> str:
        """A short digest of the image preprocessing settings, for cache keys."""
        return digest(self.processor.image_processor.to_dict())[:16]

    def image_features(self, frames: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """(n, H, W, 3) uint8 RGB frames -> (n, d) float32 projected features."""
        import torch

        def encode(batch):
            # A channels-first tensor batch, made contiguous in one copy (the torchvision backend would copy each
            # frame of a permuted view alone, ~0.3 ms a 128x128 frame on the 2-core machine): the same pixels.
            pixels = self.processor.image_processor(images=torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous(),
                                                    return_tensors="pt")["pixel_values"]
            return self.model.get_image_features(pixel_values=pixels.to(self.device, self.model.dtype))

        return _batched(check_frames(frames, allow_empty=True), batch_size, self.dim, encode)

    def text_features(self, texts: list[str], batch_size: int = 256) -> np.ndarray:
        """Texts -> (m, d) float32 projected features; longer texts are truncated to CLIP's 77 tokens."""
        def encode(batch):
            tokens = self.processor.tokenizer(batch, padding=True, truncation=True, max_length=self.max_text_length,
                                              return_tensors="pt")
            return self.model.get_text_features(input_ids=tokens["input_ids"].to(self.device),
                                                attention_mask=tokens["attention_mask"].to(self.device))

        return _batched(_check_texts(texts), batch_size, self.dim, encode)


class OpenClipEncoder:
    """An open_clip model with its own preprocessing (PIL, as open_clip applies it) and tokenizer."""

    kind = "features"

    def __init__(self, spec: str, device: str = "cpu", dtype: str = "float32"):
        import open_clip
        import torch

        self.device, torch_dtype = _torch_setup(device, dtype)
        self.dtype = dtype
        name, pretrained = parse_open_clip(spec)
        weights = pretrained
        if pretrained and Path(pretrained).expanduser().is_file():
            path = Path(pretrained).expanduser().resolve()
            weights = str(path)
            pretrained = f"{path}@{_folder_fingerprint(path)}"
        try:
            # Seeded: `random` weights are the same on every load, as their encoder id (hence the cache key) is.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model, _, self.preprocess = open_clip.create_model_and_transforms(
                    name, pretrained=None if weights == "random" else weights)
            self.tokenizer = open_clip.get_tokenizer(name)
        except Exception as e:
            raise HarnessError(f"cannot load open_clip model {spec!r}: {one_line(e)}") from None
        self.model = model.to(self.device, torch_dtype).eval()
        self.encoder_id = f"{OPEN_CLIP}{name}:{pretrained or ''}@open_clip-{open_clip.__version__}"
        with torch.inference_mode():
            self._dim = int(self.model.encode_text(self.tokenizer(["x"]).to(self.device)).shape[-1])

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def preprocess_id(self) -> str:
        return digest(repr(self.preprocess))[:16]

    def image_features(self, frames: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """(n, H, W, 3) uint8 RGB frames -> (n, d) float32 features, through open_clip's own (PIL) preprocessing."""
        import torch
        from PIL import Image

        dtype = next(self.model.parameters()).dtype
        frames = check_frames(frames, allow_empty=True)
        return _batched(frames, batch_size, self.dim, lambda batch: self.model.encode_image(
            torch.stack([self.preprocess(Image.fromarray(f)) for f in batch]).to(self.device, dtype)))

    def text_features(self, texts: list[str], batch_size: int = 256) -> np.ndarray:
        return _batched(_check_texts(texts), batch_size, self.dim,
                        lambda batch: self.model.encode_text(self.tokenizer(list(batch)).to(self.device)))


def lavis_caption(text: str, max_words: int = 50) -> str:
    """LAVIS's BLIP "eval" text processor, which AKS applies to the question: lower case, the characters
    . ! " ( ) * # : ; ~ replaced by spaces, runs of whitespace collapsed, at most `max_words` words."""
    text = re.sub(r"([.!\"()*#:;~])", " ", str(text).lower())
    text = re.sub(r"\s{2,}", " ", text).rstrip("\n").strip(" ")
    return " ".join(text.split(" ")[:max_words])


class BlipItmScorer:
    """BLIP image-text matching (`BlipForImageTextRetrieval`, AKS's default scorer): per frame, the softmax
    probability of the "match" class for the question, computed as AKS (LAVIS) does: the question through LAVIS's
    text processor (`lavis_caption`), truncated to 35 tokens (`max_txt_len=35`), its first token replaced by
    [ENC]. transformers' own retrieval forward keeps [CLS] there (transformers#25629); LAVIS's tokenizer appends
    [DEC] and [ENC] to BERT's vocabulary, so without an [ENC] entry in the tokenizer the id is the last of the text
    vocabulary.

    `vision(frames)` runs the vision tower once per frame; `scores(vision, texts)` then scores any number of
    questions against those embeddings, so one decode of a video serves all its questions.
    """

    kind = "itm"
    MAX_TEXT_TOKENS = 35

    def __init__(self, model: str, device: str = "cpu", dtype: str = "float32", revision: str | None = None):
        from transformers import BlipForImageTextRetrieval, BlipProcessor

        self.device, torch_dtype = _torch_setup(device, dtype)
        self.dtype = dtype
        self.model, self.processor, self.encoder_id = _load_pretrained(
            BlipForImageTextRetrieval, BlipProcessor, model, revision, torch_dtype, self.device, "BLIP model")
        tokenizer = self.processor.tokenizer
        enc = tokenizer.convert_tokens_to_ids("[ENC]")
        self.enc_token_id = enc if enc is not None and enc != tokenizer.unk_token_id else \
            self.model.config.text_config.vocab_size - 1

    @property
    def preprocess_id(self) -> str:
        return digest([self.processor.image_processor.to_dict(), self.MAX_TEXT_TOKENS, self.enc_token_id,
                        "lavis_caption"])[:16]

    def tokens(self, text: str):
        tokens = self.processor.tokenizer([lavis_caption(text)], truncation=True, max_length=self.MAX_TEXT_TOKENS,
                                          return_tensors="pt")
        tokens["input_ids"][:, 0] = self.enc_token_id
        return tokens.to(self.device)

    def vision(self, frames: np.ndarray, batch_size: int = 32):
        """(n, H, W, 3) uint8 frames -> the vision tower's token embeddings (a tensor on the model's device)."""
        import torch

        frames = check_frames(frames, allow_empty=True)
        parts = []
        with torch.inference_mode():
            for start in range(0, len(frames), max(1, batch_size)):
                batch = torch.from_numpy(frames[start:start + batch_size]).permute(0, 3, 1, 2)
                pixels = self.processor.image_processor(images=batch, return_tensors="pt")["pixel_values"]
                parts.append(self.model.vision_model(
                    pixel_values=pixels.to(self.device, self.model.dtype)).last_hidden_state)
        return torch.cat(parts) if parts else None

    def scores(self, vision, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """(len(texts), n) float64 match probabilities of each text against each frame's embeddings."""
        import torch

        n = 0 if vision is None else len(vision)
        out = np.zeros((len(texts), n), np.float64)
        if n == 0:
            return out
        with torch.inference_mode():
            for row, text in enumerate(texts):
                tokens = self.tokens(text)
                for start in range(0, n, batch_size):
                    image = vision[start:start + batch_size]
                    m = len(image)
                    hidden = self.model.text_encoder(
                        input_ids=tokens["input_ids"].expand(m, -1),
                        attention_mask=tokens["attention_mask"].expand(m, -1),
                        encoder_hidden_states=image,
                        encoder_attention_mask=torch.ones(image.shape[:-1], dtype=torch.long, device=image.device),
                    ).last_hidden_state
                    logits = self.model.itm_head(hidden[:, 0, :]).float()
                    out[row, start:start + m] = torch.softmax(logits, dim=-1)[:, 1].cpu().numpy()
        return out


def parse_open_clip(spec: str) -> tuple[str, str | None]:
    """'open_clip:NAME:PRETRAINED' -> (NAME, PRETRAINED); 'open_clip:hf-hub:ORG/REPO' keeps the hub name whole."""
    rest = spec[len(OPEN_CLIP):]
    if rest.startswith("hf-hub:"):
        return rest, None
    name, _, pretrained = rest.partition(":")
    if not name:
        raise HarnessError(f"encoder {spec!r}: expected open_clip:NAME:PRETRAINED")
    if not pretrained:
        raise HarnessError(f"encoder {spec!r} names no weights: use open_clip:{name}:TAG, "
                           f"open_clip:{name}:/path/to/checkpoint, or open_clip:{name}:random")
    return name, pretrained


def model_type(model: str) -> str:
    """The `model_type` of a transformers folder or hub id ("clip", "blip", ...)."""
    local = Path(model).expanduser()
    if not local.exists() and _looks_like_path(model):
        raise HarnessError(f"cannot load encoder {model!r}: no such folder")
    try:
        from transformers import AutoConfig
        return AutoConfig.from_pretrained(model).model_type
    except Exception as e:
        raise HarnessError(f"cannot load encoder {model!r}: {one_line(e)}") from None


def load_encoder(spec: str, device: str = "cpu", dtype: str = "float32"):
    """The scorer a spec names: ClipEncoder, OpenClipEncoder, BlipItmScorer, framediff.ContentDiffScorer or
    backbone_scorer.BackboneScorer."""
    from harness.shipped import resolve_model

    spec = str(spec)
    if spec.startswith(OPEN_CLIP):
        return OpenClipEncoder(spec, device, dtype)
    if spec.startswith(framediff.PREFIX):
        return framediff.ContentDiffScorer(spec)
    if spec.startswith(backbone_scorer.PREFIX):
        return backbone_scorer.BackboneScorer(spec, device, dtype)
    check_hub_name(spec)
    model = resolve_model(spec)
    try:
        kind = model_type(model)
    except HarnessError as e:  # the hub's reason, and the name it is close to
        close = _close_name(spec)
        raise HarnessError(f"{e}; did you mean {close}?" if close else str(e)) from None
    if kind == "blip":
        return BlipItmScorer(model, device, dtype)
    if kind == "clip":
        return ClipEncoder(model, device, dtype)
    raise HarnessError(f"encoder {spec!r} is a {kind!r} model; expected CLIP (CLIPModel), BLIP "
                       f"(BlipForImageTextRetrieval) or open_clip:NAME:PRETRAINED")
