"""Regenerate the ablation table (paper Table 2) on an experiment, mean ± std over seeds.

    python scripts/ablation.py experiments/synthetic.yaml --seeds 3 --out runs/ablation \
        --set stage1.iters=3000 --set stage1.schedule_iters=3000 \
        --set stage2.iters=1500 --set stage2.schedule_iters=1500 --set eval.every=1500

Every row runs the real pipeline; +SIM and +SSL share their stage 1 through the stage-1
cache. Scores are the *report* split at the last iteration (no checkpoint selection).
Writes ``<out>/ablation.json`` and ``<out>/ablation.md``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import time
from pathlib import Path

from simtune import config
from simtune.train.pipeline import run_pipeline

ROWS = (
    ("source only", "source_only"),
    ("+ AA", "aa"),
    ("+ AA + SIM", "aa_sim"),
    ("+ AA + SIM + SSL", "aa_sim_ssl"),
    ("target only", "target_only"),
)


def run_one(job: tuple[Path, int, str, Path, list[str]]) -> dict[str, float]:
    """One (seed, mode) run; resumes a run directory a previous call left unfinished."""
    experiment, seed, mode, out, overrides = job
    cfg = config.load(experiment, [*overrides, f"mode={mode}", f"seed={seed}"])
    run_dir = out / f"{mode}-seed{seed}"
    start = time.perf_counter()
    result = run_pipeline(cfg, run_dir, resume=run_dir.exists(), stage1_cache=out / "stage1_cache")
    final = dict(result.final)
    final["seconds"] = time.perf_counter() - start
    print(f"{mode:<12} seed {seed}: report/miou {final['report/miou']:.2f} "
          f"val/miou {final['val/miou']:.2f} ({final['seconds']:.0f} s)", flush=True)
    return final


def run_rows(experiment: Path, seeds: int, out: Path, overrides: list[str],
             jobs: int) -> dict[str, list[dict[str, float]]]:
    """Every row for every seed, ``jobs`` runs at a time (stage-1 sharing is lock-safe)."""
    work = [(experiment, seed, mode, out, overrides) for seed in range(seeds) for _, mode in ROWS]
    with multiprocessing.get_context("spawn").Pool(jobs) as pool:
        finals = pool.map(run_one, work, chunksize=1)
    results: dict[str, list[dict[str, float]]] = {mode: [] for _, mode in ROWS}
    for (_, _, mode, _, _), final in zip(work, finals):
        results[mode].append(final)
    return results


def mean_std(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def markdown(results: dict[str, list[dict[str, float]]], command: str) -> str:
    lines = ["| setting | report mIoU | selection mIoU |", "|---|---|---|"]
    for label, mode in ROWS:
        runs = results[mode]
        lines.append(f"| {label} | {mean_std([r['report/miou'] for r in runs])} | "
                     f"{mean_std([r['val/miou'] for r in runs])} |")
    lines.append("")
    lines.append(f"Command: `{command}`; mean ± sample std over {len(results[ROWS[0][1]])} seeds, last iteration.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", type=Path)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("runs/ablation"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (one torch thread each)")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    results = run_rows(args.experiment, args.seeds, out, args.overrides, args.jobs)
    (out / "ablation.json").write_text(json.dumps(results, indent=1))
    command = f"python scripts/ablation.py {args.experiment} --seeds {args.seeds}" + "".join(
        f" --set {o}" for o in args.overrides)
    table = markdown(results, command)
    (out / "ablation.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
