"""The harness as an lmms-eval 0.7.3 model: `lmms_eval --model harness --model_args ...` (no fork of lmms-eval).

A "simple" lmms-eval model (`lmms_eval.api.model.lmms`, `is_simple = True`): each `generate_until` request brings
the context string the task built (doc_to_text), the generation settings, doc_to_visual, the doc id, task and
split. For each: the video is doc_to_visual(doc)'s one path; a harness sampler picks `frames` frames of it through
the feature store, scoring against the doc's question (`query_field`, default `question`); the harness backbone
answers the context string as it is; lmms-eval's own process_results scores the text. One sampler per lmms-eval
run (lmms-eval scores one answer per doc). What was chosen for every doc goes to the `selections` JSON Lines file.

Model args (comma-separated; quote a value that holds commas, e.g. sampler="aks:encoder=mini-clip,depth=3"):
  backbone        harness backbone name (default mini-qwen2.5-vl)
  backbone_args   its options, "key=value,key=value" (quoted)
  sampler         one harness sampler spec, e.g. uniform, "tspo:preset=longvideobench"
  frames          frames K per question (default 8); grid: candidate grid rule (default 1fps); short_grid
  device, dtype   as in `harness run` (lmms-eval's --device is passed here too)
  cache_dir       the harness feature store (default .cache/features); decode_backend: decord, pyav or torchcodec
  query_field     the doc field with the question text query-aware samplers score against ("": the context)
  options_field   the doc field with the option texts (for samplers whose query is question+options)
  selections      JSON Lines file, one record per doc: sampler config, candidates, positions, native frame
                  indices, timestamps, prompt hash, answer (default harness_selections.jsonl; "" writes none)

Generation: the harness backbone decodes greedily with its own `max_new_tokens` (a backbone arg); a task that asks
for sampling (do_sample true or temperature > 0) is refused, and every doc's gen_kwargs are recorded. Stop strings
(`until`) are not applied, as `harness run` applies none. loglikelihood and multi-round requests are refused.
"""
from __future__ import annotations

import difflib

from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms

from harness.errors import HarnessError
from harness.integrations.answerer import OWNER, AskedQuestion, Answerer, unquote

ANSWERER_ARGS = ("backbone", "backbone_args", "sampler", "frames", "grid", "short_grid", "device", "dtype",
                 "cache_dir", "decode_backend", "selections")
OWN_ARGS = ("query_field", "options_field")
LMMS_EVAL_ARGS = ("batch_size", "max_batch_size")  # lmms-eval passes these to every model; answers never change


class HarnessLMM(lmms):
    is_simple = True

    def __init__(self, **kwargs):
        super().__init__()
        known = ANSWERER_ARGS + OWN_ARGS + LMMS_EVAL_ARGS
        for key in kwargs:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
                raise HarnessError(f"{OWNER}: unknown option {key!r} of model harness"
                                   + (f"; did you mean {close[0]}?" if close else "")
                                   + f" (known: {', '.join(ANSWERER_ARGS + OWN_ARGS)})")
        self.query_field = unquote(kwargs.get("query_field", "question"))
        self.options_field = unquote(kwargs.get("options_field", ""))
        args = {k: kwargs[k] for k in ANSWERER_ARGS if k in kwargs}
        args.setdefault("selections", "harness_selections.jsonl")
        self.answerer = Answerer(**args)
        self.batch_size_per_gpu = 1  # one question at a time; lmms-eval's batch_size changes no answer

    def harness_config(self) -> dict:
        return {**self.answerer.config(), "query_field": self.query_field, "options_field": self.options_field}

    def asked(self, context: str, doc: dict, visuals, key: str) -> AskedQuestion:
        if not isinstance(visuals, (list, tuple)) or len(visuals) != 1 or not isinstance(visuals[0], str):
            raise HarnessError(f"model harness answers video questions: doc_to_visual of {key} must give one video "
                               f"path, got {type(visuals).__name__} {str(visuals)[:80]}")
        query = context if self.query_field == "" else _field(doc, self.query_field, key, "query_field")
        options = () if self.options_field == "" else _field(doc, self.options_field, key, "options_field")
        if isinstance(options, str) or not isinstance(options, (list, tuple)):
            raise HarnessError(f"{OWNER} options_field={self.options_field!r}: {key} holds {options!r}, not a list "
                               f"of option texts")
        return AskedQuestion(key, visuals[0], context, str(query), tuple(map(str, options)))

    def generate_until(self, requests: list[Instance]) -> list[str]:
        out = []
        for request in requests:
            context, gen_kwargs, doc_to_visual, doc_id, task, split = request.args
            key = f"{task}/{split}/{doc_id}"
            _check_greedy(gen_kwargs, key)
            doc = self.task_dict[task][split][doc_id]
            question = self.asked(context, doc, doc_to_visual(doc), key)
            out.append(self.answerer.answer(question, {"task": task, "split": split, "doc_id": doc_id,
                                                       "gen_kwargs": _jsonable(gen_kwargs)}))
        if self.answerer.errors:
            print(f"harness: {self.answerer.errors} questions ended in errors (empty answers; see "
                  f"{self.answerer.selections or 'stderr'})")
        return out

    def loglikelihood(self, requests):
        raise HarnessError("model harness answers generate_until requests only (its backbones generate text); "
                           "this task asks for loglikelihood")

    def generate_until_multi_round(self, requests):
        raise HarnessError("model harness answers single-round generate_until requests only")


def _field(doc: dict, name: str, key: str, option: str):
    if name not in doc:
        close = difflib.get_close_matches(name, list(doc), n=1, cutoff=0.5)
        raise HarnessError(f"{OWNER} {option}={name!r}: {key} has no such field"
                           + (f"; did you mean {close[0]}?" if close else "") + f" (fields: {', '.join(doc)})")
    return doc[name]


def _check_greedy(gen_kwargs: dict, key: str) -> None:
    if gen_kwargs.get("do_sample") or float(gen_kwargs.get("temperature") or 0) > 0:
        raise HarnessError(f"model harness decodes greedily; {key} asks for sampling (do_sample="
                           f"{gen_kwargs.get('do_sample')}, temperature={gen_kwargs.get('temperature')})")


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)
