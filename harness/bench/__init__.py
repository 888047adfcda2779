"""`harness bench` (`run_bench.run_bench`): the lmms-eval loop against the harness runner on a generated video set.
config (BenchConfig), videos (the video set and its questions), loops (the two loops), flops (matmul rate, timed
prefill), device (sync, peak memory, card name), report (results JSON and markdown)."""
