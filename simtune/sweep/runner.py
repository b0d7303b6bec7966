"""Start or resume a sweep on Ray Tune and write its summary.

A sweep lives in ``<storage>/<name>/`` (paths: ``results.SweepDir``)::

    sweep.json          how it was started (space file, --set, settings) and the space's hash
    space.yaml          a copy of the search-space file
    runs/<trial_id>/    each trial's run directory (``run_pipeline`` output, attempts.jsonl)
    stage0_cache/       stage-0 warm starts shared by trials with identical stage-0 settings
    stage1_cache/       stage-1 results shared by trials with identical stage-1 settings
    trial_<trial_id>/   Tune's per-trial results and checkpoints
    summary.json        every trial: params, final metrics, status, failure reason
    best_config.yaml    the resolved config of the best trial (``simtune train`` accepts it)

Ray objects are built in ``tuner``, the cluster is joined in ``cluster``, and the summary is
read back from Tune's state in ``summarize``.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import asdict
from typing import Any

from simtune import preflight
from simtune.config import config_hash
from simtune.errors import ConfigError
from simtune.results.summary import Summary, write_summary
from simtune.results.sweepdir import SweepDir
from simtune.rundir import write_config, write_json
from simtune.search.space import SearchSpace
from simtune.sweep.cluster import check_shared_storage, fit_to_cluster, init_ray
from simtune.sweep.lock import SweepLock
from simtune.sweep.mlflow_callback import trial_loggers
from simtune.sweep.options import SweepOptions
from simtune.search.plan.cost import planned_trials
from simtune.sweep.race import run_race
from simtune.sweep.jobs.shared import share_first
from simtune.sweep.summarize import summarize
from simtune.sweep.tuner import build_tuner
from simtune.tracking.store import check_store
from simtune.tracking.sweep import SweepTracker


def run_sweep(space: SearchSpace, options: SweepOptions, overrides: list[str]) -> Summary:
    """Run (or resume) every trial of ``space``; returns the summary also written to ``summary.json``.

    Everything is checked before Ray starts: every trial's config, dataset and weights
    (``preflight``), that no other sweep of this name runs (``SweepLock``), the sweep folder
    and the tracking store.
    Raises:
        ConfigError / DataError: a trial config, dataset or weights file the pipeline would refuse;
            another sweep of this name is running.
        ConfigError: the sweep exists without ``resume`` (or is missing with it), or differs from
            the one being resumed, or the storage is not shared by every node of the cluster.
        ConfigError: the cluster cannot run the trials as asked (``search.plan.resources.fit``): checked
            once Ray is joined, before the sweep folder or its MLflow run is written.
        TrackingError: the tracking store cannot be reached (raised before Ray starts).
    """
    preflight.check(space.trial_configs(), say=_note)
    with SweepLock(options.storage, options.name) as lock:
        taken_over = lock.acquire()
        if taken_over:
            _note(taken_over)
        record = _check_sweep_dir(space, options, overrides)
        check_store(options.tracking_store)  # reached before Ray starts; the parent run is made after
        summary, tracker = _run_on_ray(space, options, record)
    write_summary(options.sweep_dir, summary)
    if summary.best is not None:
        write_config(space.config_for(summary.best.params), SweepDir(options.sweep_dir).best_config)
    tracker.finish(summary)
    return summary


def _run_on_ray(space: SearchSpace, options: SweepOptions, record: dict[str, Any]) -> tuple[Summary, SweepTracker]:
    """Start (or join) Ray, check the cluster, open the MLflow parent run, run the tuner, and
    summarise what Tune saved. A cluster that cannot run the sweep is refused before anything
    is written (sweep folder or MLflow run)."""
    import ray

    started_ray = not ray.is_initialized()
    if started_ray:
        init_ray(options.address)
    try:
        check_shared_storage(options.storage, explicit=options.storage_explicit)
        space = fit_to_cluster(space, say=_note)
        tracker = _open_tracker(space, options)
        _record_sweep(space, options, record)
        if space.racing is not None:
            run_race(space, options, trial_loggers(tracker))
        else:
            share_first(space, options, planned_trials(space))
            build_tuner(space, options, trial_loggers(tracker)).fit()
        return summarize(space, options.sweep_dir), tracker
    finally:
        if started_ray:
            ray.shutdown()


def _note(text: str) -> None:
    print(f"simtune sweep: {text}", file=sys.stderr)


# ----------------------------------------------------------------------------- setting up


def _check_sweep_dir(space: SearchSpace, options: SweepOptions, overrides: list[str]) -> dict[str, Any]:
    """Refuse to overwrite a sweep, or to resume a different one; returns the record to write."""
    from ray import tune

    record = {"name": options.name, "space_file": str(space.file.resolve()), "overrides": overrides,
              "space_hash": space_hash(space), "settings": _settings(space)}
    if options.resume:
        path = SweepDir(options.sweep_dir).record
        resumable = path.is_file() if space.racing else tune.Tuner.can_restore(str(options.sweep_dir))
        if not resumable:
            raise ConfigError(f"{options.sweep_dir}: no sweep to resume here; check --name and --storage")
        old = json.loads(path.read_text()) if path.is_file() else {}
        if old.get("space_hash") != record["space_hash"]:
            raise ConfigError(f"{options.sweep_dir}: the search space or --set differ from the sweep being "
                              f"resumed (started with {old.get('space_file')} {' '.join(old.get('overrides', []))})")
    elif SweepDir(options.sweep_dir).record.is_file():
        raise ConfigError(f"{options.sweep_dir}: a sweep of this name exists; pass --resume or another --name")
    return record


def _record_sweep(space: SearchSpace, options: SweepOptions, record: dict[str, Any]) -> None:
    """``sweep.json``, a copy of the space file and the resolved base config, once per sweep."""
    if options.resume:
        return
    folder = SweepDir(options.sweep_dir)
    folder.root.mkdir(parents=True, exist_ok=True)
    shutil.copy2(space.file, folder.space_copy)
    write_config(space.base_config, folder.base_config)
    write_json(folder.record, record)


def space_hash(space: SearchSpace) -> str:
    """A hash of everything that decides what the trials compute."""
    return config_hash({"changes": space.changes, "params": {k: asdict(p) for k, p in space.params.items()},
                        "settings": _settings(space)})


def _settings(space: SearchSpace) -> dict[str, Any]:
    return {"metric": space.metric, "mode": space.mode, "search": asdict(space.search),
            "scheduler": asdict(space.scheduler), "num_samples": space.num_samples,
            "resources": asdict(space.resources), "max_concurrent": space.max_concurrent,
            "max_failures": space.max_failures, "replicates": space.replicates,
            "racing": asdict(space.racing) if space.racing else None}


def _open_tracker(space: SearchSpace, options: SweepOptions) -> SweepTracker:
    """The sweep's MLflow parent run, reached before Ray starts."""
    return SweepTracker.open(tracking_uri=options.tracking_store, storage=options.storage, sweep_name=options.name,
                             space_file=space.file, space=space, base_config=space.base_config,
                             resume=options.resume)

