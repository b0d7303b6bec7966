"""The paired ablation (paper Table 2) on an experiment: every row of a seed starts from that
seed's stage-0 model and sees the same data order, so rows are compared seed by seed.

    python scripts/ablation.py experiments/synthetic.yaml --seeds 5 --out runs/ablation
    python scripts/ablation.py experiments/synthetic.yaml --first-seed 5 --seeds 5 \
        --modes aa aa_sim --lambdas 0.1 --out runs/ablation-confirm    # confirm on fresh seeds

Per seed s (``seed=s`` in every run): stage 0 (``init.source_pretrain``) is trained once and
shared through ``<out>/stage0_cache``; then source only (continued on the source), + AA,
+ AA + SIM at each lambda_ci of ``--lambdas`` (the paper's grid), + AA + SIM + SSL (at the
experiment's lambda_ci, its stage 1 shared with that + SIM run through ``<out>/stage1_cache``),
source only and + AA trained as long as + SSL (its two stages' iterations in one stage: the
controls for its extra training) and target only. Stage 2 trains as long as stage 1 (the script sets stage2.iters and
stage2.schedule_iters to stage 1's). Scores are the last evaluation of the last stage.

Reported: each row's mean ± std over seeds, and paired differences (AA - source, SIM - AA,
SSL - SIM, full - source, target - source, SSL - AA and full - source at equal length, and
SIM - AA at every lambda_ci) with their 95%
t-intervals (``simtune.stats``), on the report split, on the selection split, and on the
report split's thing and stuff classes apart (mean IoU over each group). Rerunning with the
same ``--out`` reuses every finished run, so ``--lambdas`` can add rows to a finished table.
Writes ``<out>/ablation.json`` and ``<out>/ablation.md``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from pathlib import Path
from typing import Any

from simtune import config, schema
from simtune.labels import CLASS_NAMES, STUFF_IDS, THING_IDS
from simtune.stats import paired_difference, spread, verdict
from simtune.train.pipeline import run_pipeline

PAPER_LAMBDAS = (0.1, 0.05, 0.01, 0.005, 0.001)
MODES = ("source_only", "aa", "aa_sim", "aa_sim_ssl", "target_only")
SAME_LENGTH = {"source only": "source only (as long as + SSL)", "+ AA": "+ AA (as long as + SSL)"}
Job = tuple[Path, int, str, str, Path, list[str]]  # experiment, seed, row, mode, out, overrides
METRICS = {"report/miou": "report mIoU", "val/miou": "selection mIoU",
           "report/things": "report, thing classes", "report/stuff": "report, stuff classes"}


def rows(cfg: schema.Config, lambdas: tuple[float, ...], modes: tuple[str, ...] = MODES
         ) -> dict[str, tuple[str, list[str]]]:
    """Row name -> (mode, extra overrides), in table order, for the chosen ``modes``.

    The + SSL row's stage 1 is the + SIM run at the experiment's lambda_ci, so that row joins
    the + SIM rows whenever + SSL is run. So do the two equal-length controls: source only
    and + AA trained, in one stage, as many iterations as + SSL's stage 1 and stage 2 together.
    """
    with_ssl = "aa_sim_ssl" in modes
    long = [f"stage1.iters={cfg.stage1.iters + cfg.stage2.iters}",
            f"stage1.schedule_iters={cfg.stage1.schedule_iters + cfg.stage2.schedule_iters}"]
    table: dict[str, tuple[str, list[str]]] = {"source only": ("source_only", []), "+ AA": ("aa", [])}
    for value in sorted(set(lambdas) | ({cfg.stage1.lambda_ci} if with_ssl else set()), reverse=True):
        table[f"+ AA + SIM (lambda_ci {value:g})"] = ("aa_sim", [f"stage1.lambda_ci={value}"])
    table["+ AA + SIM + SSL"] = ("aa_sim_ssl", [])
    if with_ssl:
        table[SAME_LENGTH["source only"]] = ("source_only", long)
        table[SAME_LENGTH["+ AA"]] = ("aa", long)
    table["target only"] = ("target_only", [])
    return {row: spec for row, spec in table.items() if spec[0] in modes}


def run_one(job: Job) -> dict[str, float]:
    """One (seed, row) run; resumes a run directory a previous call left unfinished."""
    experiment, seed, row, mode, out, overrides = job
    cfg = config.load(experiment, [*overrides, f"mode={mode}", f"seed={seed}"])
    run_dir = out / "runs" / f"{row.replace(' ', '_').replace('+', 'p')}-seed{seed}"
    start = time.perf_counter()
    result = run_pipeline(cfg, run_dir, resume=run_dir.exists(), stage1_cache=out / "stage1_cache",
                          stage0_cache=out / "stage0_cache")
    final = {k: v for k, v in result.final.items() if k in ("report/miou", "val/miou")}
    final |= {"report/things": group_mean(result.final, THING_IDS), "report/stuff": group_mean(result.final, STUFF_IDS)}
    final["seconds"] = time.perf_counter() - start
    print(f"{row:<32} seed {seed}: report {final['report/miou']:.2f} val {final['val/miou']:.2f} "
          f"({final['seconds']:.0f} s)", flush=True)
    return final


def group_mean(metrics: dict[str, float], class_ids: tuple[int, ...]) -> float:
    """Mean report IoU over the given classes among those the report split scores."""
    values = [metrics[key] for key in (f"report/iou/{CLASS_NAMES[c]}" for c in class_ids) if key in metrics]
    return sum(values) / len(values)


def run_all(experiment: Path, seeds: range, out: Path, overrides: list[str], lambdas: tuple[float, ...],
            jobs: int, modes: tuple[str, ...] = MODES) -> dict[str, list[dict[str, float]]]:
    """Every row for every seed, ``jobs`` at a time; seeds interleave so stage 0s train in parallel."""
    table = rows(config.load(experiment, overrides), lambdas, modes)
    work: list[Job] = [(experiment, seed, row, mode, out, [*overrides, *extra])
                       for row, (mode, extra) in table.items() for seed in seeds]
    with multiprocessing.get_context("spawn").Pool(jobs) as pool:
        finals = pool.map(run_one, work, chunksize=1)
    results: dict[str, list[dict[str, float]]] = {row: [] for row in table}
    for job, final in zip(work, finals):
        results[job[2]].append(final)  # in seed order: pool.map keeps the order of ``work``
    return results


def comparisons(results: dict[str, list[dict[str, float]]], default_sim: str) -> list[tuple[str, str, str]]:
    """(label, first row, second row) of every paired difference reported."""
    pairs = [("AA - source", "+ AA", "source only"), ("SIM - AA", default_sim, "+ AA"),
             ("SSL - SIM", "+ AA + SIM + SSL", default_sim), ("full - source", "+ AA + SIM + SSL", "source only"),
             ("target - source", "target only", "source only"),
             ("SSL - AA, equal length", "+ AA + SIM + SSL", SAME_LENGTH["+ AA"]),
             ("full - source, equal length", "+ AA + SIM + SSL", SAME_LENGTH["source only"])]
    pairs += [(f"SIM - AA at {row.split('(')[1].rstrip(')')}", row, "+ AA")
              for row in results if row.startswith("+ AA + SIM (")]
    return [(label, first, second) for label, first, second in pairs if first in results and second in results]


def markdown(results: dict[str, list[dict[str, float]]], default_sim: str, command: str) -> str:
    lines = ["| row | " + " | ".join(METRICS.values()) + " |", "|---" * (len(METRICS) + 1) + "|"]
    for row, runs in results.items():
        cells = []
        for metric in METRICS:
            s = spread([r[metric] for r in runs])
            cells.append(f"{s.mean:.2f}" + ("" if s.std is None else f" ± {s.std:.2f}"))
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    lines += ["", "| paired difference, 95% interval | " + " | ".join(METRICS.values()) + " |",
              "|---" * (len(METRICS) + 1) + "|"]
    verdicts = []
    for label, first, second in comparisons(results, default_sim):
        cells = []
        for metric in METRICS:
            d = paired_difference([r[metric] for r in results[first]], [r[metric] for r in results[second]])
            cells.append(f"{d.mean:+.2f}" + ("" if d.half_width is None else
                                              f" [{d.low:+.2f}, {d.high:+.2f}]"))
            if metric == "report/miou":
                verdicts.append(f"- {label}: " + verdict(d, first=first, second=second))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    seeds = len(next(iter(results.values())))
    lines += ["", *verdicts, "", f"Command: `{command}`; {seeds} seeds, mean ± sample std, last iteration."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", type=Path)
    parser.add_argument("--seeds", type=int, default=5, help="how many seeds: first-seed, first-seed + 1, ...")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="e.g. 5 with --seeds 5: fresh seeds to confirm a lambda_ci chosen on seeds 0-4")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES),
                        help="only these rows (default: all); comparisons need both of their rows")
    parser.add_argument("--out", type=Path, default=Path("runs/ablation"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--lambdas", type=float, nargs="*", default=list(PAPER_LAMBDAS),
                        help="lambda_ci values of the + SIM rows (default: the paper's grid)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (one torch thread each)")
    args = parser.parse_args()
    base = config.load(args.experiment, args.overrides)
    overrides = [*args.overrides, f"stage2.iters={base.stage1.iters}",
                 f"stage2.schedule_iters={base.stage1.schedule_iters}"]  # stage 2 as long as stage 1
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    results = run_all(args.experiment, seeds, out, overrides, tuple(args.lambdas), args.jobs, tuple(args.modes))
    wall = time.perf_counter() - start
    command = " ".join(["python scripts/ablation.py", str(args.experiment), f"--seeds {args.seeds}",
                        f"--out {args.out}", *(f"--set {o}" for o in args.overrides)])
    if args.first_seed:
        command += f" --first-seed {args.first_seed}"
    if tuple(args.modes) != MODES:
        command += " --modes " + " ".join(args.modes)
    if tuple(args.lambdas) != PAPER_LAMBDAS:
        command += " --lambdas " + " ".join(f"{v:g}" for v in args.lambdas)
    default_sim = f"+ AA + SIM (lambda_ci {base.stage1.lambda_ci:g})"
    payload: dict[str, Any] = {"results": results, "wall_seconds": wall, "command": command}
    (out / "ablation.json").write_text(json.dumps(payload, indent=1))
    table = markdown(results, default_sim, command) + f"\n\nWall time: {wall / 60:.1f} min."
    (out / "ablation.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
