"""Export a finished ablation folder as a per-(configuration, seed) table and its evaluations.

    python scripts/export_grid.py RUNS_DIR --out docs/data/lambda_ci_grid_10seeds

Reads every run directory under RUNS_DIR (through ``RunDir``) and writes

- ``<out>.csv``: one row per run: ``lambda_ci`` (0 for mode aa: no matching), ``seed``, and the
  last evaluation's ``val/miou``, ``report/miou`` and every ``select/*`` validator;
- ``<out>.evals.csv``: one row per evaluation of stage 1 (``step``, the same columns), the
  within-run curves checkpoint selection is judged on.

The racing replay (``scripts/race_replay.py``) and the selection study read these files.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Any

from simtune.keys import REPORT_METRIC, SELECTION_METRIC
from simtune.rundir import RunDir

KEYS = (SELECTION_METRIC, REPORT_METRIC)


def configuration(run: RunDir) -> dict[str, Any]:
    """The swept value of a run: lambda_ci, 0 when the mode runs no matching (aa)."""
    cfg = run.config()
    return {"lambda_ci": cfg.stage1.lambda_ci if cfg.mode != "aa" else 0.0, "seed": cfg.seed}


def metric_keys(record: dict[str, Any]) -> list[str]:
    return [*KEYS, *sorted(k for k in record if k.startswith("select/"))]


def rows(runs_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(final rows, evaluation rows) of every finished run under ``runs_dir``."""
    finals, evals = [], []
    for folder in sorted(p for p in runs_dir.iterdir() if RunDir(p).finished()):
        run = RunDir(folder)
        key = configuration(run)
        last = run.last_evaluation()
        if last is None:
            continue
        finals.append({**key, **{k: last[1][k] for k in metric_keys(last[1])}})
        evals += [{**key, "step": int(r["step"]), **{k: r[k] for k in metric_keys(r)}} for r in run.history("stage1")]
    order = lambda row: (row["lambda_ci"], row["seed"], row.get("step", 0))  # noqa: E731
    return sorted(finals, key=order), sorted(evals, key=order)


def write_csv(path: Path, table: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(table[0]))
        writer.writeheader()
        for row in table:
            writer.writerow({k: f"{v:.4f}" if isinstance(v, float) and k != "lambda_ci" else v for k, v in row.items()})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs_dir", type=Path, help="an ablation folder's runs/")
    parser.add_argument("--out", type=Path, required=True, help="output path without extension")
    args = parser.parse_args(argv)
    finals, evals = rows(args.runs_dir)
    if not finals:
        parser.error(f"{args.runs_dir}: no finished run directory")
    write_csv(args.out.with_suffix(".csv"), finals)
    write_csv(args.out.with_suffix(".evals.csv"), evals)
    print(f"{len(finals)} runs, {len(evals)} evaluations -> {args.out}.csv, {args.out}.evals.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
