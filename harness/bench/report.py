"""`harness bench`'s results: `<out>/<device-slug>-<backbone-slug>.json` with every number and `.md` with the
table (`result_stem`; `--label` overrides the stem)."""
from __future__ import annotations

import json
import re
from pathlib import Path


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower() or "device"


def result_stem(device: str, backbone: str) -> str:
    """`<device-slug>-<backbone-slug>`: one file pair per card and model (nvidia-h100-80gb-hbm3-llava-video)."""
    return f"{slug(device)}-{slug(backbone)}"


STOCK_DECODE = {"decord": "decord `get_batch`, as qwen-vl-utils and lmms-eval's load_video_decord call it",
                "pyav": "PyAV decoding every frame up to the last wanted, as lmms-eval's read_video_pyav does"}


def reference_note(backbone: str, decode: str = "harness", backend: str = "decord") -> str:
    """What the reference row is (harness/bench/loops.py says it in full; the Qwen2.5-VL comparison is
    tests/integrations/test_bench_reference_vs_lmms_eval.py, run in the lmms-eval side environment)."""
    how = (f"decoded with {STOCK_DECODE[backend]}" if decode == "stock" and backend in STOCK_DECODE
           else "decoded with the harness reader")
    note = ("Reference: an lmms-eval-style loop written here, not lmms-eval's code: per question it decodes the K "
            f"frames `linspace(0, N-1, K)` (the runner's frames; {how}), builds the task's lmms-eval prompt and "
            "generates at batch 1, one question after another; the speed-up compares two harness code paths on one "
            "backbone.")
    if backbone in ("qwen2.5-vl", "mini-qwen2.5-vl"):
        return note + (" Against lmms-eval 0.7.3's own qwen2_5_vl path (checked on CPU): the same chat text; other "
                       "frames (lmms-eval lets qwen-vl-utils decode 2 frames a second, then keeps K of those); "
                       "for large frames other pixels per frame (docs/lmms-eval-plugin.md).")
    return note + f" Not checked against lmms-eval's own model file for {backbone}."


def render_markdown(r: dict) -> str:
    """The results as a markdown page: the settings, one table row per loop, the prefill and the pipeline split."""
    if r.get("job") == "long":
        return render_long(r)
    c = r["config"]
    ref, fast = r["reference"], r["harness"]
    pr, pf = r["prefill"]["reference"], r["prefill"]["harness"]

    def pct(x):
        return "n/a" if x is None else f"{100 * x:.0f}%"

    def mem(x):
        return "n/a" if x is None else f"{x:.1f}"

    def prefill_cells(p):  # prefill s (batch) | prefill TFLOP/s | of bf16 rate
        if p is None:
            return "n/a | n/a | n/a"
        return f"{p['seconds']:.3f} ({p['batch']}) | {p['tflops_per_s']:.0f} | {pct(p['fraction_of_matmul_rate'])}"

    rate = "n/a" if r["matmul_bf16_tflops"] is None else f"{r['matmul_bf16_tflops']:.0f} TFLOP/s"
    lines = [
        f"# harness bench: {r['device']}",
        "",
        f"{c['videos']} videos x {c['minutes']:g} min, {c['width']}x{c['height']} at {c['fps']:g} fps (GOP {c['gop']}),"
        f" {c['questions']} questions per video on the same {c['frames']} uniform frames; backbone {c['backbone']} "
        f"{json.dumps(c['backbone_args'])}, {c['dtype']}, decode {c['decode_backend']}; harness: {c['workers']} "
        f"workers{' + ' + str(c['gpu_decoders']) + ' NVDEC decoders' if c.get('gpu_decoders') else ''}, batch "
        f"{c['batch_size']}. bf16 matmul rate measured here: {rate}.",
        "",
        reference_note(c["backbone"], ref.get("decode", c.get("reference_decode", "harness")), c["decode_backend"]),
        "",
        "| loop | questions | seconds | questions/s | s/question | prefill s (batch) | prefill TFLOP/s | "
        "of bf16 rate | peak GiB |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| reference (lmms-eval-style loop written here, not lmms-eval) | {ref['questions']} | {ref['seconds']:.1f} | "
        f"{r['questions_per_s']['reference']:.3f} | {ref['seconds'] / ref['questions']:.2f} | "
        f"{prefill_cells(pr)} | {mem(ref['peak_memory_gib'])} |",
        *[f"| reference, {o['decode']} decoding | {o['questions']} | {o['seconds']:.1f} | "
          f"{o['questions'] / o['seconds']:.3f} | {o['seconds'] / o['questions']:.2f} | n/a | n/a | n/a | "
          f"{mem(o['peak_memory_gib'])} |" for o in r.get("other_references", [])],
        f"| harness runner | {fast['questions']} | {fast['seconds']:.1f} | {r['questions_per_s']['harness']:.3f} | "
        f"{fast['seconds'] / max(fast['questions'], 1):.2f} | {prefill_cells(pf)} | {mem(fast['peak_memory_gib'])} |",
        "",
        f"Speed-up, end to end: **{r['speedup']:.2f}x** (questions per second). Identical answers: "
        f"{r['answers']['identical']} of {r['answers']['compared']}"
        f"{'' if ref['questions'] == fast['questions'] else ' (the reference answered the first ' + str(ref['questions']) + ')'}. Reference per question: decode {ref['decode_s_mean']:.2f} s, preprocess + "
        f"generate {ref['generate_s_mean']:.2f} s. Harness errors: {fast['n_errors']}."
        + "".join(f" Against the reference with {o['decode']} decoding: {o['speedup']:.2f}x ({o['identical']} of "
                  f"{o['questions']} answers identical; decode {o['decode_s_mean']:.2f} s a question)."
                  for o in r.get("other_references", [])),
        "",
    ]
    if pr is not None and pf is not None:
        lines += [
            f"Prefill FLOPs (formula `{pf['formula']}`): reference {pr['flops']['total'] / 1e12:.0f} TFLOP per "
            f"question; harness batch {pf['flops']['total'] / 1e12:.0f} TFLOP for {pf['batch']} questions (vision "
            f"tower run {pf['vision_videos']}x). Prefill seconds per question: reference "
            f"{pr['seconds'] / pr['batch']:.3f}, harness {pf['seconds'] / pf['batch']:.3f}.", ""]
    stats = fast["pipeline"]
    lines += [f"Harness runner, main process: {stats['wait']:.1f} s planning and waiting for workers, "
              f"{stats['generate']:.1f} s in {stats['batches']} backbone batches (GPU busy: backbone seconds / wall "
              f"= {pct(stats['generate'] / fast['seconds'])}); decode workers (summed over "
              f"processes): {stats['decode']:.1f} s; preprocessing thread: {stats['prepare']:.1f} s"
              + "".join(f"; decode jobs by decoder: {', '.join(f'{k} {v}' for k, v in jobs.items())}"
                        for jobs in [fast.get("decode_setup", {}).get("jobs_by_backend")] if jobs) + ".", ""]
    return "\n".join(lines)


