"""How well the mini Qwen2.5-VL reads frames, per selection kind (oracle, crowded, no evidence): teacher-forced
letter accuracy on rendered frames (`letter_accuracy`, during and after training) and generated answers through
the backbone on the written needle test videos (`evaluate_backbone`, `harness miniworld qwen eval`).
"""
from __future__ import annotations

import numpy as np

from harness.miniworld.qwen.batches import option_letter_ids, positions_of, teacher_forced_batch
from harness.miniworld.qwen.world import K, SELECTIONS, event_intervals, selection_times
from harness.video.grid import make_grid
from harness.video.reader import open_video


def letter_accuracy(model, processor, questions, batch_size: int = 32, seed: int = 0, kinds=SELECTIONS) -> dict:
    """Accuracy of the most likely option letter (teacher forcing, no generation) on (pool, sample, prompt)
    questions, per selection kind (`selection_times`) and per question type."""
    import torch

    letter_ids = option_letter_ids(processor.tokenizer)
    rng = np.random.default_rng(seed)
    out = {}
    for kind in kinds:
        hits = {}
        for start in range(0, len(questions), batch_size):
            chunk = questions[start:start + batch_size]
            items = []
            for pool, sample, prompt in chunk:
                times = selection_times(kind, sample.evidence, event_intervals(pool.spec), pool.times, K, rng)
                items.append((pool.at(times), times, prompt, "A"))
            inputs, start, _ = teacher_forced_batch(processor, items, [True] * len(items))
            position_ids = positions_of(processor, inputs).to(model.device)
            with torch.inference_mode():
                logits = model(**inputs.to(model.device), position_ids=position_ids).logits
            pred = logits[torch.arange(len(start)), start.to(model.device) - 1][:, letter_ids].argmax(-1).tolist()
            for (_, sample, _), p in zip(chunk, pred):
                hits.setdefault(sample.categories["question_type"], []).append(p == sample.answer)
        out[kind] = round(float(np.mean([h for v in hits.values() for h in v])), 3)
        out.update({f"{kind}/{t}": round(float(np.mean(v)), 3) for t, v in sorted(hits.items())})
    return out


def evaluate_backbone(backbone, task, kinds=SELECTIONS, k: int = K, seed: int = 0, limit: int | None = None,
                      decode_backend: str = "pyav") -> dict:
    """Accuracy of `backbone.generate` on frames decoded from the task's written videos, per selection kind
    (`selection_times`: oracle, crowded, no evidence); overall, per question type, and how many answers the strict
    extractor could not parse."""
    rng = np.random.default_rng(seed)
    samples = task.samples()[:limit]
    hits = {kind: {} for kind in kinds}
    unparsed = {kind: 0 for kind in kinds}
    for sample in samples:
        with open_video(sample.video, decode_backend) as reader:
            grid = make_grid(reader.meta.frame_count, reader.meta.fps, "1fps")
            times = np.asarray(grid.timestamps)
            events = [(e["start"], e["end"]) for e in sample.metadata["events"]]
            for kind in kinds:
                chosen = selection_times(kind, sample.evidence, events, times, k, rng)
                idx = np.asarray(grid.indices)[np.searchsorted(times, chosen)]
                prediction = task.score(sample, backbone.generate(reader.get_frames(idx.tolist()), chosen,
                                                                  task.prompt(sample, backbone.prompt_style)))
                hits[kind].setdefault(sample.categories["question_type"], []).append(prediction.correct)
                unparsed[kind] += prediction.parse_status != "ok"
    out = {"questions": len(samples)}
    for kind in kinds:
        out[kind] = round(float(np.mean([h for v in hits[kind].values() for h in v])), 3)
        out.update({f"{kind}/{t}": round(float(np.mean(v)), 3) for t, v in sorted(hits[kind].items())})
        out[f"{kind}/unparsed"] = unparsed[kind]
    return out
