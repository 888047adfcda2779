"""`harness bench`'s reference loop (harness/bench/loops.py) against lmms-eval 0.7.3's own `qwen2_5_vl` model path
(lmms_eval/models/simple/qwen2_5_vl.py with qwen-vl-utils 0.0.14), on the same video, K and context, in the
lmms-eval side environment (scripts/lmms_eval_plugin.sh). lmms-eval's code runs as it is; only its weight
loading is replaced (the model by a stub, the processor by the shipped mini Qwen2.5-VL processor, which records
its call and stops before any model runs), so nothing is downloaded.

What reaches the processor is compared: the chat text, the native frame indices (the videos show their frame
number, `harness.util.synth.index_frame`, at 448x448 = 256*28*28 pixels, a size both paths leave as it is) and
the frame size. The expected lmms-eval indices are written here from reading qwen-vl-utils (`smart_nframes`: 2
frames a second, at least 4, at most min(768, N), floored to even; `torch.linspace(0, N-1, M).round()`) and
lmms-eval (`np.linspace(0, M-1, K, dtype=int)` over those M frames, duplicates dropped, the last appended).
The two rules agree where qwen-vl-utils keeps every frame (a 2 fps video of even length up to 768 frames) and
differ otherwise: by design (loops.py docstring), the reference loop takes the runner's `uniform` frames."""
import types

import numpy as np
import pytest

pytest.importorskip("lmms_eval")
pytest.importorskip("qwen_vl_utils")

SIDE = 448  # 448 * 448 = 256 * 28 * 28: lmms-eval's min_pixels, a multiple of 28: neither path resizes it
CASES = [  # (frames N, fps, K)
    (600, 30.0, 8), (600, 30.0, 16), (600, 30.0, 32), (240, 24.0, 32), (60, 2.0, 8), (60, 2.0, 16),
]
CONTEXT = ("How many times does the red triangle appear in the video?\nA. 1\nB. 2\nC. 3\nD. 4\n"
           "Answer with the option's letter from the given choices directly.\n")


