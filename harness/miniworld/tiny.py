"""Small, randomly initialised CLIP models in Hugging Face format, built offline.

Tests (and the trained mini-clip, `harness.miniworld.clip`) need a real `CLIPModel` + `CLIPProcessor` folder without
downloading anything. The weights are random; the tokenizer is the genuine CLIP BPE, rebuilt from the vocabulary
file that ships inside the `open_clip` package, so text ids match OpenAI CLIP exactly.

Also here: a tiny `BlipForImageTextRetrieval` + `BlipProcessor` folder (`build_tiny_blip`, BLIP image-text matching
as `harness.features.encoders.BlipItmScorer` loads it) and a tiny open_clip architecture with a weights file
(`build_tiny_open_clip`, an `open_clip:NAME:FILE` encoder spec, registered in the calling process only).
"""
from __future__ import annotations

import gzip
import json
import tempfile
import importlib.util
from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

from harness.errors import HarnessError

TEXT_MAX_LENGTH = 77  # CLIP's context length
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
N_MERGES = 49152 - 256 - 2  # OpenAI CLIP keeps this many merges of the 16e6 BPE file


def _byte_symbols() -> list[str]:
    """The 256 byte-level symbols in CLIP/GPT-2 order: printable bytes stand for themselves, the rest are
    shifted past 255 so that BPE never sees whitespace or control characters."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(others))]


def clip_bpe_file() -> Path:
    # find_spec locates the package without importing it (importing open_clip pulls in much more than a file).
    spec = importlib.util.find_spec("open_clip")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / "bpe_simple_vocab_16e6.txt.gz"
        if path.is_file():
            return path
    raise HarnessError(f"CLIP BPE vocabulary bpe_simple_vocab_16e6.txt.gz not found in the open_clip package "
                       f"(searched: {', '.join(folders) or 'open_clip is not installed'})")


def write_clip_vocab(folder) -> None:
    """Write OpenAI CLIP's `vocab.json` and `merges.txt` to `folder`.

    Token ids: the 256 byte symbols, the same with `</w>` (end of word), one token per merge in rank order, then
    the two special tokens, 49408 in all.
    """
    lines = gzip.open(clip_bpe_file(), "rt", encoding="utf-8").read().split("\n")
    merges = lines[1:N_MERGES + 1]  # line 0 is a version header
    symbols = _byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + [m.replace(" ", "") for m in merges] + [BOS, EOS]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}, ensure_ascii=False),
                                       encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")


def clip_tokenizer(folder=None, max_length: int = TEXT_MAX_LENGTH) -> CLIPTokenizer:
    """OpenAI CLIP's tokenizer, loaded from vocabulary files written to `folder` (a temporary one if None).

    Going through the classic files, rather than building the tokenizer in memory, works the same across
    transformers versions and leaves the files a reader of the folder expects.
    """
    if folder is None:
        with tempfile.TemporaryDirectory() as tmp:
            return clip_tokenizer(tmp, max_length)
    write_clip_vocab(folder)
    return CLIPTokenizer.from_pretrained(folder, model_max_length=max_length)


def clip_image_processor(image_size: int) -> CLIPImageProcessor:
    """CLIP preprocessing (resize shortest edge, centre crop, OpenAI mean/std) at `image_size`."""
    return CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})


def clip_config(*, image_size=64, hidden=32, layers=2, heads=2, patch=16, projection=32,
                vocab_size=49408, text_max_length=TEXT_MAX_LENGTH) -> CLIPConfig:
    """Same width/depth for both towers; MLP width 4x hidden as in CLIP."""
    tower = dict(hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers,
                 num_attention_heads=heads, projection_dim=projection)
    return CLIPConfig(
        text_config=dict(tower, vocab_size=vocab_size, max_position_embeddings=text_max_length),
        vision_config=dict(tower, image_size=image_size, patch_size=patch),
        projection_dim=projection,
    )


def build_tiny_clip(out_dir, seed: int = 0, image_size: int = 64, hidden: int = 32, layers: int = 2,
                    heads: int = 2, patch: int = 16, projection: int = 32) -> Path:
    """Write a randomly initialised CLIPModel + CLIPProcessor to `out_dir`; the same seed gives the same weights."""
    out = Path(out_dir)
    config = clip_config(image_size=image_size, hidden=hidden, layers=layers, heads=heads, patch=patch,
                         projection=projection)
    with torch.random.fork_rng(devices=[]):  # seed locally: don't disturb the caller's global RNG
        torch.manual_seed(seed)
        model = CLIPModel(config)
    model.save_pretrained(out)
    processor = CLIPProcessor(image_processor=clip_image_processor(image_size), tokenizer=clip_tokenizer(out))
    processor.save_pretrained(out)
    return out


# -- BLIP image-text matching -----------------------------------------------------------------------------------------
BLIP_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "[ENC]")
# Enough of English for test questions: the characters every word falls back to (a word missing from the list is
# spelled out as `c ##h ##a ##r ##s`, never [UNK]), and whole words so that common questions tokenize compactly.
BLIP_WORDS = (
    "a an the of in on at to is are was be it this that these those what which who how many much times does do "
    "did appear appears appearing first last video frame object objects colour color shape square circle triangle "
    "star cross red green blue yellow purple orange magenta cyan grey white black and or with without where when "
    "why happens after before during man woman person dog cat car bike ride rides riding down up hill there here "
    "not no yes one two three four five").split()


def blip_vocab(with_enc_token: bool = True) -> list[str]:
    """The tiny BLIP vocabulary: BERT's specials, LAVIS's [DEC] and [ENC] (left out when `with_enc_token` is false,
    as in a tokenizer that never got LAVIS's additions), single characters, word pieces and BLIP_WORDS."""
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    punctuation = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
    tokens = [t for t in BLIP_SPECIAL_TOKENS if with_enc_token or t != "[ENC]"]
    tokens += chars + punctuation + ["##" + c for c in chars]
    tokens += [w for w in BLIP_WORDS if w not in tokens]
    return tokens


def build_tiny_blip(out_dir, seed: int = 0, image_size: int = 32, hidden: int = 32, layers: int = 2, heads: int = 2,
                    patch: int = 16, with_enc_token: bool = True, init_range: float = 0.2) -> Path:
    """Write a randomly initialised `BlipForImageTextRetrieval` + `BlipProcessor` to `out_dir` (the same seed gives
    the same weights), loadable offline with `from_pretrained` and by `harness.features.encoders.load_encoder`.

    Both towers are `hidden` wide (the text tower's cross-attention reads the vision tower: `encoder_hidden_size` =
    the vision width). The tokenizer is BERT's WordPiece over `blip_vocab()`, uncased like BLIP's. Weights are drawn
    with std `init_range` (BLIP's own defaults, 1e-10 for the vision tower, would make every image look alike, so
    image-text matching scores would not depend on the frame).
    """
    from transformers import BertTokenizer, BlipConfig, BlipForImageTextRetrieval, BlipImageProcessor, BlipProcessor

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab = blip_vocab(with_enc_token)
    ids = {t: i for i, t in enumerate(vocab)}
    tower = dict(hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers,
                 num_attention_heads=heads, initializer_range=init_range)
    config = BlipConfig(
        text_config=dict(tower, vocab_size=len(vocab), encoder_hidden_size=hidden, max_position_embeddings=64,
                         projection_dim=hidden, pad_token_id=ids["[PAD]"], sep_token_id=ids["[SEP]"],
                         bos_token_id=ids["[DEC]"], eos_token_id=ids["[SEP]"]),
        vision_config=dict(tower, image_size=image_size, patch_size=patch, projection_dim=hidden),
        projection_dim=hidden, image_text_hidden_size=hidden, initializer_range=init_range,
    )
    with torch.random.fork_rng(devices=[]):  # seed locally: don't disturb the caller's global RNG
        torch.manual_seed(seed)
        model = BlipForImageTextRetrieval(config)
    model.save_pretrained(out)
    vocab_file = out / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(str(vocab_file), do_lower_case=True, model_max_length=512)
    image_processor = BlipImageProcessor(size={"height": image_size, "width": image_size})
    BlipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out)
    return out


