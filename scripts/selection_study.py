"""The label-free selection study on a recorded grid: trust table with seed intervals and verdicts.

    python scripts/selection_study.py docs/data/lambda_ci_grid_10seeds \
        --source-val docs/data/lambda_ci_grid_10seeds.source_val.csv \
        --out docs/data/selection_study_v2.md [--resamples 2000]

Reads ``<grid>.evals.csv`` (every evaluation of every run, from ``scripts/export_grid.py``) and,
optionally, a per-run ``source_val/miou`` table (``scripts/selection_source_val.py``: final
weights only, so it enters configuration selection, not checkpoint selection). Configurations
are the ``lambda_ci`` values (0 = mode aa, no matching); the no-selection baseline is the
default ``stage1.lambda_ci`` of ``experiments/synthetic.yaml`` (``--experiment``) at its last
evaluation. ``--joint`` treats every (configuration, evaluation) as a candidate: selecting
configuration and checkpoint at once against the same baseline. The statistics are
``simtune.selection.study``; the table is ``simtune.selection.study_table.markdown``.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any

from simtune.config import load
from simtune.errors import SimtuneError
from simtune.selection.study import Grid, RunKey, make_grid
from simtune.selection.study_table import markdown, run_study

SOURCE_VAL = "source_val/miou"


def label(lambda_ci: float) -> str:
    """A configuration's name: ``lambda_ci=0.01``; lambda_ci 0 is mode aa (no matching)."""
    return "lambda_ci=0 (aa)" if lambda_ci == 0.0 else f"lambda_ci={lambda_ci:g}"


def read_csv(path: Path) -> list[dict[str, Any]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def grid_from_csv(evals: Path, source_val: Path | None, default_lambda: float) -> Grid:
    """The grid of ``evals`` (rows: lambda_ci, seed, step, metrics), source-val added to each run's last evaluation."""
    runs: dict[RunKey, list[tuple[int, dict[str, float]]]] = {}
    for row in read_csv(evals):
        key = (label(float(row.pop("lambda_ci"))), int(row.pop("seed")))
        step = int(row.pop("step"))
        metrics = {k: float(v) for k, v in row.items() if v != ""}
        runs.setdefault(key, []).append((step, {"step": float(step), **metrics}))
    ordered = {key: [metrics for _, metrics in sorted(evaluations, key=lambda p: p[0])]
               for key, evaluations in runs.items()}
    if source_val is not None:
        for row in read_csv(source_val):
            key = (label(float(row["lambda_ci"])), int(row["seed"]))
            if key not in ordered:
                raise SimtuneError(f"{source_val}: run {key} is not in {evals}")
            ordered[key][-1] = {**ordered[key][-1], SOURCE_VAL: float(row[SOURCE_VAL])}
    return make_grid(ordered, label(default_lambda))


def joint_grid(grid: Grid) -> Grid:
    """Configuration *and* checkpoint selection at once: every (configuration, evaluation index) is a
    candidate, e.g. ``lambda_ci=0.1@300`` (its evaluation at step 300); the default is the default
    configuration at its last evaluation. Every run must have evaluated at the same steps."""
    steps = sorted({int(e["step"]) for evals in grid.runs.values() for e in evals})
    at = {key: {int(e["step"]): e for e in evals} for key, evals in grid.runs.items()}
    if any(sorted(found) != steps for found in at.values()):
        raise ValueError(f"--joint needs every run evaluated at the same steps ({steps})")
    runs = {(f"{c}@{step}", s): [at[(c, s)][step]] for c in grid.configs for s in grid.seeds for step in steps}
    return make_grid(runs, f"{grid.default}@{steps[-1]}" if grid.default is not None else None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("grid", type=Path, help="recorded grid without extension (reads <grid>.evals.csv)")
    parser.add_argument("--source-val", type=Path, default=None, help="per-run source_val/miou CSV")
    parser.add_argument("--experiment", type=Path, default=Path("experiments/synthetic.yaml"),
                        help="where the default lambda_ci is read (default experiments/synthetic.yaml)")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples over seeds (default 2000)")
    parser.add_argument("--joint", action="store_true",
                        help="pick a (configuration, evaluation) pair at once instead of a configuration")
    parser.add_argument("--out", type=Path, default=None, help="markdown file to write (default: print only)")
    args = parser.parse_args(argv)
    evals = args.grid.with_suffix(".evals.csv")
    for path in (evals, args.source_val, args.experiment):
        if path is not None and not path.is_file():
            print(f"{path}: no such file (expected a recorded grid's .evals.csv, a source-val CSV, an experiment)",
                  file=sys.stderr)
            return 2
    if args.resamples < 100:
        print(f"--resamples: expected >= 100 for a 95% interval, got {args.resamples}", file=sys.stderr)
        return 2
    try:
        default = load(args.experiment).stage1.lambda_ci
        grid = grid_from_csv(evals, args.source_val, default)
        grid = joint_grid(grid) if args.joint else grid
    except (SimtuneError, ValueError, KeyError) as exc:
        print(f"{evals}: {exc}", file=sys.stderr)
        return 2
    what = "(configuration, step) candidates, each one evaluation" if args.joint else "configurations"
    text = (f"Grid `{args.grid}`: {len(grid.configs)} {what} x {len(grid.seeds)} seeds; default "
            f"(no selection) = {grid.default} from {args.experiment}.\n\n"
            + markdown(run_study(grid, resamples=args.resamples)))
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
