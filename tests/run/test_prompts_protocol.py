"""`harness prompts --protocol lmms-eval|vlmevalkit`: whose prompt wording, recorded in the output. Expected texts are
written by hand from lmms-eval 0.7.3's mlvu_dev.yaml (post_prompt "\\nOnly give the best option.\\nBest option: (")
and VLMEvalKit's MLVU_MCQ.build_prompt (its system sentence, then "Question: q\\nOptions:\\n(A) ..", then
"\\nOnly give the best option."), not from the code under test."""
import json

from harness.cli.app import main

RECORD = {"video_name": "v.mp4", "duration": 100.0, "question": "Why?", "candidates": ["One", "Two"],
          "answer": "Two", "task_type": "needle", "question_id": "q0"}
SYSTEM = ("Carefully watch this video and pay attention to every detail. Based on your observations, select the best "
          "option that accurately addresses the question.")


def prompts(capsys, *argv) -> tuple[int, str, str]:
    rc = main(["prompts", *map(str, argv)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_mlvu_under_each_protocol(tmp_path, capsys):
    f = tmp_path / "mlvu.json"
    f.write_text(json.dumps([RECORD]))
    common = ["--task", "mlvu", "--task-arg", f"annotations={f}"]
    rc, out, _ = prompts(capsys, *common, "--protocol", "vlmevalkit")
    assert rc == 0
    assert out == ("=== q0 (style default, protocol vlmevalkit) ===\n" + SYSTEM
                   + "Question: Why?\nOptions:\n(A) One\n(B) Two\nOnly give the best option.\n")
    rc, out, _ = prompts(capsys, *common, "--protocol", "lmms-eval", "--format", "jsonl")
    assert json.loads(out) == {"id": "q0", "prompt": "Why?\nOnly give the best option.\nBest option: (",
                               "style": "default", "protocol": "lmms-eval"}
    rc, out, _ = prompts(capsys, *common)  # no --protocol: the task's default, header as before
    assert out.startswith("=== q0 (style default) ===\nWhy?\n")
    rc, _, err = prompts(capsys, *common, "--protocol", "vlmevalkit", "--task-arg", "protocol=lmms-eval")
    assert rc == 2 and err.count("\n") == 1 and "disagree" in err


def test_tasks_without_a_vlmevalkit_protocol(capsys):
    rc, _, err = prompts(capsys, "--task", "smoke", "--protocol", "vlmevalkit", "--limit", 1)
    assert rc == 2 and err.count("\n") == 1 and "task 'smoke' has no vlmevalkit protocol" in err
    rc, out, _ = prompts(capsys, "--task", "smoke", "--protocol", "lmms-eval", "--limit", 1, "--format", "jsonl")
    assert rc == 0 and json.loads(out)["protocol"] is None  # one wording, no protocol option
    rc, _, err = prompts(capsys, "--task", "lvbench", "--protocol", "vlmevalkit", "--task-arg", "annotations=x.json")
    assert rc == 2 and "no VLMEvalKit protocol" in err
    rc, _, err = prompts(capsys, "--task", "smoke", "--protocol", "vlmeval")
    assert rc == 2 and "did you mean vlmevalkit?" in err
