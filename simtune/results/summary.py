"""The typed summary of a sweep: what ``summary.json`` holds, what ``run_sweep`` returns.

``simtune.sweep.summarize`` builds it from Tune's saved experiment state; the CLI prints it,
the MLflow tracker logs it, ``report`` and ``retrain`` read it back with ``Summary.from_json``.
Its JSON form is ``dataclasses.asdict`` of these classes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simtune.keys import SELECTION_METRIC
from simtune.results.sweepdir import SweepDir, read_summary
from simtune.rundir import write_json
from simtune.stats import Spread


@dataclass(frozen=True)
class TrialSummary:
    """One Tune trial: its swept values, seed, final reported metrics and how it ended."""

    trial_id: str
    status: str  # Tune's TERMINATED / ERROR / RUNNING / PENDING; ERROR also for a diverged run
    params: dict[str, Any]  # the swept values (dotted keys), without the replicate index
    replicate: int  # k: trained with seed = base seed + k
    seed: int
    metrics: dict[str, Any]  # the last result reported to Tune
    iteration: int  # global iteration of that result
    stopped_early: bool  # a scheduler ended it before max_t
    failure_reason: str | None
    failures: int  # crashes Tune retried
    starts: int  # attempts the run directory recorded
    run_dir: str


@dataclass(frozen=True)
class ConfigSummary:
    """One configuration over its counted replicates (``results.ranking.ConfigResult``)."""

    rank: int | None  # 1 = best; None when it cannot be ranked (a seed failed, has not ended or is missing)
    params: dict[str, Any]
    n: int  # seeds counted: all of them, or 0
    seeds: list[int]
    mean: float | None  # of the selection metric over those seeds (at ``stopped_at`` when stopped there)
    std: float | None
    trained_to_end: bool
    trial_ids: list[str]
    spreads: dict[str, Spread | None] = field(default_factory=dict)  # val/miou, report/miou
    eliminated_after: int | None = None  # racing: the seeds it had run when the race dropped it
    eliminated_reason: str | None = None  # racing: "beaten" by the leader, or "failed"
    stopped_at: float | None = None  # ASHA: the rung (iteration) it was stopped at as a whole; mean is there
    estimate: float | None = None  # seed-adjusted estimate of the selection metric (ranks by it; stats.additive)
    estimate_se: float | None = None  # its standard error (None: noise unknown)

    @property
    def outcome(self) -> str:
        """How it ended: left a race (why, after how many seeds), stopped at a rung, or trained to the end."""
        if self.eliminated_after is not None:
            return f"left the race after {self.eliminated_after} seed(s): {self.eliminated_reason}"
        if self.stopped_at is not None:
            return f"stopped by ASHA at iteration {self.stopped_at:g} (mean over its seeds there)"
        return "trained to the end on every seed" if self.trained_to_end else "not trained to the end"


@dataclass(frozen=True)
class Counts:
    total: int
    finished: int
    failed: int
    stopped_early: int
    retried: int  # crashed at least once, then finished
    configs: int
    statuses: dict[str, int] = field(default_factory=dict)  # Tune status -> trials

    @property
    def unfinished(self) -> int:
        return self.total - self.finished - self.failed


@dataclass(frozen=True)
class NoiseVerdict:
    """Best against runner-up, paired over their shared seeds (``results.ranking.ranking_verdict``)."""

    line: str
    n: int | None = None
    difference: float | None = None
    half_width: float | None = None
    beyond_noise: bool | None = None


@dataclass(frozen=True)
class Reproducibility:
    """Split-half Spearman of the configuration ranking (``simtune.stats.split_half``)."""

    line: str
    spearman: float | None = None
    configs: int = 0
    half_size: int = 0
    reliability: float | None = None  # Spearman-Brown: of the ranking from 2 * half_size replicates
    low: float | None = None  # 95% bootstrap interval of ``spearman`` over seeds (K >= 4)
    high: float | None = None
    resamples: int = 0  # bootstrap resamples behind low/high (0: no interval)
    stopped: int = 0  # ranked configurations left out as stopped early by the scheduler


@dataclass(frozen=True)
class Summary:
    """A sweep's trials, its ranked configurations, the best one and the verdict on it."""

    sweep: str
    sweep_dir: str
    space_file: str
    metric: str
    mode: str
    max_iteration: int | None
    replicates: int
    counts: Counts
    best: TrialSummary | None  # the best configuration's first counted replicate
    ranking: list[str]  # counted trial ids, best configuration first
    configs: list[ConfigSummary]  # ranked ones first (rank 1, 2, ...), then unranked
    verdict: NoiseVerdict
    reproducibility: Reproducibility
    trials: list[TrialSummary]

    @property
    def ranked(self) -> list[ConfigSummary]:
        return [c for c in self.configs if c.rank is not None]

    @property
    def failed(self) -> list[TrialSummary]:
        return [t for t in self.trials if t.status == "ERROR"]

    @classmethod
    def empty(cls, sweep_dir: Path, metric: str = SELECTION_METRIC, mode: str = "max") -> Summary:
        """The summary of a sweep with no trial (a sweep interrupted before its first trial started)."""
        return cls(sweep=sweep_dir.name, sweep_dir=str(sweep_dir), space_file="", metric=metric, mode=mode,
                   max_iteration=None, replicates=1, counts=Counts(0, 0, 0, 0, 0, 0), best=None, ranking=[],
                   configs=[], verdict=NoiseVerdict("Verdict: 0 configuration(s) ranked; no runner-up to compare"),
                   reproducibility=Reproducibility("Ranking reproducibility: unknown"), trials=[])

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Summary:
        """The summary a ``to_json`` wrote (``summary.json``)."""
        def trial(t: dict[str, Any] | None) -> TrialSummary | None:
            return None if t is None else TrialSummary(**t)

        def config(c: dict[str, Any]) -> ConfigSummary:
            spreads = {k: None if v is None else Spread(**v) for k, v in (c.get("spreads") or {}).items()}
            return ConfigSummary(**{**c, "spreads": spreads})

        return cls(**{**data, "counts": Counts(**data["counts"]), "best": trial(data.get("best")),
                      "configs": [config(c) for c in data["configs"]], "verdict": NoiseVerdict(**data["verdict"]),
                      "reproducibility": Reproducibility(**data["reproducibility"]),
                      "trials": [TrialSummary(**t) for t in data["trials"]]})


def write_summary(sweep_dir: Path, summary: Summary) -> None:
    """``summary.json`` of the sweep folder (atomically)."""
    write_json(SweepDir(sweep_dir).summary, summary.to_json())


def load_summary(sweep_dir: Path) -> Summary | None:
    """The sweep's ``summary.json``, or None before the first summary was written."""
    data = read_summary(sweep_dir)
    return Summary.from_json(data) if data else None
