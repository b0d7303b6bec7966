"""A racing sweep on Ray: one Tune round per seed, over the configurations still in the race.

Round n runs every survivor once with replicate index n - 1 (seed = base seed + n - 1) as its
own Tune experiment in ``<sweep>/race/roundNN/``; trials keep their run directories in
``<sweep>/runs/`` like any sweep. After each round ``simtune.search.racing.decide`` drops the
configurations the leader beats (or that failed), and ``race.json`` records the decision.

A killed driver resumes (``--resume``) from what is on disk: finished rounds are read back,
the round in progress is restored through Tune (its finished trials are not run again), and
the race goes on from there.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from simtune.results.ranking import config_key
from simtune.results.sweepdir import SweepDir
from simtune.rundir import write_json
from simtune.search.racing import Round, decide
from simtune.search.space import SearchSpace
from simtune.sweep.options import SweepOptions
from simtune.sweep.summarize import trial_summary
from simtune.sweep.tuner import build_round_tuner


def run_race(space: SearchSpace, options: SweepOptions, callbacks: list[Any]) -> dict[str, Any]:
    """Race ``space.configurations()`` round by round until the racing rule ends it; returns ``race.json``."""
    assert space.racing is not None
    candidates = space.configurations()
    table: dict[str, list[float | None]] = {config_key(c): [] for c in candidates}
    survivors = list(table)
    record: dict[str, Any] = {"racing": asdict(space.racing), "metric": space.metric, "mode": space.mode,
                              "configurations": candidates, "rounds": []}
    folder = SweepDir(options.sweep_dir)
    for n in range(1, space.racing.max_replicates + 1):
        round_dir = folder.race_round(n)
        todo = [c for c in candidates if config_key(c) in survivors]
        build_round_tuner(space, options, callbacks, round_dir, todo, n - 1).fit()
        for key, value in round_values(space, round_dir).items():
            table[key].append(value)
        step = decide(table, survivors, n, space.racing, space.mode)
        record["rounds"].append(_round_record(n, survivors, step))
        write_json(folder.race, record)
        _say(n, survivors, step)
        survivors = list(step.survivors)
        if step.finished:
            break
    return record


def round_values(space: SearchSpace, round_dir: Path) -> dict[str, float | None]:
    """Configuration -> the selection metric of its trial in this round; None when it failed or did not finish."""
    from ray import tune

    analysis = tune.ExperimentAnalysis(str(round_dir), default_metric=space.metric, default_mode=space.mode)
    out: dict[str, float | None] = {}
    for trial in analysis.trials:
        t = trial_summary(space, round_dir.parent.parent, trial)
        value = t.metrics.get(space.metric) if t.status == "TERMINATED" else None
        out[config_key(t.params)] = None if value is None else float(value)
    return out


def _round_record(n: int, entered: list[str], step: Round) -> dict[str, Any]:
    return {"round": n, "replicate": n - 1, "entered": entered, "survivors": list(step.survivors),
            "eliminated": [asdict(e) for e in step.eliminated], "finished": step.finished, "why": step.why}


def _say(n: int, entered: list[str], step: Round) -> None:
    """One line per round on stderr: who raced, who left and why."""
    gone = "; ".join(f"{_label(e.config)} ({e.reason}" + (f": leader {_label(e.leader)} ahead by {e.difference:.2f}, "
                                                         f"p = {e.p_value:.3f})" if e.leader else ")")
                     for e in step.eliminated) or "none"
    end = f"; race over ({step.why})" if step.finished else ""
    print(f"simtune sweep: racing round {n} (seed index {n - 1}): {len(entered)} raced, eliminated: {gone}{end}",
          file=sys.stderr)


def _label(key: str | None) -> str:
    values = json.loads(key) if key else {}
    return ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in values.items())

