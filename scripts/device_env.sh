# Sourced by the GPU-machine scripts (bench_gpu.sh, bench_hf.sh, bench_long.sh) from the repository root: carried
# wheels (.whl*/*.whl: PyAV, decord, ...) and xz-packed wheels (.whl-xz/*.tar.xz, scripts/pack_device_wheels.sh)
# into /tmp/site on PYTHONPATH, and the offline environment the benches run in.
if compgen -G ".whl*/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl*/*.whl
fi
for packed in .whl-xz/*.tar.xz; do
  [ -e "$packed" ] || continue
  mkdir -p /tmp/site && xz -dc -T0 "$packed" | tar -C /tmp/site -xf -
done
if [ -d /tmp/site ]; then
  export PYTHONPATH="/tmp/site:$PWD"
else
  export PYTHONPATH="$PWD"
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
