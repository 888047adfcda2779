#!/usr/bin/env bash
# Pack wheels for the GPU machine into xz tarballs (.whl-xz/<wheel-stem>.tar.xz), so PyAV, PyNvVideoCodec and
# open_clip travel in one device call beside the tree (the device tool carries 64 MiB a call; the zipped wheels of
# PyAV 18.1 and PyNvVideoCodec 2.2.4 alone are 63 MB, xz-packed 28 MB). A wheel's files are unpacked as they are,
# which is what `pip install --target` does for these wheels (no scripts, no headers); files a run never imports
# can be left out with EXCLUDE (tar patterns, space-separated), e.g. PyNvVideoCodec's samples, benchmarks and the
# FFmpeg source tarball it ships in its .data folder:
#   EXCLUDE="./samples ./benchmarks ./pynvvideocodec-2.2.4.data" bash scripts/pack_device_wheels.sh \
#       .whl-nvdec/pynvvideocodec-2.2.4-*.whl
#   bash scripts/pack_device_wheels.sh .whl/av-18.1.0-*.whl
# scripts/device_env.sh unpacks .whl-xz/*.tar.xz into /tmp/site on the GPU machine.
# The wheels, fetched on a machine with the package registries (the GPU machine's python is 3.12):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 -d /tmp/wh \
#       av==18.1.0 pynvvideocodec==2.2.4
#   pip download --no-deps -d .whl-clip open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.2.13   # carried as they are
set -euo pipefail
OUT="${OUT:-.whl-xz}"
mkdir -p "$OUT"
for wheel in "$@"; do
  stem="$(basename "$wheel" .whl)"
  tmp="$(mktemp -d)"
  python3 -m zipfile -e "$wheel" "$tmp"
  excludes=()
  for pattern in ${EXCLUDE:-}; do excludes+=(--exclude="$pattern"); done
  tar -C "$tmp" "${excludes[@]}" -cf - . | xz -9e -T0 > "$OUT/$stem.tar.xz"
  rm -rf "$tmp"
  echo "$OUT/$stem.tar.xz: $(du -h "$OUT/$stem.tar.xz" | cut -f1)"
done
