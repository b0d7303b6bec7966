"""How much of a sweep's slot time went to trials waiting for a stage another trial was training.

    python scripts/idle_share.py SWEEP_DIR --slots 2

For each trial, the wait is the time from its attempt's start (``attempts.jsonl``) to the moment
it adopted a shared stage from the cache (the stage's ``done.json`` naming ``from_cache``), summed
over stage 0 and stage 1; a trial that trained a stage itself waited 0 for it. The idle share is
the sum of the waits over (slots x wall), wall from the first trial's start to the last trial's
end (its ``results.json``). Shared stages trained before the trials (``<sweep>/shared/``) count in
the wall time but are no trial's wait; the script says how long that phase took.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from simtune.results.sweepdir import SweepDir
from simtune.rundir import RunDir

STAGES = ("stage0", "stage1")


def first_start(run: RunDir) -> float:
    """When the run's first attempt started (``attempts.jsonl``)."""
    return float(json.loads(run.attempts.read_text().splitlines()[0])["time"])


def trial_waits(run: RunDir) -> tuple[float, float, float]:
    """(start, end, seconds waited for cached stages) of one trial's first attempt."""
    start = first_start(run)
    end = run.results.stat().st_mtime
    waited = 0.0
    for stage in STAGES:
        done = run.done(stage)
        if done.is_file() and "from_cache" in json.loads(done.read_text()):
            waited += max(0.0, done.stat().st_mtime - start)
    return start, end, waited


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path)
    parser.add_argument("--slots", type=int, required=True, help="trials the cluster ran at once")
    args = parser.parse_args()
    sweep = SweepDir(args.sweep)
    rows = [trial_waits(run) for run in map(RunDir, sorted(sweep.runs.iterdir())) if run.finished()]
    shared = [run for run in map(RunDir, sorted(sweep.shared.glob("stage*"))) if run.finished()]
    first = min([r[0] for r in rows] + [first_start(run) for run in shared])
    wall = max(r[1] for r in rows) - first
    waited = sum(r[2] for r in rows)
    phase = max(run.results.stat().st_mtime for run in shared) - first if shared else 0.0
    print(f"{len(rows)} trials, {args.slots} slots, wall {wall:.0f} s (shared stages first: {phase:.0f} s); "
          f"trials waited {waited:.0f} s for shared stages: idle share {waited / (args.slots * wall):.1%}")


if __name__ == "__main__":
    main()
