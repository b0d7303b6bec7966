#!/usr/bin/env bash
# Everything the GPU has to show, in one run of at most 8 minutes (issue "GPU: run the
# paper-size path and the speed targets"). From the repository root, on the device:
#
#   OUT=/out/folder scripts/gpu_check.sh                  # on the GPU (about 8 minutes at most)
#   OUT=/tmp/gpu_check scripts/gpu_check.sh --dry-run     # every part on the CPU at tiny sizes
#
# Runs with the machine's own python3 (PYTHON=... to use another; torch, numpy, scipy, pillow,
# pyyaml, opencv, scikit-image, pytest) from the source tree (PYTHONPATH=.); Ray, MLflow and
# Optuna are not needed. --dry-run (or the old QUICK=1) runs every part end to end at tiny
# sizes on DEVICE (default cpu there, cuda otherwise): a test of this script, its numbers
# mean nothing. Exits 1 if any part failed or ran out of time. PARTS="env paper" runs only
# those parts; LIMIT_ENV, LIMIT_GPU_TESTS, LIMIT_PAPER, LIMIT_BENCH, LIMIT_PACKING=seconds
# change a part's limit.
#
# Time budget (seconds; each part is stopped at its limit, and 5 s later killed, by `timeout`):
#   env          25   imports, versions, the GPU torch sees, nvidia-smi         -> env.json
#   gpu_tests    40   the gpu-marked tests                                       -> gpu_tests.json
#   paper       180   scripts/gpu_paper_run.py: R101 at 1280x720 + 1024x512;     -> paper/paper_run.json
#                     benchmark drawing (64 + 64 images), BN-calibrated init, 100 stage-1
#                     iterations, the pseudo-label pass over 64 images, 30 stage-2 iterations
#                     (data.num_workers=auto = CPUs - 1 and runtime.cudnn_benchmark=true,
#                     both recorded; peak GPU memory), then 30 iterations each in bf16 and
#                     fp32, then 30 with runtime.deterministic=true, twice. The last two
#                     checks are skipped (and the JSON says so) when the part's time left
#                     would not cover them.
#   bench       120   scripts/bench_gpu.sh: variants and ratios at paper size    -> bench/bench_gpu.json
#                     (20 steps x 2 repeats, 10 warm-up, pseudo-label pass over 16 and 64
#                     images, 10 profiled steps), then the small network          -> bench/bench_gpu_small.json
#   packing      85   1, 2, 4 AA+SIM processes on the GPU (40 steps each)        -> bench/packing.json
#   total       450   + at most 5 x 5 s of kill grace + start-up and summary: under 480 s.
#
# Every part writes its JSON the moment it finishes (the paper run after each of its steps),
# and $OUT/summary.json (+ summary.txt) is rewritten before and after each part: exit status,
# wall seconds, limit, timed out or not. Big files (benchmarks, inits, run folders, temp files)
# live in a temp folder outside $OUT, removed after each part and on exit, so what comes back
# is JSON, text and logs only.
set -uo pipefail

DRY=0
[[ "${QUICK:-0}" == "1" ]] && DRY=1
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY=1 ;;
        -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "usage: [OUT=folder] [PYTHON=python3] $0 [--dry-run]" >&2; exit 2 ;;
    esac
done

