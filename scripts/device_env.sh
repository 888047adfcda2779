# Sourced by the GPU-machine scripts (bench_gpu.sh, bench_hf.sh) from the repository root: carried wheels
# (.whl*/ : PyAV, decord) into /tmp/site on PYTHONPATH, and the offline environment the benches run in.
if compgen -G ".whl*/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl*/*.whl
  export PYTHONPATH="/tmp/site:$PWD"
else
  export PYTHONPATH="$PWD"
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
