"""The offline mini world: small real models trained here on the needle task (mini-clip, mini-qwen2.5-vl) and the
tiny random models tests build. Their names and folders are in `harness.shipped`."""
