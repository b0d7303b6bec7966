"""A retrain's fresh seeds as parallel Ray trials, with the sweep's resources, on the sweep's cluster.

``train_seeds`` runs one Tune trial per seed job (``trainable.run_trial`` over a ``SeedJobs``),
as many at once as the cluster holds with the resources the sweep recorded (``auto`` fitted to
the cluster as for a sweep). A crash is retried from the trial's last checkpoint
(``max_failures``); a diverged seed or a user error fails its trial only. The Tune experiment
lives in ``<sweep>/retrain/tune-<jobs hash>/``: the same retrain run again after a kill -9
restores it, keeps the seeds that finished and continues the others from their checkpoints.

``SeedRunLogger`` logs each seed's reported losses and evaluations to its MLflow run as they
arrive, from the driver (one writer per store); the run ids are read from ``mlflow_runs.json``
in the experiment folder at every start, so a restored experiment logs to the current retrain's runs.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import tune

from simtune.results.sweepdir import SweepDir
from simtune.rundir import read_json, write_json
from simtune.search.plan.resources import AUTO
from simtune.sweep.cluster import check_shared_storage, fit_here, init_ray
from simtune.sweep.mlflow_callback import result_metrics
from simtune.sweep.options import trial_callbacks
from simtune.sweep.trainable import TrialJob, run_trial
from simtune.sweep.tuner import tune_started
from simtune.tracking.store import connect, log_metrics

RUNS_FILE = "mlflow_runs.json"  # job name -> MLflow run id of the current retrain


@dataclass(frozen=True)
class SeedJobs:
    """The jobs of a retrain, by name; a trial's ``params["job"]`` picks one."""

    jobs: dict[str, TrialJob]

    def job(self, params: dict[str, Any], trial_id: str) -> TrialJob:
        return self.jobs[params["job"]]


def seeds_folder(sweep_dir: Path, names: list[str]) -> Path:
    """``<sweep>/retrain/tune-<hash>``: one Tune experiment per set of seed jobs."""
    digest = hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()[:12]
    return SweepDir(sweep_dir).retrain / f"tune-{digest}"


def train_seeds(jobs: dict[str, TrialJob], run_ids: dict[str, str], *, sweep_dir: Path, tracking_uri: str,
                address: str | None, say: Callable[[str], None]) -> dict[str, str | None]:
    """Train every job on Ray at once (as the cluster allows); returns job name -> failure reason or None.

    Raises:
        ConfigError: the cluster cannot run the seeds with the sweep's resources (``search.plan.resources.fit``),
            or a node cannot see the sweep's storage.
    """
    import ray

    folder = seeds_folder(sweep_dir, list(jobs))
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / RUNS_FILE, run_ids)
    settings = (read_json(SweepDir(sweep_dir).record) or {}).get("settings", {})
    started = not ray.is_initialized()
    if started:
        init_ray(address)
    try:
        check_shared_storage(sweep_dir.parent, explicit=True)
        resources = settings.get("resources", {})
        fitted = fit_here(resources.get("cpus", AUTO), resources.get("gpus", AUTO),
                          settings.get("max_concurrent", AUTO), [job.cfg for job in jobs.values()], say, "seeds")
        return run_jobs(jobs, folder, {"cpu": fitted.cpus, "gpu": fitted.gpus}, fitted.max_concurrent,
                        int(settings.get("max_failures", 2)), [SeedRunLogger(tracking_uri, folder / RUNS_FILE)])
    finally:
        if started:
            ray.shutdown()


def run_jobs(jobs: dict[str, TrialJob], folder: Path, resources: dict[str, float], max_concurrent: int,
             max_failures: int, callbacks: list[Any]) -> dict[str, str | None]:
    """One Tune trial per job in the experiment ``folder`` (restored when Tune had started it), on the
    Ray this process has joined; returns job name -> failure reason or None."""
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, context=SeedJobs(jobs), callbacks=trial_callbacks()), resources)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if tune_started(folder):
        tuner = tune.Tuner.restore(str(folder), trainable, resume_unfinished=True, resume_errored=True)
    else:
        tuner = tune.Tuner(trainable, param_space={"job": tune.grid_search(sorted(jobs))},
                           tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent,
                                                       trial_dirname_creator=lambda t: f"trial_{t.trial_id}"),
                           run_config=tune.RunConfig(
                               name=folder.name, storage_path=str(folder.parent), verbose=1, callbacks=callbacks,
                               failure_config=tune.FailureConfig(max_failures=max_failures),
                               checkpoint_config=tune.CheckpointConfig(num_to_keep=1)))
    grid = tuner.fit()
    return {str((grid[i].config or {})["job"]): _failure(grid[i]) for i in range(len(grid))}


def _failure(result: Any) -> str | None:
    """A seed trial's failure: the reason it reported (diverged, user error), or the error that ended it."""
    reason = (result.metrics or {}).get("failure_reason")
    if isinstance(reason, str):
        return reason
    if result.error is not None:
        return " ".join(str(result.error).split())[-500:]
    return None


class SeedRunLogger(tune.Callback):
    """Each seed trial's reported numbers (losses ride along with every evaluation) to its MLflow run."""

    def __init__(self, tracking_uri: str, runs_file: Path) -> None:
        self.tracking_uri = tracking_uri
        self.runs_file = runs_file
        self._client: Any = None
        self._runs: dict[str, str] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_client": None, "_runs": {}}

    def setup(self, stop: Any = None, num_samples: int | None = None, total_num_samples: int | None = None,
              **info: Any) -> None:
        """At every start (a restored experiment too): the current retrain's runs, a fresh client."""
        self._runs = json.loads(self.runs_file.read_text()) if self.runs_file.is_file() else {}
        self._client = connect(self.tracking_uri)

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any],
                        **info: Any) -> None:
        run_id = self._runs.get(str((getattr(trial, "config", None) or {}).get("job")))
        if run_id is None or self._client is None:
            return
        step = int(result.get("iteration", 0))
        log_metrics(self._client, run_id, [(k, v, step) for k, v in result_metrics(result).items() if k != "failed"])