# -- open_clip --------------------------------------------------------------------------------------------------------
def tiny_open_clip_config(image_size: int = 32, width: int = 32, embed_dim: int = 16) -> dict:
    """An open_clip model config (the JSON of open_clip's model_configs/) for a tiny ViT CLIP with CLIP's BPE text
    tower (77-token context, OpenAI vocabulary)."""
    return {"embed_dim": embed_dim,
            "vision_cfg": {"image_size": image_size, "layers": 1, "width": width, "head_width": width // 2,
                           "patch_size": 16},
            "text_cfg": {"context_length": TEXT_MAX_LENGTH, "vocab_size": 49408, "width": width, "heads": 2,
                         "layers": 1}}


def build_tiny_open_clip(out_dir, name: str = "tiny-open-clip-test", seed: int = 0, image_size: int = 32) -> str:
    """Register a tiny open_clip architecture `name` in this process (a JSON config under `out_dir`, added with
    `open_clip.add_model_config`) and save randomly initialised weights to `out_dir/<name>-seed<seed>.safetensors`.
    Returns the encoder spec `open_clip:<name>:<weights file>`. The registration is per process: a subprocess does
    not know the architecture."""
    import open_clip
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = out / f"{name}.json"  # open_clip names an architecture after its config file
    config.write_text(json.dumps(tiny_open_clip_config(image_size)), encoding="utf-8")
    open_clip.add_model_config(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.create_model(name, pretrained=None)
    weights = out / f"{name}-seed{seed}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    return f"open_clip:{name}:{weights}"
