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

A trial whose loss became non-finite ends normally in Tune (it would only diverge again
if retried) and is marked ERROR here, from its run directory's ``failure.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from simtune import preflight
from simtune.errors import ConfigError
from simtune.rundir import write_config, write_json
from simtune.sweep import replicates
from simtune.sweep.algorithms import ALGORITHMS, SCHEDULERS
from simtune.sweep.lock import SweepLock
from simtune.sweep.results import (SELECTION_METRIC, ConfigResult, Replicate, Standing, SweepDir, group_configs,
                                   rank_configs, ranking_verdict, reproducibility)
from simtune.stats import split_half_line
from simtune.sweep.space import Param, SearchSpace
from simtune.sweep.trainable import FAULT_ENV, TrialContext, run_trial
from simtune.sweep.tracker import SweepTracker


@dataclass(frozen=True)
class SweepOptions:
    """Where a sweep runs and is stored; ``storage`` is absolute."""

    name: str
    storage: Path
    storage_explicit: bool = False  # given by the user (required on a multi-node cluster)
    resume: bool = False
    address: str | None = None  # an existing Ray cluster; None = RAY_ADDRESS or a local one
    tracking_uri: str | None = None
    share_stage1: bool = True  # trials with identical stage-1 settings share one stage-1 result
    share_stage0: bool = True  # trials with identical stage-0 settings share one stage-0 warm start

    @property
    def sweep_dir(self) -> Path:
        return self.storage / self.name


def run_sweep(space: SearchSpace, options: SweepOptions, overrides: list[str]) -> dict[str, Any]:
    """Run (or resume) every trial of ``space``; returns the summary also written to ``summary.json``.

    Everything is checked before Ray starts: every trial's config, dataset and weights
    (``preflight``), that no other sweep of this name runs (``SweepLock``), the sweep folder
    and the tracking store.
    Raises:
        ConfigError / DataError: a trial config, dataset or weights file the pipeline would refuse;
            another sweep of this name is running.
        ConfigError: the sweep exists without ``resume`` (or is missing with it), or differs from
            the one being resumed, or the storage is not shared by every node of the cluster.
        TrackingError: the tracking store cannot be reached (raised before Ray starts).
    """
    preflight.check(space.trial_configs(), say=_note)
    with SweepLock(options.storage, options.name) as lock:
        taken_over = lock.acquire()
        if taken_over:
            _note(taken_over)
        record = _check_sweep_dir(space, options, overrides)
        tracker = _open_tracker(space, options)
        summary = _run_on_ray(space, options, record, tracker)
    write_summary(space, options.sweep_dir, summary)
    if tracker is not None:
        tracker.finish(summary)
    return summary


