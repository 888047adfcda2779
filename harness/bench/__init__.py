"""`harness bench` (`run_bench.run_bench`): an lmms-eval-style loop written here (not lmms-eval's code)
against the harness runner on a generated video set.
config (BenchConfig), videos (the video set and its questions), loops (the two loops), flops (matmul rate, timed
prefill), device (sync, peak memory, card name), report (results JSON and markdown)."""
