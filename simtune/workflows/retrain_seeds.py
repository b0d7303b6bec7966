"""``retrain --best``'s seed runs: planned, opened in MLflow, trained at once on Ray, closed.

Each (candidate, fresh seed) is a ``TrialJob`` in ``<sweep>/retrain/<trial>-x<scale>/seed<n>``
with an MLflow child run of the retrain; ``sweep.jobs.seeds.train_seeds`` trains them all on the
cluster, and each run then gets the evaluations the live logger did not send, its artifacts and
its status. A seed that fails is a ``SeedRun`` with its reason; the others go on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simtune.errors import ConfigError
from simtune.schema import Config, StageConfig

from simtune import config
from simtune.results.sweepdir import SweepDir
from simtune.rundir import RunDir, read_json
from simtune.tracking import naming
from simtune.tracking.naming.tags import (TAG_CANDIDATE, TAG_NOTE, TAG_PARENT, TAG_ROLE, TAG_RUN_DIR, TAG_SEED,
                                          TAG_SWEEP, TAG_TRIAL)
from simtune.tracking.store import create_run, end_run
from simtune.tracking.trials import ChildRun, finish, logged_steps

if TYPE_CHECKING:
    from simtune.sweep.trainable import TrialJob


@dataclass(frozen=True)
class SeedRun:
    """One retraining of one configuration with one seed."""

    seed: int
    run_dir: Path
    run_id: str
    final: dict[str, float]  # last evaluation of the last stage; {} if it diverged
    failure: str | None = None


def scale_iters(cfg: Config, scale: float) -> Config:
    """``cfg`` with both stages' ``iters`` and ``schedule_iters`` and ``eval.every`` times ``scale``."""
    def times(n: int) -> int:
        return max(1, round(n * scale))

    def stage(settings: StageConfig) -> StageConfig:
        return dataclasses.replace(settings, iters=times(settings.iters), schedule_iters=times(settings.schedule_iters))

    return dataclasses.replace(cfg, stage1=stage(cfg.stage1), stage2=stage(cfg.stage2),
                               eval=dataclasses.replace(cfg.eval, every=times(cfg.eval.every)))


def train_seeds_of(client: Any, result: Any, scale: float, address: str | None,
                 say: Callable[[str], None]) -> None:
    """Every (candidate, seed) as a child run of the retrain, trained at once on Ray (``sweep.jobs.seeds``);
    a seed that fails is listed with its reason, the others go on."""
    from simtune.sweep.jobs.seeds import train_seeds

    planned = [(candidate, _seed_job(result, candidate, seed, scale))
               for candidate in result.candidates for seed in candidate.seeds]
    run_ids = {name: _open_seed_run(client, result, candidate, job) for candidate, (name, job) in planned}
    try:
        failures = train_seeds({name: job for _, (name, job) in planned}, run_ids, sweep_dir=result.sweep_dir,
                               tracking_uri=result.tracking_uri, address=address, say=say)
    except BaseException:
        for run_id in run_ids.values():
            end_run(client, run_id, "KILLED")
        raise
    for candidate, (name, job) in planned:
        candidate.runs.append(_finish_seed_run(client, job, run_ids[name], failures.get(name, "did not run")))


def _seed_job(result: Any, candidate: Any, seed: int, scale: float) -> tuple[str, TrialJob]:
    """(name, job) of one seed: the candidate trial's config with the seed, in ``retrain/<trial>-x<scale>/seed<n>``."""
    from simtune.sweep.trainable import TrialJob

    trial = candidate.trial
    cfg = dataclasses.replace(scale_iters(RunDir(trial.run_dir).config(), scale), seed=seed)
    out = SweepDir(result.sweep_dir).retrain / f"{trial.trial_id}-x{scale:g}" / f"seed{cfg.seed}"
    reusable(out, cfg)
    return f"{trial.trial_id}-x{scale:g}-seed{seed}", TrialJob(
        cfg, out, stage0_cache=SweepDir(result.sweep_dir).stage0_cache, metric=result.metric, mode=result.mode,
        swept={"seed": seed, **candidate.values})


def _open_seed_run(client: Any, result: Any, candidate: Any, job: TrialJob) -> str:
    """The seed's MLflow child run, with its config as params and its datasets as inputs."""
    cfg, trial = job.cfg, candidate.trial
    base = RunDir(trial.run_dir).config()
    note = naming.description(
        f"Seed {cfg.seed} of {naming.config_label(candidate.values) or trial.trial_id}",
        naming.config_diff(config.flatten(cfg), config.flatten(base)) or ["the trial's config"],
        [naming.run_link(result.experiment_id, result.parent_run_id, "retrain"), f"run directory `{job.run_dir}`"])
    tags = {TAG_PARENT: result.parent_run_id, TAG_ROLE: "retrain_seed", TAG_SWEEP: result.sweep_dir.name,
            TAG_TRIAL: trial.trial_id, TAG_RUN_DIR: str(job.run_dir), TAG_CANDIDATE: candidate.role,
            TAG_SEED: str(cfg.seed), TAG_NOTE: note, **naming.source_tags()}
    name = naming.seed_run_name(cfg.seed, candidate.values, candidate.role)
    return create_run(client, result.experiment_id, name=name, tags=tags, params=config.flatten(cfg), cfg=cfg)


def _finish_seed_run(client: Any, job: TrialJob, run_id: str, failure: str | None) -> SeedRun:
    """Evaluations the live logger did not send, the run folder's artifacts, and the run's status."""
    child = ChildRun(run_id, logged_steps(client, run_id))
    stages = (read_json(RunDir(job.run_dir).results) or {}).get("stages") or {}
    if failure is not None or not stages:
        reason = failure or "the run ended without results"
        finish(client, child, "FAILED", job.run_dir, reason=reason, artifacts=False)
        return SeedRun(job.cfg.seed, job.run_dir, run_id, {}, reason)
    finish(client, child, "FINISHED", job.run_dir)
    return SeedRun(job.cfg.seed, job.run_dir, run_id, dict(list(stages.values())[-1]))


def reusable(out: Path, cfg: Config) -> bool:
    """True when ``out`` holds an earlier retrain of the same config (continue it)."""
    if not out.is_dir() or not any(out.iterdir()):
        return False
    existing = RunDir(out)
    if existing.has_config() and config.read_yaml(existing.config_file) == config.to_dict(cfg):
        return True
    raise ConfigError(f"{out}: holds a different run; delete it to retrain this configuration again")