def lmms_eval_indices(n: int, fps: float, k: int) -> list[int]:
    """Native frames lmms-eval 0.7.3's qwen2_5_vl hands its processor for K = max_num_frames."""
    m = min(max(n / fps * 2.0, 4), (min(768, n) // 2) * 2, n)
    m = int(m // 2) * 2
    first = np.round(np.linspace(0, n - 1, m)).astype(int)
    keep = np.unique(np.linspace(0, m - 1, k, dtype=int))
    if m - 1 not in keep:
        keep = np.unique(np.append(keep, m - 1))
    return first[keep].tolist()


class _Stop(Exception):
    pass


class _Recorder:
    """A processor that records each call; `stop`: raise after recording (lmms-eval's model never runs)."""

    def __init__(self, processor, stop: bool):
        self._processor, self._stop, self.calls = processor, stop, []

    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        if self._stop:
            raise _Stop
        return self._processor(**kwargs)

    def __getattr__(self, name):
        return getattr(self._processor, name)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    from harness.util.synth import write_index_clip

    out = {}
    for n, fps, _ in CASES:
        if (n, fps) not in out:
            out[n, fps] = tmp_path_factory.mktemp("clips") / f"index-{n}-{fps:g}.mp4"
            write_index_clip(out[n, fps], n, fps, height=SIDE, width=SIDE)
    return out


@pytest.fixture(scope="module")
def mini_processor():
    from transformers import AutoProcessor

    from harness.shipped import resolve_model

    return AutoProcessor.from_pretrained(resolve_model("mini-qwen2.5-vl"))


def lmms_eval_path(monkeypatch, processor, video: str, k: int) -> dict:
    """lmms-eval's Qwen2_5_VL(max_num_frames=K).generate_until on one request, up to its processor call."""
    from lmms_eval.api.instance import Instance
    from lmms_eval.models.simple import qwen2_5_vl as module

    recorder, loaded = _Recorder(processor, stop=True), {}

    import torch

    class StubModel(torch.nn.Module):  # no weights; lmms-eval only reads its config before the processor call
        def __init__(self):
            super().__init__()
            self.config = types.SimpleNamespace()

        @classmethod
        def from_pretrained(cls, pretrained, **kwargs):
            return cls()

    def processor_from_pretrained(pretrained, **kwargs):
        loaded.update(kwargs)  # max_pixels / min_pixels lmms-eval asks for
        return recorder

    monkeypatch.setattr(module, "Qwen2_5_VLForConditionalGeneration", StubModel)
    monkeypatch.setattr(module, "AutoProcessor", types.SimpleNamespace(from_pretrained=processor_from_pretrained))
    monkeypatch.setattr(module, "AutoTokenizer",
                        types.SimpleNamespace(from_pretrained=lambda *a, **kw: processor.tokenizer))
    model = module.Qwen2_5_VL(pretrained="stub", device="cpu", device_map="cpu", max_num_frames=k)
    model.task_dict = {"t": {"test": {0: {"video": video}}}}
    request = Instance(request_type="generate_until", idx=0, metadata={"task": "t", "doc_id": 0, "repeats": 1},
                       arguments=(CONTEXT, {"max_new_tokens": 16}, lambda doc: [doc["video"]], 0, "t", "test"))
    with pytest.raises(_Stop):
        model.generate_until([request])
    [call] = recorder.calls
    return {"text": call["text"][0], "video": call["videos"][0], "pixels": loaded}


def reference_path(processor, video: str, k: int) -> dict:
    """The bench reference loop (harness.bench.loops.reference_loop) on the same video and K, with the Qwen2.5-VL
    adapter at pixels=lmms-eval, the mini model answering."""
    from harness.bench.config import BenchConfig
    from harness.bench.loops import reference_loop
    from harness.records import Sample
    from harness.registry import BACKBONES

    backbone = BACKBONES.create("qwen2.5-vl", model="mini-qwen2.5-vl", pixels="lmms-eval")
    backbone.processor = recorder = _Recorder(backbone.processor, stop=False)
    task = types.SimpleNamespace(prompt=lambda sample, style: CONTEXT)
    sample = Sample(id="q", video=video, question="?", options=("1", "2", "3", "4"), answer=0)
    reference_loop(backbone, task, [sample], BenchConfig(frames=k, decode_backend="decord"))
    [call] = recorder.calls
    return {"text": call["text"][0], "video": call["videos"][0]}


def frame_numbers(frames) -> list[int]:
    from harness.util.synth import decode_index

    array = frames.numpy() if hasattr(frames, "numpy") else np.asarray(frames)
    if array.shape[1] == 3:  # T, C, H, W (qwen-vl-utils) -> T, H, W, C
        array = array.transpose(0, 2, 3, 1)
    return [decode_index(np.clip(np.rint(f), 0, 255).astype(np.uint8)) for f in array]


@pytest.mark.parametrize("n,fps,k", CASES)
def test_reference_loop_against_lmms_eval_qwen2_5_vl(monkeypatch, videos, mini_processor, n, fps, k):
    video = str(videos[n, fps])
    theirs = lmms_eval_path(monkeypatch, mini_processor, video, k)
    ours = reference_path(mini_processor, video, k)
    their_frames, our_frames = frame_numbers(theirs["video"]), frame_numbers(ours["video"])
    assert their_frames == lmms_eval_indices(n, fps, k)  # lmms-eval does what we read it does
    assert our_frames == np.linspace(0, n - 1, k, dtype=int).tolist()  # the reference loop's documented rule
    # the chat text: lmms-eval's explicit system turn + [video, context] renders as the adapter's [video, context]
    assert ours["text"] == theirs["text"]
    assert theirs["pixels"] == {"max_pixels": 1605632, "min_pixels": 256 * 28 * 28}
    assert tuple(theirs["video"].shape[-2:]) == (SIDE, SIDE) == tuple(np.asarray(ours["video"]).shape[1:3])
    agree = their_frames == our_frames
    print(f"\nN={n} fps={fps:g} K={k}: lmms-eval frames {len(their_frames)} {their_frames[:6]}... | reference "
          f"{len(our_frames)} {our_frames[:6]}... | same frames: {agree} | same chat text: True")
    # the rules coincide exactly when qwen-vl-utils keeps every native frame
    assert agree == (min(max(n / fps * 2, 4), (min(768, n) // 2) * 2, n) // 2 * 2 == n)
