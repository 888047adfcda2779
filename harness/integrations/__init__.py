"""The harness inside other evaluation toolkits.

`answerer`: one video question -> a harness sampler's frames (through the feature store) -> the harness backbone's
answer, with a record of what was chosen; it imports no toolkit. `lmms_eval_model`: that answerer as an lmms-eval
0.7.3 model (`lmms_eval --model harness`), the only module that imports lmms_eval; `lmms_eval_entry`: the
`lmms_eval.models` entry point that registers it. See docs/lmms-eval-plugin.md.
"""
