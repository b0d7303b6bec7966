"""The sweep folder: where a sweep keeps its record, its trials' run directories and its summary.

A sweep folder (``<storage>/<name>/``) holds ``sweep.json``, ``space.yaml``,
``base_config.yaml``, ``runs/<trial_id>/`` (run directories, see ``simtune.rundir``),
``stage0_cache/``, ``stage1_cache/``, ``shared/``, ``summary.json``, ``best_config.yaml``, ``report/`` and,
with ASHA, ``asha.json``. Only this module spells those names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simtune.errors import ConfigError
from simtune.rundir import RunDir, RunsFolder

# ----------------------------------------------------------------------------- the sweep folder


@dataclass(frozen=True)
class SweepDir(RunsFolder):
    """Paths of a sweep folder."""

    @property
    def record(self) -> Path:
        return self.root / "sweep.json"

    @property
    def space_copy(self) -> Path:
        return self.root / "space.yaml"

    @property
    def base_config(self) -> Path:
        return self.root / "base_config.yaml"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def best_config(self) -> Path:
        return self.root / "best_config.yaml"

    @property
    def tracking(self) -> Path:
        """Where the MLflow trial logger finds this driver's store and parent run."""
        return self.root / "tracking.json"

    @property
    def retrain(self) -> Path:
        """``retrain --best``'s seed run directories (``<trial>-x<scale>/seed<n>``) and Tune experiments."""
        return self.root / "retrain"

    @property
    def report(self) -> Path:
        """``simtune report``'s folder (``workflows.report_folder``), replaced whole by each report."""
        return self.root / "report"

    @property
    def shared(self) -> Path:
        """Shared stages trained before the trials that reuse them (``sweep.jobs.shared``): run dirs and Tune's."""
        return self.root / "shared"

    @property
    def race(self) -> Path:
        """A racing sweep's decisions: the configurations, and per round who raced, who left and why."""
        return self.root / "race.json"

    @property
    def asha(self) -> Path:
        """ASHA's rungs and decisions over configurations (``search.halving``), kept by the scheduler."""
        return self.root / "asha.json"

    @property
    def race_rounds(self) -> Path:
        return self.root / "race"

    def race_round(self, n: int) -> Path:
        """The Tune experiment folder of racing round ``n`` (1-based)."""
        return self.race_rounds / f"round{n:02d}"

    def rounds(self) -> list[Path]:
        """The racing rounds' Tune experiment folders, in order; [] for a sweep that does not race."""
        folder = self.race_rounds
        return sorted(p for p in folder.iterdir() if p.is_dir() and p.name.startswith("round")) \
            if folder.is_dir() else []

    def run(self, trial_id: str) -> RunDir:
        return RunDir(self.runs / trial_id)


def resolve_sweep_dir(storage: Path, sweep_name: str) -> Path:
    """The sweep folder, whether ``storage`` is the folder of sweeps or already the sweep's own.

    The sweep runner creates the sweep folder (with ``sweep.json``) before it opens the
    tracker, so a folder named like the sweep that holds ``sweep.json`` is the sweep's.
    """
    storage = Path(storage).resolve()
    if SweepDir(storage).record.is_file() or (storage.name == sweep_name and not (storage / sweep_name).is_dir()):
        return storage
    return storage / sweep_name


def find_sweep(storage: Path, name: str | None) -> Path:
    """The sweep folder ``<storage>/<name>``, or the most recently written one when ``name`` is None.

    Raises:
        ConfigError: no such sweep (the message lists the sweeps that exist).
    """
    storage = Path(storage).resolve()
    sweeps = sorted(p for p in storage.iterdir() if SweepDir(p).runs.is_dir()) if storage.is_dir() else []
    if name is not None:
        if SweepDir(storage / name).runs.is_dir():
            return storage / name
        known = ", ".join(p.name for p in sweeps) or "none"
        raise ConfigError(f"no sweep '{name}' in {storage} (sweeps there: {known}); pass --storage or --sweep")
    if not sweeps:
        raise ConfigError(f"no sweep in {storage} (a sweep folder holds runs/); pass --storage or --sweep")
    return max(sweeps, key=_last_written)


def _last_written(sweep_dir: Path) -> float:
    folder = SweepDir(sweep_dir)
    return max(p.stat().st_mtime for p in (folder.summary, folder.runs) if p.exists())


def read_summary(sweep_dir: Path) -> dict[str, Any]:
    """``summary.json`` as written (``results.summary.Summary.to_json``); {} before the first summary."""
    path = SweepDir(sweep_dir).summary
    return json.loads(path.read_text()) if path.is_file() else {}
