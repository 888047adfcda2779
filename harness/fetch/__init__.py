"""Downloads of the benchmarks and checkpoints the reproduction recipes need (`harness data fetch`, `harness models
fetch`): `catalog` says what lives where (Hugging Face repositories, file patterns, layout under the data root),
`hub` lists and downloads through the real `huggingface_hub` client, `unpack` turns the archives into the layout the
tasks read."""
