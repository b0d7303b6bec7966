"""The trust table of a finished sweep: can its label-free validators select, with seed intervals?

A sweep's ranked configurations that trained to the end become a ``selection.study.Grid``
(configuration label x replicate seed, every evaluation of each run from its run directory);
the *default* configuration is the one whose swept values equal the sweep's base config
(``base_config.yaml``), i.e. what a user runs without any selection. ``trust_study`` runs
``selection.study_table.run_study`` on it; ``text_lines`` are what ``simtune report`` prints:
for each validator, last-iteration report mIoU of its pick, of the oracle's pick and of the
default, side by side. Intervals need two seeds or more (``replicates: K``); with one they are
left out and every verdict says the noise is unknown.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simtune import config
from simtune.results.ranking import ConfigResult
from simtune.results.sweepdir import SweepDir
from simtune.results.trials import TrialOutcome
from simtune.rundir import RunDir
from simtune.selection.study import Grid, make_grid, verdict
from simtune.selection.study_table import Study, level, markdown, run_study
from simtune.tables import text_table
from simtune.tracking import naming

TRUST_FILE = "trust.md"  # the trust table alone, beside summary.md in the report folder


@dataclass(frozen=True)
class TrustOutcome:
    """The study of a sweep, or why there is none."""

    study: Study | None
    grid: Grid | None
    note: str  # why no study ("" when there is one)


def label(params: dict[str, Any]) -> str:
    return naming.config_label(params) or "the base config"


def default_label(sweep_dir: Path, configs: Sequence[ConfigResult]) -> str | None:
    """The configuration whose swept values equal the base config's, if the sweep ran it."""
    path = SweepDir(sweep_dir).base_config
    if not path.is_file() or not configs:
        return None
    base = config.flatten(config.build(config.read_yaml(path), source=str(path)))
    for c in configs:
        if all(json.dumps(base.get(k)) == json.dumps(v) for k, v in c.params.items()):
            return label(c.params)
    return None


def sweep_grid(sweep_dir: Path, trials: Sequence[TrialOutcome], configs: Sequence[ConfigResult]) -> Grid:
    """The paired grid of the configurations trained to the end (raises ``ValueError`` if none pair)."""
    by_id = {t.trial_id: t for t in trials}
    runs = {(label(c.params), r.seed): RunDir(by_id[r.trial_id].run_dir).records()
            for c in configs if c.completed for r in c.replicates}
    return make_grid(runs, default_label(sweep_dir, [c for c in configs if c.completed]))


def trust_study(sweep_dir: Path, trials: Sequence[TrialOutcome], configs: Sequence[ConfigResult]) -> TrustOutcome:
    """The study of the sweep's validators; a note instead when no ``select/*`` was logged or nothing pairs."""
    try:
        grid = sweep_grid(sweep_dir, trials, configs)
        study = run_study(grid)
    except ValueError as exc:
        return TrustOutcome(None, None, f"trust table skipped: {exc}")
    if len(study.rows) < 2:
        return TrustOutcome(None, grid, "trust table skipped: no select/* validator was logged "
                                        "(select.enabled: true, or a select/* sweep metric, computes them)")
    return TrustOutcome(study, grid, "")


def section(outcome: TrustOutcome) -> list[str]:
    """The report's markdown section (empty without a study)."""
    if outcome.study is None or outcome.grid is None:
        return []
    grid = outcome.grid
    return ["## Label-free validators: can they select? (trust table)", "",
            f"{len(grid.configs)} configurations trained to the end x {len(grid.seeds)} paired seed(s); default "
            f"(no selection) = {grid.default or 'not in this sweep (no configuration has the base config values)'}. "
            "Each validator picks the configuration with the highest mean of its last evaluations; the oracle "
            "(`val/miou`) needs val labels; every pick is scored on `report/miou`, never used to pick. "
            "docs/selection.md explains the columns.", "", markdown(outcome.study), ""]


def text_lines(outcome: TrustOutcome) -> list[str]:
    """For the terminal: per validator, report mIoU of its pick, the oracle's pick and the default."""
    if outcome.study is None:
        return [outcome.note] if outcome.note else []
    b = outcome.study.baselines
    rows = [["validator", "picks", "report mIoU", "oracle's pick", "default", "verdict"]]
    rows += [[row.metric, row.pick or "-", level(row.pick_report), f"{level(b.oracle_report)} ({b.oracle_pick})",
              f"{level(b.default_report)} ({b.default or '-'})", verdict(row)] for row in outcome.study.rows]
    return ["label-free selection (last iteration, report mIoU, mean over seeds, 95% bootstrap interval):",
            text_table(rows)]