PY="${PYTHON:-python3}"
if (( DRY )); then DEVICE="${DEVICE:-cpu}"; MODE=dry-run; else DEVICE="${DEVICE:-cuda}"; MODE=gpu; fi
OUT="${OUT:-gpu_check}"
mkdir -p "$OUT" && OUT="$(cd "$OUT" && pwd)"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# Big files go here. Kept short: loader workers put AF_UNIX sockets (108 bytes at most) in TMPDIR.
WORK_ROOT="${TMPDIR:-/tmp}"
(( ${#WORK_ROOT} <= 40 )) || WORK_ROOT=/tmp
WORK="$(mktemp -d "$WORK_ROOT/gpu_check.XXXXXX")"
export TMPDIR="$WORK/tmp"  # temp folders of every part (simtune bench draws its data there)
export XDG_CACHE_HOME="$WORK/cache"  # records of the dataset checks: of drawn data, not kept
mkdir -p "$TMPDIR"
trap 'rm -rf "$WORK"' EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
rm -f "$OUT/summary.json" "$OUT/summary.txt"

STARTED=$(date +%s)
NAMES=() RCS=() WALLS=() LIMITS=() FILES=()

write_summary() {  # write_summary [RUNNING_PART]: $OUT/summary.json and summary.txt, atomically
    local i n=${#NAMES[@]} rc timed status json="" txt="" ok=true
    for (( i = 0; i < n; i++ )); do
        rc=${RCS[i]}
        timed=false; status=ok
        if [[ "$rc" == 124 || "$rc" == 137 ]]; then timed=true; status="timed out"; elif [[ "$rc" != 0 ]]; then status=failed; fi
        [[ "$rc" != 0 ]] && ok=false
        json+="${json:+,}"$'\n'"  {\"name\": \"${NAMES[i]}\", \"status\": \"$status\", \"exit\": $rc, \"wall_s\": ${WALLS[i]}, \"limit_s\": ${LIMITS[i]}, \"timed_out\": $timed, \"log\": \"${NAMES[i]}.log\", \"json\": [${FILES[i]}]}"
        txt+="$(printf '%-10s %-9s exit %3s  %4s s of %4s s' "${NAMES[i]}" "$status" "$rc" "${WALLS[i]}" "${LIMITS[i]}")"$'\n'
    done
    if [[ -n "${1:-}" ]]; then
        ok=false
        json+="${json:+,}"$'\n'"  {\"name\": \"$1\", \"status\": \"running\", \"exit\": null, \"wall_s\": null, \"limit_s\": $2, \"timed_out\": null}"
        txt+="$(printf '%-10s running' "$1")"$'\n'
    fi
    printf '{"mode": "%s", "device": "%s", "python": "%s", "work": "%s", "budget_s": %s, "total_wall_s": %s, "all_ok": %s, "parts": [%s\n]}\n' \
        "$MODE" "$DEVICE" "$PY" "$WORK" "$BUDGET" "$(( $(date +%s) - STARTED ))" "$ok" "$json" > "$OUT/summary.json.tmp"
    mv "$OUT/summary.json.tmp" "$OUT/summary.json"
    printf '%s%s mode, total %s s of %s s\n' "$txt" "$MODE" "$(( $(date +%s) - STARTED ))" "$BUDGET" > "$OUT/summary.txt"
}

part() {  # part NAME LIMIT_S 'JSON FILES' COMMAND...: run under timeout, log to $OUT/NAME.log, record, clean up
    local name=$1 limit=$2 files=$3 start rc f quoted=""
    shift 3
    [[ " $PARTS " == *" $name "* ]] || { cat > /dev/null; return 0; }
    for f in $files; do quoted+="${quoted:+, }\"$f\""; done
    write_summary "$name" "$limit"
    echo "== $name (limit $limit s)"
    start=$(date +%s)
    timeout -k 5 "$limit" "$@" > "$OUT/$name.log" 2>&1
    rc=$?
    rm -rf "${WORK:?}/$name" "${TMPDIR:?}"/* 2>/dev/null  # even after a timeout: nothing big stays
    NAMES+=("$name") RCS+=("$rc") WALLS+=("$(( $(date +%s) - start ))") LIMITS+=("$limit") FILES+=("$quoted")
    write_summary
    tail -n 3 "$OUT/$name.log"
    echo "== $name: exit $rc, ${WALLS[-1]} s"
}

PARTS="${PARTS:-env gpu_tests paper bench packing}"  # a subset, e.g. PARTS=paper, to rerun one part
if (( DRY )); then
    # One torch thread per process: on a small shared CPU, OpenMP threads waiting for each
    # other make tiny steps crawl (2 threads: 6.7 s instead of 0.8 s per paper-run iteration
    # on a busy 2-core VM).
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
    L_ENV=60 L_TESTS=60 L_PAPER=300 L_BENCH=180 L_PACKING=120  # roomy: a shared CPU can be slow
    PAPER_ARGS=(--size tiny --iters 30 --stage2-iters 10 --images 4 --precision-iters 10 --deterministic-iters 10)
    BENCH_ENV=(SIZE=small STEPS=2 REPEATS=1 WARMUP=1 PROFILE=2 PSEUDO=2)
    PACKING_ENV=(SIZE=small STEPS=2 PACKING_K="1 2" PACKING_STEPS=2 PACKING_WARMUP=1)
else
    L_ENV=25 L_TESTS=40 L_PAPER=180 L_BENCH=120 L_PACKING=85
    PAPER_ARGS=(--size paper --iters 100 --stage2-iters 30 --images 64 --precision-iters 30 --deterministic-iters 30)
    BENCH_ENV=(SIZE=paper STEPS=20 REPEATS=2 WARMUP=10 PROFILE=10 PSEUDO=16,64)
    PACKING_ENV=(SIZE=paper STEPS=20 PACKING_K="1 2 4" PACKING_STEPS=40 PACKING_WARMUP=10)
fi
# LIMIT_<PART>=seconds overrides a part's limit (LIMIT_PAPER=20 shows what a timeout leaves).
L_ENV=${LIMIT_ENV:-$L_ENV} L_TESTS=${LIMIT_GPU_TESTS:-$L_TESTS} L_PAPER=${LIMIT_PAPER:-$L_PAPER}
L_BENCH=${LIMIT_BENCH:-$L_BENCH} L_PACKING=${LIMIT_PACKING:-$L_PACKING}
BUDGET=0
for p in env:$L_ENV gpu_tests:$L_TESTS paper:$L_PAPER bench:$L_BENCH packing:$L_PACKING; do
    [[ " $PARTS " == *" ${p%%:*} "* ]] && BUDGET=$(( BUDGET + ${p#*:} ))
done

# 1. Imports first, so a missing package shows at once.
part env "$L_ENV" env.json "$PY" - "$OUT/env.json" "$DEVICE" <<'EOF'
import importlib, importlib.util, json, os, platform, subprocess, sys, time

out, device = sys.argv[1], sys.argv[2]
env = {"python": sys.version, "executable": sys.executable, "platform": platform.platform(),
       "cpus": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)), "device": device, "imports": {}}
for name in ("torch", "numpy", "PIL", "yaml", "cv2", "scipy", "skimage", "pytest", "simtune.train.pipeline"):
    start = time.perf_counter()
    try:
        module = importlib.import_module(name)
    except Exception as exc:
        env["imports"][name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    else:
        env["imports"][name] = {"ok": True, "version": getattr(module, "__version__", None),
                                "file": getattr(module, "__file__", None), "s": round(time.perf_counter() - start, 2)}
for name in ("ray", "mlflow", "optuna"):  # not needed; recorded to show the check ran without them
    env.setdefault("not_needed_present", {})[name] = importlib.util.find_spec(name) is not None
if env["imports"]["torch"]["ok"]:
    import torch
    cuda = torch.cuda.is_available()
    env["torch"] = {"version": torch.__version__, "cuda": torch.version.cuda, "cuda_available": cuda,
                    "cudnn": torch.backends.cudnn.version() if cuda else None, "threads": torch.get_num_threads()}
    if cuda:
        props = torch.cuda.get_device_properties(0)
        env["torch"].update(device_count=torch.cuda.device_count(), name=props.name,
                            capability=f"{props.major}.{props.minor}", memory_gib=props.total_memory / 2 ** 30,
                            bf16=torch.cuda.is_bf16_supported())
try:
    smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version,clocks.max.sm",
                          "--format=csv,noheader"], capture_output=True, text=True, timeout=10)
    env["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
except (OSError, subprocess.SubprocessError) as exc:
    env["nvidia_smi"] = f"not available: {exc}"
missing = [n for n, r in env["imports"].items() if not r["ok"]]
env["ok"] = not missing and (device != "cuda" or env.get("torch", {}).get("cuda_available", False))
with open(out + ".tmp", "w") as f:
    json.dump(env, f, indent=1)
os.replace(out + ".tmp", out)
print(json.dumps({"missing": missing, "torch": env.get("torch"), "nvidia_smi": env["nvidia_smi"]}, indent=1))
sys.exit(0 if env["ok"] else 1)
EOF

# 2. The gpu-marked tests (skipped without CUDA: a dry run on the CPU only shows they collect).
part gpu_tests "$L_TESTS" gpu_tests.json "$PY" - "$OUT/gpu_tests.json" \
    -q -p no:cacheprovider -m gpu tests/test_banks_losses.py tests/test_evaluation.py <<'EOF'
import json, os, sys, time

import pytest

out, args = sys.argv[1], sys.argv[2:]


class Collect:
    """Each test's outcome, written to the JSON after every test (a timeout keeps those done)."""

    def __init__(self) -> None:
        self.tests, self.start = [], time.perf_counter()

    def pytest_runtest_logreport(self, report) -> None:
        if report.when == "call" or report.outcome != "passed":
            self.tests.append({"test": report.nodeid, "when": report.when, "outcome": report.outcome,
                               "duration_s": round(report.duration, 3),
                               "detail": str(report.longrepr)[-3000:] if report.longrepr else None})
            self.save(None)

    def save(self, code) -> None:
        counts = {o: sum(t["outcome"] == o for t in self.tests) for o in ("passed", "failed", "skipped")}
        data = {"exit_code": code, "args": args, "wall_s": time.perf_counter() - self.start, **counts,
                "tests": self.tests}
        with open(out + ".tmp", "w") as f:
            json.dump(data, f, indent=1)
        os.replace(out + ".tmp", out)


collect = Collect()
collect.save(None)
code = int(pytest.main(args, plugins=[collect]))
collect.save(code)
sys.exit(code)
EOF

# 3. The paper-size pipeline; its JSON grows after each step, big files stay in $WORK/paper.
part paper "$L_PAPER" paper/paper_run.json "$PY" scripts/gpu_paper_run.py --out "$OUT/paper" --work "$WORK/paper" \
    --device "$DEVICE" --budget-s $(( L_PAPER - 15 )) "${PAPER_ARGS[@]}"

# 4. The step benchmark (paper size, then the small network) and 5. trials packed on one GPU.
part bench "$L_BENCH" "bench/bench_gpu.json bench/bench_gpu_small.json" \
    env PYTHON="$PY" OUT="$OUT/bench" DEVICE="$DEVICE" PACKING=0 "${BENCH_ENV[@]}" scripts/bench_gpu.sh
part packing "$L_PACKING" bench/packing.json \
    env PYTHON="$PY" OUT="$OUT/bench" DEVICE="$DEVICE" PACKING=only "${PACKING_ENV[@]}" scripts/bench_gpu.sh

find "$OUT" -type f -size +20M -print -delete  # nothing big should be there; if it is, it does not go back
echo
cat "$OUT/summary.txt"
grep -q '"all_ok": true' "$OUT/summary.json"
