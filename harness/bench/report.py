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


def render_markdown(r: dict) -> str:
    """The results as a markdown page: the settings, one table row per loop, the prefill and the pipeline split."""
    if r.get("job") == "long":
        from harness.bench.run_long import render_long

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
        f"workers, batch {c['batch_size']}. bf16 matmul rate measured here: {rate}.",
        "",
        "| loop | questions | seconds | questions/s | s/question | prefill s (batch) | prefill TFLOP/s | "
        "of bf16 rate | peak GiB |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| reference (lmms-eval-style loop written here) | {ref['questions']} | {ref['seconds']:.1f} | "
        f"{r['questions_per_s']['reference']:.3f} | {ref['seconds'] / ref['questions']:.2f} | "
        f"{prefill_cells(pr)} | {mem(ref['peak_memory_gib'])} |",
        f"| harness runner | {fast['questions']} | {fast['seconds']:.1f} | {r['questions_per_s']['harness']:.3f} | "
        f"{fast['seconds'] / max(fast['questions'], 1):.2f} | {prefill_cells(pf)} | {mem(fast['peak_memory_gib'])} |",
        "",
        f"Speed-up, end to end: **{r['speedup']:.2f}x**. Identical answers: {r['answers']['identical']} of "
        f"{r['answers']['compared']}. Reference per question: decode {ref['decode_s_mean']:.2f} s, preprocess + "
        f"generate {ref['generate_s_mean']:.2f} s. Harness errors: {fast['n_errors']}.",
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
              f"{stats['generate']:.1f} s in {stats['batches']} backbone batches; decode workers (summed over "
              f"processes): {stats['decode']:.1f} s; preprocessing thread: {stats['prepare']:.1f} s.", ""]
    return "\n".join(lines)


def write_bench_results(report: dict, out: Path, stem: str) -> tuple[Path, Path]:
    """`<out>/<stem>.json` (every number) and `.md` (`render_markdown`)."""
    from harness.util.fileio import atomic_write

    out.mkdir(parents=True, exist_ok=True)
    js, md = out / f"{stem}.json", out / f"{stem}.md"
    atomic_write(js, json.dumps(report, indent=2, sort_keys=True, default=str) + "\n")
    atomic_write(md, render_markdown(report))
    return js, md
