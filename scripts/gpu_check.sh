#!/usr/bin/env bash
# Everything the GPU has to show, in one run of about 8 minutes (issue "GPU: run the
# paper-size path and the speed targets"). From the repository root, on the device:
#
#   OUT=/out/folder scripts/gpu_check.sh
#   DEVICE=cpu QUICK=1 OUT=/tmp/gpu_check scripts/gpu_check.sh     # CPU smoke test of this script
#
# Runs with the machine's own python3 (torch with CUDA, numpy, scipy, pillow, pyyaml, pytest)
# from the source tree (PYTHONPATH=.); Ray, MLflow and Optuna are not needed. Each part has
# its own time limit and runs even if an earlier one failed; $OUT/summary.txt lists each
# part's exit status and wall time. Under $OUT:
#   env.txt             nvidia-smi, python, torch, the GPU torch sees
#   gpu_tests.log       the gpu-marked tests
#   bench/              scripts/bench_gpu.sh with PACKING=1: variants and ratios at paper size,
#                       syncs per step, the AA+SIM profile, the small net, 1/2/4 trials per GPU
#   paper/paper_run.json  scripts/gpu_paper_run.py: R101 at 1280x720 + 1024x512, stage 1, the
#                       pseudo-label pass over 64 images, stage 2; ms/iteration, peak GPU and
#                       host memory, finite losses, bf16 vs fp32 over 20 steps
set -uo pipefail

OUT="${OUT:-gpu_check}"
DEVICE="${DEVICE:-cuda}"
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
: > "$OUT/summary.txt"

part() {  # part NAME LIMIT_SECONDS COMMAND...: run, log to $OUT/NAME.log, record status and time
    local name=$1 limit=$2 start rc
    shift 2
    start=$(date +%s)
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    rc=$?
    echo "$name: exit $rc, $(( $(date +%s) - start )) s" | tee -a "$OUT/summary.txt"
}

{
    nvidia-smi || echo "no nvidia-smi"
    "$PY" -c 'import sys, torch; print(sys.version); print("torch", torch.__version__, "cuda", torch.version.cuda,
"available", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else "")'
} > "$OUT/env.txt" 2>&1

part gpu_tests 120 "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/test_banks_losses.py tests/test_evaluation.py

if [[ "${QUICK:-0}" == "1" ]]; then
    part bench 300 env PYTHON="$PY" OUT="$OUT/bench" DEVICE="$DEVICE" SIZE=small STEPS=2 REPEATS=1 PACKING=1 \
        scripts/bench_gpu.sh
    part paper 600 "$PY" scripts/gpu_paper_run.py --out "$OUT/paper" --device "$DEVICE" --small --iters 30 \
        --stage2-iters 4 --images 4
else
    part bench 240 env PYTHON="$PY" OUT="$OUT/bench" DEVICE="$DEVICE" STEPS=30 REPEATS=3 PACKING=1 \
        scripts/bench_gpu.sh
    part paper 240 "$PY" scripts/gpu_paper_run.py --out "$OUT/paper" --device "$DEVICE"
fi
rm -rf "$OUT/paper/bench" "$OUT/paper/run" "$OUT/paper/precision_"* "$OUT/paper/calibrated_r101.pth"  # too big to bring back
cat "$OUT/summary.txt"