def render_long(r: dict) -> str:
    """`harness bench --job long`'s page: the settings, one row per way, the speed-up and the feature pass."""
    c, ref, fast = r["config"], r["reference"], r["harness"]
    rt, ft = ref["time_s"], fast["time_s"]
    a = r["answers"]
    lines = [
        f"# harness bench --job long: {r['device']}",
        "",
        f"{c['videos']} videos x {c['minutes']:g} min, {c['width']}x{c['height']} at {c['fps']:g} fps (GOP "
        f"{c['gop']}, {r['video_codec']}), {c['questions']} questions per video, K = {c['frames']} frames from the "
        f"1-fps grid; encoder {c['encoder']}, sampler {c['long_sampler']}, backbone {c['backbone']} "
        f"{c['backbone_args']}, {c['dtype']}; decode {c['decode_backend']} (harness: {_decoders(fast, c)}).",
        "",
        "| way | questions | seconds | s/question | decode grid s | CLIP s | select s | K frames s | backbone s |"
        " peak GiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| reference (TSPO's way) | {ref['questions']} | {ref['seconds']:.1f} | "
        f"{r['seconds_per_question']['reference']:.2f} | {rt['decode_grid']:.1f} | {rt['clip']:.1f} | "
        f"{rt['select']:.2f} | {rt['decode_k']:.1f} | {rt['generate']:.1f} | {_gib(ref['peak_memory_gib'])} |",
        f"| harness (one decode per video) | {fast['questions']} | {fast['seconds']:.1f} | "
        f"{r['seconds_per_question']['harness']:.2f} | {ft['decode_grid']:.1f} | {ft['clip']:.1f} | "
        f"{ft['text_select']:.2f} | {ft['gather']:.1f} (kept grid) | {ft['generate']:.1f} | "
        f"{_gib(fast['peak_memory_gib'])} |",
        "",
        f"Speed-up per question: **{r['speedup']:.2f}x**. Identical answers: {a['identical']} of {a['compared']} "
        f"(the reference answered {'all' if not c['reference_questions'] else 'the first ' + str(ref['questions'])} "
        f"questions). Harness feature pass: decode {fast['decode_fps']:.0f} grid frames/s, CLIP "
        f"{fast['clip_fps']:.0f} frames/s ({fast['grid_frames_decoded']} grid frames); backbone "
        f"{ft['generate']:.1f} s of {fast['seconds']:.1f} s wall ({100 * fast['backbone_share_of_wall']:.0f}%)"
        + (f"; the GPU waited {ft['decode_wait']:.1f} s for decoded grids (the decoders work "
           f"{fast.get('decode_ahead', 1)} video(s) ahead in the background; decode grid s is the wall time they "
           f"worked)" if "decode_wait" in ft else "")
        + (f" and {ft['prepare_wait']:.1f} s for the backbone's preprocessing (a thread, beside the GPU)."
           if "prepare_wait" in ft else "."),
        "",
    ]
    return "\n".join(lines)


def _decoders(fast: dict, c: dict) -> str:
    """The harness way's decoders as the page names them: 'nvdec x4 + pyav x6 (grid frames 1200 / 600)'."""
    if "decoders" not in fast:  # results written before --decoders
        return f"{c['decode_instances']} decoder instances with nvdec"
    names = sorted(set(fast["decoders"]), key=fast["decoders"].index)
    done = fast.get("grid_frames_by_backend", {})
    return " + ".join(f"{n} x{fast['decoders'].count(n)}" for n in names) + \
        " at once (grid frames " + " / ".join(str(done.get(n, 0)) for n in names) + ")"


def _gib(x) -> str:
    return "n/a" if x is None else f"{x:.1f}"


def write_bench_results(report: dict, out: Path, stem: str) -> tuple[Path, Path]:
    """`<out>/<stem>.json` (every number) and `.md` (`render_markdown`)."""
    from harness.util.fileio import atomic_write

    out.mkdir(parents=True, exist_ok=True)
    js, md = out / f"{stem}.json", out / f"{stem}.md"
    atomic_write(js, json.dumps(report, indent=2, sort_keys=True, default=str) + "\n")
    atomic_write(md, render_markdown(report))
    return js, md
