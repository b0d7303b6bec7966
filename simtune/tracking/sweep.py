"""The MLflow parent run of a sweep (``SweepTracker``): opened before Ray starts, given the
Tune callback that logs each trial as a child run, closed with the sweep's outcome.

Ray-free: the Tune callback (``simtune.sweep.mlflow_callback``) is imported only by
``simtune.sweep.mlflow_callback.trial_loggers``. The best trial is chosen by ``simtune.results.ranking.rank``.

The parent run is what a user opens first, so it explains the sweep. Its params are the
search space -- each swept key's domain (``stage1.lambda_ci = grid [0.1, 0.01, 0.001]``)
and the fixed changes to the defaults (``stage1.iters = 300``) -- never base values of
swept keys; the full base config is the artifact ``sweep/base_config.yaml``. Its
description (``mlflow.note.content``) says what was swept and, once finished, links the
best trial. Its inputs are the base config's datasets. While the sweep runs, MLflow samples
the driver machine's CPU, memory, disk and network as ``system/*`` metrics of the parent
run (``start_system_metrics``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simtune import config
from simtune.schema import Config
from simtune.errors import TrackingError
from simtune.keys import flat_dict
from simtune.provenance import describe
from simtune.rundir import RunDir, read_json, write_json
from simtune.results.ranking import Standing, rank
from simtune.results.summary import ConfigSummary, Summary
from simtune.results.sweepdir import SweepDir, resolve_sweep_dir
from simtune.tracking import naming
from simtune.tracking.artifacts import log_checkpoint
from simtune.tracking.experiments import ensure_experiment, set_sweep_view
from simtune.tracking.naming.tags import (
    TAG_BASE_EXPERIMENT, TAG_BEST_RUN, TAG_BEST_SELECTION, TAG_BEST_TRIAL, TAG_CONFIG, TAG_CONFIG_RANK,
    TAG_FAILED_TRIALS, TAG_METRIC, TAG_MODE, TAG_NOTE, TAG_PARENT, TAG_ROLE, TAG_RUN_DIR, TAG_SEARCHED,
    TAG_SPACE_FILE, TAG_STOPPED, TAG_SWEEP, TAG_SWEEP_DIR, TAG_TRIAL, TAG_TRIAL_IDS, TAG_VERDICT)
from simtune.tracking.store import (CHECKPOINT_POLICIES, EXPERIMENT, connect, create_run, default_tracking_uri, find_sweep_parent, log_json_artifact,
                                    log_metrics, normalise_uri, one_line, provenance_tags, search)
from simtune.tracking.system_metrics import start_system_metrics

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run


@dataclass
class SweepTracker:
    """One MLflow parent run per sweep, a child run per trial, written from the Ray driver.

    Build it with ``SweepTracker.open`` before Ray starts; pass ``trial_loggers(tracker)`` to the
    Tuner's ``RunConfig``; call ``finish(summary)`` when Tune returns.
    """

    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    sweep_name: str
    sweep_dir: Path
    base_params: dict[str, Any]
    checkpoint_policy: str
    client: Any  # MlflowClient; Any keeps mlflow out of the import-time path
    metric: str = naming.SELECTION  # the space's selection metric and its direction
    mode: str = "max"
    swept: tuple[str, ...] = ()  # the swept keys, in the space file's order (they name the trials)
    description: str = ""  # the parent's description while it runs; ``finish`` adds the outcome
    monitor: Any = None  # MLflow's system-metrics sampler of this run, if it runs

    @classmethod
    def open(cls, *, tracking_uri: str | None, storage: Path, sweep_name: str, space_file: Path, space: Any,
             base_config: Config, resume: bool, checkpoint_policy: str = "best",
             experiment_name: str | None = None) -> SweepTracker:
        """Reach the store and create (or, on ``resume``, find again) the sweep's parent run.

        Args:
            tracking_uri: None = ``default_tracking_uri`` of the folder of sweeps.
            storage: the folder of sweeps, or the sweep's own folder (``resolve_sweep_dir``);
                trial run dirs are ``<sweep folder>/runs/<trial_id>/``.
            space_file: the search-space YAML, logged as an artifact.
            space: the loaded search space (its ``params``, ``changes``, settings are recorded).
            base_config: the resolved base experiment (an artifact; its datasets are inputs).
            resume: find the existing parent run instead of creating one.
            checkpoint_policy: which trials' final ``model.pt`` is logged: "best" (the best
                trial's, at ``finish``), "all" (every finished trial's) or "none".
            experiment_name: None = the search space's (``naming.experiment_name``).
        Raises:
            TrackingError: unreachable or unwritable store, before any trial runs.
        """
        if checkpoint_policy not in CHECKPOINT_POLICIES:
            raise TrackingError(f"checkpoint_policy must be one of {list(CHECKPOINT_POLICIES)}, "
                                f"but got checkpoint_policy={checkpoint_policy!r}")
        sweep_dir = resolve_sweep_dir(storage, sweep_name)
        uri = normalise_uri(tracking_uri) if tracking_uri else default_tracking_uri(sweep_dir.parent)
        client = connect(uri)
        experiment = experiment_name or naming.experiment_name(space_file) or EXPERIMENT
        experiment_id = ensure_experiment(client, experiment, uri, f"Sweeps of the search space `{space_file}`.")
        text = sweep_description(sweep_name, sweep_dir, space_file, space)
        swept = tuple(getattr(space, "params", {}) or {})
        metric = str(getattr(space, "metric", naming.SELECTION))
        try:
            replicated = getattr(space, "racing", None) is not None or int(getattr(space, "replicates", 1)) > 1
            set_sweep_view(client, experiment_id, sweep_name, swept, metric, replicated=replicated)
            parent = find_sweep_parent(client, experiment_id, sweep_name, sweep_dir) if resume else None
            if parent is None:
                run_id = _create_parent(client, experiment_id, sweep_name, sweep_dir, space_file, space, base_config,
                                        text)
            else:
                run_id = parent.info.run_id
                client.update_run(run_id, status="RUNNING")
        except TrackingError:
            raise
        except Exception as exc:  # SQL / HTTP failures surface as several MLflow types
            raise TrackingError(f"tracking store {uri}: cannot write the sweep's parent run ({one_line(exc)})") from None
        # The trial logger reads this at every (resumed) start of Tune; see mlflow_callback.
        write_json(SweepDir(sweep_dir).tracking, {"tracking_uri": uri, "experiment_id": experiment_id,
                                                  "experiment": experiment, "parent_run_id": run_id,
                                                  "checkpoint_policy": checkpoint_policy, "sweep": sweep_name})
        return cls(uri, experiment_id, run_id, sweep_name, sweep_dir, config.flatten(base_config),
                   checkpoint_policy, client, metric, str(getattr(space, "mode", "max")), swept, text,
                   start_system_metrics(uri, run_id))

    def finish(self, summary: Summary) -> None:
        """Log the sweep's outcome to the parent run and end it.

        The best trial is the finished child with the best selection metric (``val/miou``)
        at its *last* evaluation (MLflow's latest value), not its best-ever one, trials
        trained to the end ranking before those a scheduler stopped early; failed
        trials are counted and listed. ``summary`` (the runner's) is attached as JSON.
        """
        if self.monitor is not None:
            self.monitor.finish()
        children = search(self.client, self.experiment_id, {TAG_PARENT: self.parent_run_id, TAG_ROLE: "trial"})
        outcome = sweep_outcome(children, self.metric, self.mode, summary.best.trial_id if summary.best else None)
        ranked = summary.ranked
        if summary.replicates > 1:  # with one replicate each trial run is its configuration's run
            self._log_configurations(ranked)
        set_sweep_view(self.client, self.experiment_id, self.sweep_name, self.swept, self.metric,
                       configs=[c.params for c in summary.configs], replicated=summary.replicates > 1)
        if ranked:  # the best configuration's means, next to the best trial's single-seed numbers
            log_metrics(self.client, self.parent_run_id,
                        [(k, v, 0) for k, v in config_metrics(ranked[0], self.metric, naming.BEST_CONFIG).items()])
        self.client.set_tag(self.parent_run_id, TAG_VERDICT, summary.verdict.line)
        log_metrics(self.client, self.parent_run_id, [(k, v, 0) for k, v in outcome.metrics().items()])
        for key, value in outcome.tags().items():
            self.client.set_tag(self.parent_run_id, key, value)
        self.client.set_tag(self.parent_run_id, TAG_NOTE, self.description + outcome.note(self.experiment_id))
        log_json_artifact(self.client, self.parent_run_id, summary.to_json(), SweepDir(self.sweep_dir).summary.name, "sweep")
        best_config = SweepDir(self.sweep_dir).best_config
        if best_config.is_file():
            self.client.log_artifact(self.parent_run_id, str(best_config), "sweep")
        if self.checkpoint_policy == "best" and outcome.best is not None:
            log_checkpoint(self.client, outcome.best.info.run_id, Path(outcome.best.data.tags.get(TAG_RUN_DIR, "")))
        self.client.set_terminated(self.parent_run_id, "FINISHED" if outcome.finished else "FAILED")

    def _log_configurations(self, configs: list[ConfigSummary]) -> None:
        """One run per ranked configuration (``summary.json`` ``configs``), a child of the parent run.

        Its params are the swept values; its metrics are the means over the replicates under
        their own names (``config/val/miou_mean``, ``config/report/miou_mean``, their ``_std``
        and ``config/n_seeds``), never a trial's ``val/miou``, so a column or chart of the
        runs table does not mix means with single seeds. Found again by its
        ``simtune.config`` tag when a resumed sweep finishes.
        """
        found = search(self.client, self.experiment_id, {TAG_PARENT: self.parent_run_id, TAG_ROLE: "configuration"})
        runs = {r.data.tags.get(TAG_CONFIG): r.info.run_id for r in found}
        for c in configs:
            label = naming.config_label(c.params) or "the base config"
            run_id = runs.get(label) or self._create_configuration(c, label)
            for key, value in ((TAG_CONFIG_RANK, str(c.rank)), (TAG_TRIAL_IDS, ", ".join(c.trial_ids)),
                               (TAG_NOTE, self._configuration_note(c))):
                self.client.set_tag(run_id, key, value)
            log_metrics(self.client, run_id, [(k, v, 0) for k, v in config_metrics(c, self.metric).items()])
            self.client.set_terminated(run_id, "FINISHED")

    def _create_configuration(self, c: ConfigSummary, label: str) -> str:
        tags = {TAG_PARENT: self.parent_run_id, TAG_ROLE: "configuration", TAG_SWEEP: self.sweep_name,
                TAG_CONFIG: label, **naming.source_tags()}
        first = RunDir(SweepDir(self.sweep_dir).runs / c.trial_ids[0]) if c.trial_ids else None
        return create_run(self.client, self.experiment_id, name=f"{label} · mean of {c.n}", tags=tags,
                          params=c.params, cfg=first.config() if first is not None and first.has_config() else None)

    def _configuration_note(self, c: ConfigSummary) -> str:
        """What the configuration run holds: whose mean, over which seeds, its place, its trials."""
        trials = search(self.client, self.experiment_id, {TAG_PARENT: self.parent_run_id, TAG_ROLE: "trial"})
        links = [naming.run_link(self.experiment_id, r.info.run_id, r.info.run_name or r.info.run_id)
                 for r in trials if r.data.tags.get(TAG_TRIAL) in c.trial_ids]
        lines = [f"mean over {c.n} seeds ({', '.join(map(str, c.seeds))}) of its trials' last evaluations: "
                 f"`{naming.mean_key(naming.CONFIG, self.metric)}`, `{naming.seeds_key(naming.CONFIG)}` = n",
                 *naming.config_diff(c.params, self.base_params),
                 f"rank {c.rank} of the sweep" if c.rank is not None else "not ranked", c.outcome]
        return naming.description(f"Configuration {naming.config_label(c.params) or 'the base config'} "
                                  f"of sweep {self.sweep_name}", lines,
                                  [naming.run_link(self.experiment_id, self.parent_run_id,
                                                   f"sweep {self.sweep_name}"), *links])


def config_metrics(c: ConfigSummary, metric: str, scope: str = naming.CONFIG) -> dict[str, float]:
    """Mean and std of the selection metric and ``report/miou`` over a configuration's seeds, and n.

    Names: ``<scope>/<metric>_mean``, ``<scope>/<metric>_std``, ``<scope>/n_seeds``, the seed-adjusted
    ``<scope>/<metric>_adjusted`` and ``…_adjusted_se`` (``naming``); ``scope`` is ``config`` on its own run, ``best_config`` on the sweep's.
    """
    values: dict[str, float | None] = {naming.mean_key(scope, metric): c.mean, naming.std_key(scope, metric): c.std,
                                       naming.seeds_key(scope): c.n, naming.adjusted_key(scope, metric): c.estimate,
                                       naming.adjusted_key(scope, metric) + "_se": c.estimate_se}
    if metric != naming.REPORT and (report := c.spreads.get(naming.REPORT)) is not None:
        values[naming.mean_key(scope, naming.REPORT)] = report.mean
        values[naming.std_key(scope, naming.REPORT)] = report.std
    return {k: float(v) for k, v in values.items() if v is not None}


def space_params(space: Any) -> dict[str, Any]:
    """The search space as params: swept keys' domains, the fixed changes, the sweep settings."""
    if space is None:
        return {}
    swept = {key: f"{param.kind} {json.dumps(list(param.values))}" for key, param in space.params.items()}
    fixed = {key: value for key, value in flat_dict(space.changes).items() if key not in swept}
    settings = {"sweep.search": space.search.algorithm, "sweep.scheduler": space.scheduler.type,
                "sweep.num_samples": space.num_samples, "sweep.metric": f"{space.metric} ({space.mode})"}
    racing = getattr(space, "racing", None)
    if racing is not None:  # racing replaces a fixed number of replicates
        settings.update({f"sweep.racing.{key}": value for key, value in asdict(racing).items()
                         if key != "batch" or space.search.algorithm == "optuna"})
    else:
        settings["sweep.replicates"] = getattr(space, "replicates", 1)
    return {**swept, **fixed, **settings}


def sweep_description(sweep_name: str, sweep_dir: Path, space_file: Path, space: Any) -> str:
    """The parent run's description: what the sweep varied, how it searched, where it lives."""
    lines = [f"search space `{space_file}`" + (f", base `{space.base}`" if space is not None else "")]
    if space is not None:
        lines += [f"{naming.short_name(key)} (`{key}`): {param.kind} {list(param.values)}"
                  for key, param in space.params.items()]
        lines.append(f"search {space.search.algorithm}, scheduler {space.scheduler.type}, "
                     f"selection by {space.metric} ({space.mode}) at each trial's last evaluation")
    lines += ["full base config: artifact `sweep/base_config.yaml`", f"folder `{sweep_dir}`"]
    return naming.description(f"Sweep {sweep_name}", lines)


def _create_parent(client: MlflowClient, experiment_id: str, sweep_name: str, sweep_dir: Path, space_file: Path,
                   space: Any, base_config: Config, text: str) -> str:
    params = getattr(space, "params", {}) or {}
    tags = {TAG_ROLE: "sweep", TAG_SWEEP: sweep_name, TAG_SWEEP_DIR: str(sweep_dir),
            TAG_SPACE_FILE: str(Path(space_file).resolve()),
            TAG_BASE_EXPERIMENT: str(getattr(space, "base", "")),
            TAG_SEARCHED: ", ".join(params),
            TAG_METRIC: str(getattr(space, "metric", naming.SELECTION)),
            TAG_MODE: str(getattr(space, "mode", "max")),
            TAG_NOTE: text, **naming.source_tags(), **provenance_tags(base_config.seed)}
    run_id = create_run(client, experiment_id, name=sweep_name, tags=tags, params=space_params(space), cfg=base_config)
    client.log_artifact(run_id, str(space_file), "sweep")
    log_json_artifact(client, run_id, config.to_dict(base_config), SweepDir(sweep_dir).base_config.name, "sweep")
    log_json_artifact(client, run_id, describe(base_config.seed), "provenance.json", "sweep")
    return run_id


@dataclass(frozen=True)
class SweepOutcome:
    """Counts and the best child run (last evaluation of the selection metric) of a sweep."""

    total: int
    finished: int
    failed: int
    best: Run | None
    failed_trials: tuple[str, ...]
    metric: str = naming.SELECTION

    def metrics(self) -> dict[str, float]:
        out = {"trials/total": float(self.total), "trials/finished": float(self.finished),
               "trials/failed": float(self.failed)}
        if self.best is not None:
            for key in dict.fromkeys((self.metric, naming.SELECTION, naming.REPORT)):
                if key in self.best.data.metrics:
                    out[naming.single_key(naming.BEST_TRIAL, key)] = self.best.data.metrics[key]
        return out

    def note(self, experiment_id: str) -> str:
        """The outcome as description lines: counts and a link to the best trial."""
        lines = [f"\nOutcome: {self.total} trials, {self.finished} finished, {self.failed} failed"]
        if self.best is not None:
            prefix = naming.single_key(naming.BEST_TRIAL, "")
            scores = ", ".join(f"{k.removeprefix(prefix)} {v:.2f}" for k, v in self.metrics().items()
                               if k.startswith(prefix))
            link = naming.run_link(experiment_id, self.best.info.run_id, self.best.info.run_name)
            lines.append(f"- best trial: {link} ({scores}, last evaluation, one seed)")
        return "\n".join(lines) + "\n"

    def tags(self) -> dict[str, str]:
        out = {TAG_FAILED_TRIALS: ", ".join(self.failed_trials) or "none",
               TAG_BEST_SELECTION: f"{self.metric} at each trial's last evaluation"}
        if self.best is not None:
            out[TAG_BEST_TRIAL] = self.best.data.tags.get(TAG_TRIAL, "")
            out[TAG_BEST_RUN] = self.best.info.run_id
        return out


def sweep_outcome(children: list[Run], metric: str = naming.SELECTION, mode: str = "max",
                  best_trial: str | None = None) -> SweepOutcome:
    """Summarise a sweep's child runs (see ``SweepOutcome``).

    ``best_trial``: the trial id the sweep's configuration ranking chose (``summary.json``
    ``best``); without it the child runs are ranked by the rule, trial by trial.
    """
    children = sorted(children, key=lambda r: r.data.tags.get(TAG_TRIAL, ""))
    finished = [r for r in children if r.info.status == "FINISHED" and metric in r.data.metrics]
    failed = [r for r in children if r.info.status == "FAILED"]

    def standing(run: Run) -> Standing:
        stopped = run.data.tags.get(TAG_STOPPED) == "true"
        return Standing(run.data.metrics.get(metric), completed=not stopped, stopped_early=stopped)

    ranked = rank(finished, standing, mode)
    chosen = [r for r in children if best_trial is not None and r.data.tags.get(TAG_TRIAL) == best_trial]
    best = chosen[0] if chosen else ranked[0] if ranked else None
    return SweepOutcome(len(children), len(finished), len(failed), best,
                        tuple(sorted(r.data.tags.get(TAG_TRIAL, r.info.run_id) for r in failed)), metric)


def experiment_of(sweep_dir: Path) -> str:
    """The MLflow experiment a sweep logged to: the one its tracker recorded, else its space's name."""
    folder = SweepDir(sweep_dir)
    recorded = read_json(folder.tracking) or {}
    if recorded.get("experiment"):
        return str(recorded["experiment"])
    started = read_json(folder.record) or {}
    return naming.experiment_name(started["space_file"]) if started.get("space_file") else EXPERIMENT
