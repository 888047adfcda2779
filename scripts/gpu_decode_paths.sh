#!/usr/bin/env bash
# The NVDEC paths of `harness run` on the GPU machine, each against the PyAV run of the same questions: the smoke
# task's videos written without B-frames (nvdec refuses streams with them; docs/decode.md), the colour-probe
# backbone and mini-CLIP on --device cuda, --frame-cache-mb 0 so every answer's frames go through the decoders
# under test, and a cache directory per run so each feature pass decodes its grid with its own backend.
#   pyav:            --decode-backend pyav --workers 2                         (the baseline)
#   nvdec-threads:   --decode-backend nvdec --workers 2                        (decoders as threads of this process)
#   nvdec-processes: --decode-backend nvdec --workers 2 --nvdec-processes      (decoders as processes of their own)
#   helpers:         --decode-backend pyav --workers 2 --gpu-decoders 2 --nvdec-processes (NVDEC beside PyAV)
# Prints, per run, its seconds, the answers and selections that differ from the baseline's, and where the decode
# jobs went. Device command (carry .whl-xz, or .whl and .whl-nvdec): VIDEOS=12 bash scripts/gpu_decode_paths.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/device_env.sh
PY="${PYTHON:-python3}"
ROOT="${ROOT:-/tmp/gpu-decode-paths}"
VIDEOS="${VIDEOS:-12}"
DURATION="${DURATION:-40}"
export LONGVIDEO_HARNESS_HOME="$ROOT/home"
"$PY" - "$ROOT/videos" "$VIDEOS" "$DURATION" <<'PY'
import functools, sys
import tasks.smoke as smoke
from harness.util.synth import write_video
smoke.write_video = functools.partial(write_video, bframes=0)  # the videos nvdec takes
smoke.SmokeTask(videos=int(sys.argv[2]), duration=float(sys.argv[3]), root=sys.argv[1]).samples()  # writes them
PY
COMMON=(--task smoke --task-arg videos="$VIDEOS" --task-arg duration="$DURATION" --task-arg root="$ROOT/videos"
        --backbone colour-probe --sampler uniform --sampler topk:encoder=mini-clip --device "${DEVICE:-cuda}"
        --frame-cache-mb 0 --no-progress)
declare -A ARGS=(
  [pyav]="--decode-backend pyav --workers 2"
  [nvdec-threads]="--decode-backend nvdec --workers 2"
  [nvdec-processes]="--decode-backend nvdec --workers 2 --nvdec-processes"
  [helpers]="--decode-backend pyav --workers 2 --gpu-decoders 2 --nvdec-processes"
)
for name in pyav nvdec-threads nvdec-processes helpers; do
  t=$(date +%s%N)
  # shellcheck disable=SC2086
  if "$PY" -m harness run "${COMMON[@]}" ${ARGS[$name]} --out "$ROOT/out-$name" --cache-dir "$ROOT/cache-$name" \
      > "$ROOT-$name.log" 2>&1; then
    echo "$name: $(( ($(date +%s%N) - t) / 1000000 )) ms"
  else
    echo "$name: exit $?"; tail -3 "$ROOT-$name.log"
  fi
done
"$PY" - "$ROOT" <<'PY'
import glob, json, sys
root = sys.argv[1]

def rows(name):
    out, decode = {}, {}
    for run in sorted(glob.glob(f"{root}/out-{name}/*/")):
        sampler = run.rstrip("/").split("__")[-2]
        for line in open(run + "predictions.jsonl"):
            r = json.loads(line)
            out[(sampler, r["sample_id"])] = (r["prediction"]["raw_text"], (r.get("selection") or {}).get(
                "frame_indices"), r["prediction"].get("error"))
        for line in open(run + "events.jsonl"):
            e = json.loads(line)
            if e["event"] == "features":
                d = e["decode"]
                decode = {k: d.get(k) for k in ("backend", "workers_are", "gpu_decoders_are", "jobs_by_backend")}
    return out, decode

base, _ = rows("pyav")
print("| run | rows | error rows | answers differing from pyav | selections differing | decode |")
print("|---|---|---|---|---|---|")
for name in ("pyav", "nvdec-threads", "nvdec-processes", "helpers"):
    got, decode = rows(name)
    if not got:
        print(f"| {name} | 0 (the run failed: {root}-{name}.log) | - | - | - | - |")
        continue
    errors = sum(1 for v in got.values() if v[2])
    answers = sum(1 for k, v in base.items() if got.get(k, (None,))[0] != v[0])
    selections = sum(1 for k, v in base.items() if got.get(k, (None, None))[1] != v[1])
    print(f"| {name} | {len(got)} | {errors} | {answers} | {selections} | {decode} |")
PY
