#!/usr/bin/env bash
# The accelerator session's one prepared run (issue 23): every method at SD 1.5 size, fp16, then
# precise drag in low-VRAM mode and the SDXL family for the fast methods, each bench JSON kept in
# tools/bench_results/. Each step has its own timeout so one slow step cannot eat the device time
# of the others; a step that fails is reported and the next one runs.
#
#   bash tools/gpu_bench.sh                       # on the accelerator (about 8 minutes on one H200)
#   GPU_BENCH_CHECK=1 bash tools/gpu_bench.sh     # the same steps on this CPU at 64 px, reduced steps
#
# Install first on a fresh device machine: pip install torch==<its CUDA build> -e . (the venv is
# not carried); the script itself downloads nothing (random weights from the shipped configs).
set -u
cd "$(dirname "$0")/.."
PY=${PY:-python}
DATE=$(date +%Y-%m-%d)
OUT=${OUT:-tools/bench_results}
mkdir -p "$OUT"

if [ "${GPU_BENCH_CHECK:-0}" = 1 ]; then
    COMMON=(--quick --device cpu --size 64)
    TAG=cpu-check
    LIMIT=600
else
    COMMON=(--device cuda --precision fp16)
    TAG=gpu
    LIMIT=240
fi

status=0
step() {  # step NAME TIMEOUT_S ARGS...
    local name=$1 limit=$2
    shift 2
    echo "== $name" >&2
    if ! timeout "$limit" "$PY" -m tools.bench "${COMMON[@]}" "$@" --out "$OUT/$TAG-$name-$DATE.json" >/dev/null; then
        echo "!! $name failed or ran past ${limit} s" >&2
        status=1
    fi
}

step sd1-512 "$LIMIT"                                     # every method at its defaults
step sd1-512-low-vram "$LIMIT" --methods drag,diffuseit --low-vram
step sdxl "$LIMIT" --family sdxl --methods reconstruct,pnp,quick-drag
exit $status
