#!/usr/bin/env bash
# The GPU half of docs/benchmarks.md: SIM's cost per training step at paper size on one GPU.
#
#   OUT=/some/folder scripts/bench_gpu.sh            # from the repository root, venv installed
#   PACKING=1 OUT=... scripts/bench_gpu.sh           # also 1, 2, 4 trials per GPU (a few minutes more)
#   DEVICE=cpu SIZE=small STEPS=2 REPEATS=1 PACKING=1 scripts/bench_gpu.sh   # smoke test of this script
#
# Writes, under $OUT (default ./bench_gpu):
#   bench_gpu.json       everything `simtune bench` measured (variants, ratios, equivalence,
#                        matcher alone, workload and syncs per step, pseudo-label pass, profile)
#   bench_gpu.txt        the same as a readable report, with the profile of the AA+SIM step
#                        (top ops by self CUDA time; "busy" vs the step time says whether the
#                        GPU or the host bounds the step)
#   bench_gpu_small.json the small network on the same GPU (launch overhead dominates there)
#   packing.txt          with PACKING=1: step throughput of 1, 2 and 4 concurrent trials
set -euo pipefail

OUT="${OUT:-bench_gpu}"
DEVICE="${DEVICE:-cuda}"
SIZE="${SIZE:-paper}"
STEPS="${STEPS:-50}"
REPEATS="${REPEATS:-5}"
if [[ -n "${PYTHON:-}" ]]; then PY="$PYTHON"; elif [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > "$OUT/nvidia_smi.csv" || true

report() {  # JSON result -> text report
    "$PY" -c 'import json, sys; from simtune.bench import format_report; print(format_report(json.load(open(sys.argv[1]))))' "$1"
}

# Paper size: R101, 1280x720 + 1024x512, bf16 autocast + channels_last; 5 repeats x 50 steps.
"$PY" -m simtune.cli bench --device "$DEVICE" --size "$SIZE" --steps "$STEPS" --repeats "$REPEATS" --warmup 10 \
    --profile 10 --json --out "$OUT/bench_gpu.json" > /dev/null
report "$OUT/bench_gpu.json" | tee "$OUT/bench_gpu.txt"

"$PY" -m simtune.cli bench --device "$DEVICE" --size small --steps $((2 * STEPS)) --repeats "$REPEATS" --warmup 20 \
    --json --out "$OUT/bench_gpu_small.json" > /dev/null
report "$OUT/bench_gpu_small.json" | tee "$OUT/bench_gpu_small.txt"

if [[ "${PACKING:-0}" == "1" ]]; then
    # k trials sharing one GPU, as Ray's fractional GPUs (gpus: 1/k) place them: k processes,
    # each timing 300 AA+SIM steps. Throughput = sum over processes of 3.6e6 / mean step ms.
    for k in 1 2 4; do
        pids=()
        for i in $(seq 1 "$k"); do
            "$PY" -m simtune.cli bench --device "$DEVICE" --size "$SIZE" --variants aa_sim --steps $((6 * STEPS)) --repeats 1 \
                --warmup 20 --pseudo-images 0 --json --out "$OUT/packing_${k}_${i}.json" > /dev/null &
            pids+=($!)
        done
        for pid in "${pids[@]}"; do wait "$pid"; done
    done
    "$PY" - "$OUT" <<'EOF' | tee "$OUT/packing.txt"
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
for k in (1, 2, 4):
    means = [json.loads((out / f"packing_{k}_{i}.json").read_text())["variants"]["aa_sim"]["mean_ms"]
             for i in range(1, k + 1)]
    per_hour = sum(3.6e6 / m for m in means)
    print(f"{k} trial(s) per GPU: {per_hour:9.0f} AA+SIM iterations/hour in total "
          f"(mean step {sum(means) / k:.1f} ms per trial)")
EOF
fi
