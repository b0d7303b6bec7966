"""Compute a search needs to get within a tolerance of a full grid's best (docs/sweeps.md).

    python scripts/sweep_efficiency.py GRID_SWEEP SEARCH_SWEEP [SEARCH_SWEEP ...] [--tolerance 0.5]

Each argument is a finished sweep folder (``<storage>/<name>``). The target is the grid's best
``val/miou`` at a fully trained trial's last evaluation, minus ``--tolerance`` (mIoU points).
A sweep *reaches* the target when one of its trials reports ``val/miou >= target`` at its
last iteration (``max_iteration``). Its cost is the trial-iterations every trial had reached
by then, read from Tune's timestamped results. The grid's own cost is its total: a grid
only knows its best once every point has trained.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from simtune.keys import SELECTION_METRIC
from simtune.results.sweepdir import SweepDir


def results(sweep: Path) -> dict[str, list[dict[str, Any]]]:
    """Trial id -> every result Tune recorded for it (all attempts), in time order."""
    out: dict[str, list[dict[str, Any]]] = {}
    for folder in sorted(sweep.glob("trial_*")):
        lines = (folder / "result.json").read_text().splitlines() if (folder / "result.json").is_file() else []
        rows = [json.loads(line) for line in lines if line.strip()]
        out[folder.name.removeprefix("trial_")] = sorted((r for r in rows if "iteration" in r),
                                                          key=lambda r: r["timestamp"])
    return out


def full_length_scores(sweep: Path, max_iteration: int) -> list[tuple[float, float]]:
    """(timestamp, val/miou) of every evaluation made at the last iteration of a trial."""
    return sorted((r["timestamp"], r[SELECTION_METRIC]) for rows in results(sweep).values() for r in rows
                  if r["iteration"] >= max_iteration and SELECTION_METRIC in r and not r.get("failed"))


def cost_until(sweep: Path, until: float) -> int:
    """Trial-iterations all trials had reached at time ``until``."""
    return sum(max((r["iteration"] for r in rows if r["timestamp"] <= until), default=0)
               for rows in results(sweep).values())


def row(sweep: Path, target: float, max_iteration: int, *, grid: bool) -> dict[str, Any]:
    scores = full_length_scores(sweep, max_iteration)
    start = min((rows[0]["timestamp"] - rows[0].get("time_total_s", 0.0)
                 for rows in results(sweep).values() if rows), default=0.0)
    total = cost_until(sweep, float("inf"))
    hit = next((t for t, score in scores if score >= target), None)
    if grid:  # the grid's best is known once its last trial has finished
        hit = max(r["timestamp"] for rows in results(sweep).values() for r in rows)
    return {"sweep": sweep.name, "trials": len(results(sweep)), "best": max((s for _, s in scores), default=None),
            "total": total, "to_target": cost_until(sweep, hit) if hit else None,
            "minutes_to_target": None if hit is None else round((hit - start) / 60, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("grid", type=Path)
    parser.add_argument("searches", type=Path, nargs="+")
    parser.add_argument("--tolerance", type=float, default=0.5, help="mIoU points below the grid's best")
    args = parser.parse_args(argv)
    max_iteration = json.loads(SweepDir(args.grid).summary.read_text())["max_iteration"]
    grid_best = max(score for _, score in full_length_scores(args.grid, max_iteration))
    target = grid_best - args.tolerance
    print(f"grid best val/miou {grid_best:.2f}; target {target:.2f} (tolerance {args.tolerance})")
    print("| sweep | trials | best val/miou | trial-iterations (all) | trial-iterations to target | "
          "minutes to target |")
    print("|---|---|---|---|---|---|")
    for sweep, grid in [(args.grid, True), *((s, False) for s in args.searches)]:
        r = row(sweep, target, max_iteration, grid=grid)
        best = "-" if r["best"] is None else f"{r['best']:.2f}"
        reached = "not reached" if r["to_target"] is None else str(r["to_target"])
        print(f"| {r['sweep']} | {r['trials']} | {best} | {r['total']} | {reached} | {r['minutes_to_target']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