def _run_on_ray(space: SearchSpace, options: SweepOptions, record: dict[str, Any],
                tracker: SweepTracker) -> dict[str, Any]:
    """Start (or join) Ray, run the tuner, and summarise what Tune saved."""
    import ray

    started_ray = not ray.is_initialized()
    if started_ray:
        _init_ray(options.address)
    try:
        check_shared_storage(options.storage, explicit=options.storage_explicit)
        _record_sweep(space, options, record)
        _tuner(space, options, tracker).fit()
        return summarize(space, options.sweep_dir)
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
        if not tune.Tuner.can_restore(str(options.sweep_dir)):
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
    blob = json.dumps({"changes": space.changes, "params": {k: asdict(p) for k, p in space.params.items()},
                       "settings": _settings(space)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _settings(space: SearchSpace) -> dict[str, Any]:
    return {"metric": space.metric, "mode": space.mode, "search": asdict(space.search),
            "scheduler": asdict(space.scheduler), "num_samples": space.num_samples,
            "resources": asdict(space.resources), "max_concurrent": space.max_concurrent,
            "max_failures": space.max_failures, "replicates": space.replicates}


def _open_tracker(space: SearchSpace, options: SweepOptions) -> SweepTracker:
    """The sweep's MLflow parent run, reached before Ray starts."""
    return SweepTracker.open(tracking_uri=options.tracking_uri, storage=options.storage, sweep_name=options.name,
                             space_file=space.file, space=space, base_config=space.base_config,
                             resume=options.resume)


def _init_ray(address: str | None) -> None:
    """Connect to ``address`` (or RAY_ADDRESS), else start a local Ray; the fault hook reaches every worker."""
    import ray

    env = {FAULT_ENV: os.environ[FAULT_ENV]} if os.environ.get(FAULT_ENV) else {}
    runtime_env = {"env_vars": env} if env else None
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address, runtime_env=runtime_env, logging_level=logging.WARNING)
    else:
        ray.init(include_dashboard=False, runtime_env=runtime_env, logging_level=logging.WARNING)


def check_shared_storage(storage: Path, *, explicit: bool) -> None:
    """On a multi-node cluster, every node must see the sweep storage (run dirs, stage-1 cache).

    A marker file is written here and a zero-CPU task on every alive node looks for it.
    Raises:
        ConfigError: more than one node and ``--storage`` not given, or a node cannot see it.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [node for node in ray.nodes() if node.get("Alive")]
    if len(nodes) <= 1:
        return
    if not explicit:
        raise ConfigError(f"the Ray cluster has {len(nodes)} nodes: give --storage DIR on a filesystem that "
                          f"every node mounts at the same path")
    storage.mkdir(parents=True, exist_ok=True)
    marker = storage / f".storage-check-{uuid.uuid4().hex}"
    marker.write_text(marker.name)
    try:
        probe = ray.remote(num_cpus=0)(_sees_marker)
        refs = [probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False))
                .remote(str(marker)) for node in nodes]
        seen = ray.get(refs, timeout=120)
    finally:
        marker.unlink(missing_ok=True)
    blind = [node["NodeManagerAddress"] for node, ok in zip(nodes, seen) if not ok]
    if blind:
        raise ConfigError(f"--storage {storage}: not visible from node(s) {', '.join(blind)}; "
                          f"a multi-node sweep needs a filesystem every node shares")


def _sees_marker(path: str) -> bool:
    marker = Path(path)
    return marker.is_file() and marker.read_text() == marker.name


# ----------------------------------------------------------------------------- Tune objects


def _tuner(space: SearchSpace, options: SweepOptions, tracker: Any) -> Any:
    from ray import tune

    context = TrialContext(space=space, sweep_dir=options.sweep_dir, share_stage1=options.share_stage1,
                           share_stage0=options.share_stage0)
    trainable = tune.with_resources(tune.with_parameters(run_trial, context=context),
                                    {"cpu": space.resources.cpus, "gpu": space.resources.gpus})
    callbacks = tracker.tune_callbacks() if tracker is not None else []
    # The compact CLIReporter table instead of Tune's per-trial boxes of every metric; a
    # checkpoint at every evaluation is wanted, so no warning about frequent snapshots.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if options.resume:  # the callbacks come back from Tune's saved experiment (see mlflow_callback)
        return tune.Tuner.restore(str(options.sweep_dir), trainable, resume_unfinished=True, resume_errored=False)
    searcher = ALGORITHMS[space.search.algorithm].searcher
    return tune.Tuner(
        trainable,
        param_space=replicates.param_space({key: _domain(param) for key, param in space.params.items()},
                                           space.replicates, searcher),
        tune_config=tune.TuneConfig(
            metric=space.metric, mode=space.mode, search_alg=_search_alg(space), scheduler=_scheduler(space),
            num_samples=replicates.tune_num_samples(space.num_samples, space.replicates, searcher),
            trial_dirname_creator=_trial_dirname, reuse_actors=False,
            # Tune limits a Searcher (Optuna) this way; the grid/random generator limits itself.
            max_concurrent_trials=space.max_concurrent if searcher else None),
        run_config=tune.RunConfig(
            name=options.name, storage_path=str(options.storage), callbacks=callbacks, verbose=1,
            progress_reporter=_live_table(space),
            failure_config=tune.FailureConfig(max_failures=space.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1)),
    )


def _live_table(space: SearchSpace) -> Any:
    """Tune's table of trials: swept values, iteration, stage, the metric and the report split."""
    from ray import tune

    metrics = {"iteration": "iter", "stage": "stage", space.metric: space.metric, "report/miou": "report/miou"}
    columns = {key: key for key in space.params}
    if space.replicates > 1:
        columns[replicates.TRIAL_INDEX] = "replicate"
    return tune.CLIReporter(metric_columns=metrics, parameter_columns=columns, max_report_frequency=30,
                            sort_by_metric=True)


def _trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


def _domain(param: Param) -> Any:
    """A Tune domain; ``randint``'s high is inclusive in simtune, exclusive in Tune."""
    from ray import tune

    values = list(param.values)
    if param.kind == "grid":
        return tune.grid_search(values)
    if param.kind == "choice":
        return tune.choice(values)
    low, high = values
    if param.kind == "uniform":
        return tune.uniform(low, high)
    if param.kind == "loguniform":
        return tune.loguniform(low, high)
    return tune.randint(low, high + 1)


def _search_alg(space: SearchSpace) -> Any:
    points = [dict(p) for p in space.search.points_to_evaluate] or None
    return ALGORITHMS[space.search.algorithm].build(space.search.seed, points, space.max_concurrent,
                                                    space.replicates)


def _scheduler(space: SearchSpace) -> Any:
    s = space.scheduler
    return SCHEDULERS[s.type].build(s.max_t, s.grace_period, s.reduction_factor, space.replicates)


# ----------------------------------------------------------------------------- summary

RESULT_NOISE = ("time_this_iter_s", "time_total_s", "timestamp", "training_iteration", "date", "pid",
                "hostname", "node_ip", "time_since_restore", "iterations_since_restore", "checkpoint_dir_name",
                "done", "trial_id", "config", "experiment_tag", "should_checkpoint")


def summarize(space: SearchSpace, sweep_dir: Path) -> dict[str, Any]:
    """Every trial and every configuration (ranked by the one rule); ``best``, the verdict, the counts.

    Read from the experiment state Tune saved, so an interrupted sweep shows its RUNNING and
    PENDING trials as such. ``best`` is the best configuration's first counted replicate.
    """
    from ray import tune

    analysis = tune.ExperimentAnalysis(str(sweep_dir), default_metric=space.metric, default_mode=space.mode)
    trials = sorted((_trial_summary(space, sweep_dir, trial) for trial in analysis.trials),
                    key=lambda t: t["trial_id"])
    configs = group_configs(trials, lambda t: t["params"], lambda t: Replicate(
        t["trial_id"], t["seed"], Standing(t["metrics"].get(space.metric), t["status"] == "TERMINATED"
                                           and not t["stopped_early"], t["stopped_early"]), t["metrics"]))
    ranked = rank_configs(configs, space.metric, space.mode)
    by_id = {t["trial_id"]: t for t in trials}
    counts = dict(Counter(t["status"] for t in trials))
    counts.update(total=len(trials), finished=counts.get("TERMINATED", 0), failed=counts.get("ERROR", 0),
                  stopped_early=sum(t["stopped_early"] for t in trials),
                  retried=sum(t["failures"] > 0 and t["status"] != "ERROR" for t in trials),
                  configs=len(configs))
    unranked = [c for c in configs if all(c is not r for r in ranked)]  # no counted replicate
    return {"sweep": sweep_dir.name, "sweep_dir": str(sweep_dir), "space_file": str(space.file),
            "metric": space.metric, "mode": space.mode, "max_iteration": space.scheduler.max_t,
            "replicates": space.replicates, "counts": counts,
            "best": by_id[ranked[0].replicates[0].trial_id] if ranked else None,
            "ranking": [r.trial_id for c in ranked for r in c.replicates],
            "configs": [*(_config_summary(c, space.metric, i) for i, c in enumerate(ranked, 1)),
                        *(_config_summary(c, space.metric, None) for c in unranked)],
            **_noise_summary(ranked, space.metric), "trials": trials}


def _config_summary(c: ConfigResult, metric: str, place: int | None) -> dict[str, Any]:
    """One entry of ``summary.json`` ``configs``: mean and std over the counted replicates."""
    sel = c.spread(metric)
    others = {m: None if (s := c.spread(m)) is None else {"n": s.n, "mean": s.mean, "std": s.std}
              for m in dict.fromkeys((SELECTION_METRIC, "report/miou")) if m != metric}
    return {"rank": place, "params": c.params, "n": c.n,
            "seeds": [r.seed for r in c.replicates], "mean": None if sel is None else sel.mean,
            "std": None if sel is None else sel.std, "trained_to_end": c.completed, **others,
            "trial_ids": list(c.trial_ids)}


def _noise_summary(ranked: list[ConfigResult], metric: str) -> dict[str, Any]:
    """The best-vs-runner-up verdict and the split-half reproducibility, for ``summary.json``."""
    result = ranking_verdict(ranked, metric)
    diff = result.difference
    halves = reproducibility(ranked, metric)
    return {"verdict": {"line": result.line, "n": diff.n if diff else None, "difference": diff.mean if diff else None,
                        "half_width": diff.half_width if diff else None,
                        "beyond_noise": diff.beyond_noise if diff else None},
            "reproducibility": {"spearman": halves.rho, "configs": halves.n_configs, "half_size": halves.half_size,
                                "line": split_half_line(halves)}}


def _trial_summary(space: SearchSpace, sweep_dir: Path, trial: Any) -> dict[str, Any]:
    metrics = {k: v for k, v in (trial.last_result or {}).items() if k not in RESULT_NOISE}
    reason = metrics.pop("failure_reason", None)
    metrics.pop("failed", None)
    if trial.status == "ERROR" and reason is None:
        reason = _error_line(trial.get_pickled_error() or trial.get_error())
    iteration = int(metrics.get("iteration", 0))
    run = SweepDir(sweep_dir).run(trial.trial_id)
    diverged = run.failure_reason()
    status = "ERROR" if diverged is not None else trial.status
    return {"trial_id": trial.trial_id, "status": status,
            "params": {key: trial.config.get(key) for key in space.params},
            "replicate": replicates.replicate_index(trial.config),
            "seed": space.config_for(trial.config).seed, "metrics": metrics,
            "iteration": iteration, "stopped_early": status == "TERMINATED" and iteration < space.scheduler.max_t,
            "failure_reason": reason or diverged, "failures": trial.num_failures,
            "starts": run.attempts.read_text().count("\n") if run.attempts.is_file() else 0,
            "run_dir": str(run.root)}


def _error_line(error: BaseException | None) -> str:
    """``Type: message`` of the exception a trial raised (Ray wraps it)."""
    if error is None:
        return "unknown error (no error file)"
    cause = getattr(error, "cause", None) or error
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[-1] if text else ''}"


def write_summary(space: SearchSpace, sweep_dir: Path, summary: dict[str, Any]) -> None:
    """``summary.json`` always; ``best_config.yaml`` when some trial evaluated the metric."""
    folder = SweepDir(sweep_dir)
    write_json(folder.summary, summary)
    if summary["best"] is not None:
        write_config(space.config_for(summary["best"]["params"]), folder.best_config)
