"""`harness prompts`: the exact prompt text each sample of a task gets under a backbone's prompt style."""
from __future__ import annotations

import json

from backbones.base import Backbone
from harness.errors import HarnessError, UnknownNameError
from harness.registry import BACKBONES, TASKS
from harness.run.subset import stratified_subset
from tasks.base import Task


def backbone_prompt_style(name: str) -> str:
    """A registered backbone's prompt style, read from its class (no model is loaded)."""
    factory = BACKBONES.get(name).factory
    return factory.prompt_style if isinstance(factory, type) and issubclass(factory, Backbone) else "default"


def prompt_styles(task: Task) -> set[str]:
    """The styles a prompt can be asked for: every registered backbone's (its class's, and the choices of its
    `prompt_style` option) and those the task words differently."""
    styles = {"default", *task.prompt_styles}
    for entry in BACKBONES.entries():
        if isinstance(entry.factory, type) and issubclass(entry.factory, Backbone):
            styles.add(entry.factory.prompt_style)
        styles.update(str(c) for p in entry.params if p.name == "prompt_style" for c in p.choices)
    return styles


PROTOCOLS = ("lmms-eval", "vlmevalkit")


def task_with_protocol(task_name: str, task_args: dict | None, protocol: str | None) -> Task:
    """The task, under `protocol` where one is asked for (the task option `protocol`). A task without that option
    words its prompts one way: lmms-eval's (or its own) is that way, any other protocol is refused."""
    args = dict(task_args or {})
    if protocol is not None:
        if protocol not in PROTOCOLS:
            raise UnknownNameError("protocol", protocol, PROTOCOLS)
        if any(p.name == "protocol" for p in TASKS.get(task_name).params):
            if args.get("protocol", protocol) != protocol:
                raise HarnessError(f"--protocol {protocol} and --task-arg protocol={args['protocol']} disagree")
            args["protocol"] = protocol
        elif protocol != "lmms-eval":
            raise HarnessError(f"task {task_name!r} has no {protocol} protocol (it has one prompt wording: "
                               "--protocol lmms-eval or none)")
    return TASKS.create(task_name, **args)


def prompts_command(task_name: str, backbone: str | None = None, task_args: dict | None = None,
                    limit: int | None = None, fmt: str = "text", style: str | None = None,
                    protocol: str | None = None) -> str:
    """What `harness prompts` prints: every (id, prompt) of a task for a backbone's prompt style (or `style`), under
    `protocol` (lmms-eval or vlmevalkit: the task option; None, the task's default). fmt "text": a header line per
    sample then the prompt verbatim (the header names the protocol where one was asked for); "jsonl": one {"id",
    "prompt", "style", "protocol"} a line (protocol: the task's, null for a task that has none)."""
    if fmt not in ("text", "jsonl"):
        raise HarnessError(f"unknown prompts format {fmt!r} (known: text, jsonl)")
    task = task_with_protocol(task_name, task_args, protocol)
    used = getattr(task, "protocol_name", None)
    known = prompt_styles(task)
    if style is not None and style not in known:
        raise UnknownNameError("prompt style", style, known)
    style = style or (backbone_prompt_style(backbone) if backbone else "default")
    rows = render_prompts(task, style, limit)
    if fmt == "jsonl":
        return "".join(json.dumps({**r, "style": style, "protocol": used}, ensure_ascii=False) + "\n" for r in rows)
    label = f"style {style}" + (f", protocol {used or protocol}" if protocol else "")
    return "".join(f"=== {r['id']} ({label}) ===\n{r['prompt']}\n" for r in rows)


def render_prompts(task: Task, style: str = "default", limit: int | None = None) -> list[dict]:
    """[{"id", "prompt"}] for `harness prompts`: the exact text each sample gets under a backbone prompt style.
    `limit` takes the same stratified subset as `harness run --limit`; videos are not required (except for
    Video-MME with subtitles, whose subtitle lines depend on the video's frame count)."""
    samples = stratified_subset(task.load_samples(), limit, task.stratify_key)
    return [{"id": s.id, "prompt": task.prompt(s, style)} for s in samples]
