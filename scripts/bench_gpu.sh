#!/usr/bin/env bash
# The GPU half of docs/benchmarks.md: SIM's cost per training step at paper size on one GPU.
#
#   OUT=/some/folder scripts/bench_gpu.sh            # from the repository root, venv installed
#   PACKING=1 OUT=... scripts/bench_gpu.sh           # also 1, 2, 4 trials per GPU (a few minutes more)
#   PACKING=only OUT=... scripts/bench_gpu.sh        # only the trials per GPU
#   DEVICE=cpu SIZE=small STEPS=2 REPEATS=1 WARMUP=1 PROFILE=2 PSEUDO=2 PACKING=1 PACKING_K="1 2" \
#       scripts/bench_gpu.sh                         # smoke test of this script
#
# Further settings: WARMUP (untimed steps per variant, default 10; the small net gets twice as
# many), PROFILE (profiled AA+SIM steps, default 10), PSEUDO (target-set sizes of the
# pseudo-label pass, e.g. 32,128; default `simtune bench`'s), PACKING_K (default "1 2 4"),
# PACKING_STEPS (timed steps per packed process, default 6 x STEPS), PACKING_WARMUP (default 20).
#
# Writes, under $OUT (default ./bench_gpu):
#   bench_gpu.json       everything `simtune bench` measured (variants, ratios, equivalence,
#                        matcher alone, workload and syncs per step, pseudo-label pass, profile)
#   bench_gpu.txt        the same as a readable report, with the profile of the AA+SIM step
#                        (top ops by self CUDA time; "busy" vs the step time says whether the
#                        GPU or the host bounds the step)
#   bench_gpu_small.json the small network on the same GPU (launch overhead dominates there)
#   packing.txt          with PACKING=1: step throughput of 1, 2 and 4 concurrent trials
#   packing.json         the same numbers, rewritten after each k (a stopped run keeps the k done)
set -euo pipefail

OUT="${OUT:-bench_gpu}"
DEVICE="${DEVICE:-cuda}"
SIZE="${SIZE:-paper}"
STEPS="${STEPS:-50}"
REPEATS="${REPEATS:-5}"
WARMUP="${WARMUP:-10}"
PROFILE="${PROFILE:-10}"
PACKING="${PACKING:-0}"
PACKING_K="${PACKING_K:-1 2 4}"
PACKING_STEPS="${PACKING_STEPS:-$((6 * STEPS))}"
PACKING_WARMUP="${PACKING_WARMUP:-20}"
PSEUDO_ARGS=()
if [[ -n "${PSEUDO:-}" ]]; then PSEUDO_ARGS=(--pseudo-images "$PSEUDO"); fi
if [[ -n "${PYTHON:-}" ]]; then PY="$PYTHON"; elif [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > "$OUT/nvidia_smi.csv" 2>/dev/null || true

report() {  # JSON result -> text report
    "$PY" -c 'import json, sys; from simtune.bench import format_report; print(format_report(json.load(open(sys.argv[1]))))' "$1"
}

if [[ "$PACKING" != "only" ]]; then
    # Paper size: R101, 1280x720 + 1024x512, bf16 autocast + channels_last; 5 repeats x 50 steps.
    "$PY" -m simtune.cli bench --device "$DEVICE" --size "$SIZE" --steps "$STEPS" --repeats "$REPEATS" \
        --warmup "$WARMUP" --profile "$PROFILE" "${PSEUDO_ARGS[@]}" --json --out "$OUT/bench_gpu.json" > /dev/null
    report "$OUT/bench_gpu.json" | tee "$OUT/bench_gpu.txt"

    "$PY" -m simtune.cli bench --device "$DEVICE" --size small --steps $((2 * STEPS)) --repeats "$REPEATS" \
        --warmup $((2 * WARMUP)) "${PSEUDO_ARGS[@]}" --json --out "$OUT/bench_gpu_small.json" > /dev/null
    report "$OUT/bench_gpu_small.json" | tee "$OUT/bench_gpu_small.txt"
fi

if [[ "$PACKING" == "1" || "$PACKING" == "only" ]]; then
    # k trials sharing one GPU, as Ray's fractional GPUs (gpus: 1/k) place them: k processes,
    # each timing PACKING_STEPS AA+SIM steps. Throughput = sum over processes of 3.6e6 / mean step ms.
    : > "$OUT/packing.txt"
    rm -f "$OUT/packing.json"
    for k in $PACKING_K; do
        pids=()
        for i in $(seq 1 "$k"); do
            "$PY" -m simtune.cli bench --device "$DEVICE" --size "$SIZE" --variants aa_sim --steps "$PACKING_STEPS" \
                --repeats 1 --warmup "$PACKING_WARMUP" --pseudo-images 0 --json --out "$OUT/packing_${k}_${i}.json" \
                > /dev/null &
            pids+=($!)
        done
        for pid in "${pids[@]}"; do wait "$pid"; done
        "$PY" - "$OUT" "$k" "$PACKING_STEPS" <<'EOF' | tee -a "$OUT/packing.txt"
import json, sys
from pathlib import Path

out, k, steps = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
path = out / "packing.json"
done = json.loads(path.read_text()) if path.is_file() else {}
means = [json.loads((out / f"packing_{k}_{i}.json").read_text())["variants"]["aa_sim"]["mean_ms"]
         for i in range(1, k + 1)]
per_hour = sum(3.6e6 / m for m in means)
done[str(k)] = {"trials": k, "steps_per_trial": steps, "mean_step_ms": means, "iterations_per_hour": per_hour}
tmp = path.with_name("packing.json.tmp")
tmp.write_text(json.dumps(done, indent=1))
tmp.replace(path)
print(f"{k} trial(s) per GPU: {per_hour:9.0f} AA+SIM iterations/hour in total "
      f"(mean step {sum(means) / k:.1f} ms per trial)")
EOF
    done
fi
