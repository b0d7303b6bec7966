"""Every Tune object of a sweep: the tuner, parameter domains, searchers, schedulers, replicates.

``simtune.search`` says what a sweep searches, by name and rule; this module is where those
names become Ray Tune objects (the only place besides the runner and the trainable that
imports Ray). Replicates (``simtune.search.replicates``) reach Tune three ways: a replicate
grid dimension (grid, random), a ``Repeater`` around a searcher (Optuna), and ``ConfigASHA``,
the ASHA scheduler that keeps or stops a configuration's K replicates together, on their mean
over the same seeds at each rung (``simtune.search.halving``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.schedulers import FIFOScheduler

from simtune.keys import REPORT_METRIC
from simtune.search.replicates import config_key
from simtune.results.sweepdir import SweepDir
from simtune.rundir import read_json, write_json
from simtune.schema import DIRECTIONS
from simtune.search.algorithms import ALGORITHMS, SCHEDULERS
from simtune.search.halving import Action, ConfigHalving, record
from simtune.search.replicates import TRIAL_INDEX, config_values, replicate_index
from simtune.search.space import Param, SearchSpace
from simtune.sweep.options import SweepOptions, trial_callbacks
from simtune.sweep.trainable import TrialContext, run_trial


def build_tuner(space: SearchSpace, options: SweepOptions, callbacks: list[Any]) -> Any:
    """The ``tune.Tuner`` of a sweep (restored from the sweep folder with ``options.resume``)."""
    trainable = _trainable(space, options)
    if options.resume and tune_started(options.sweep_dir):  # callbacks come back too (see mlflow_callback)
        return tune.Tuner.restore(str(options.sweep_dir), trainable, resume_unfinished=True, resume_errored=False)
    searcher = ALGORITHMS[space.search.algorithm].searcher
    return tune.Tuner(
        trainable,
        param_space=param_space({key: _domain(param) for key, param in space.params.items()},
                                space.replicates, searcher),
        tune_config=tune.TuneConfig(
            metric=space.metric, mode=space.mode, search_alg=_search_alg(space), scheduler=_scheduler(space),
            num_samples=tune_num_samples(space.num_samples, space.replicates, searcher),
            trial_dirname_creator=_trial_dirname, reuse_actors=_reuse_actors(space),
            # Tune limits a Searcher (Optuna) this way; the grid/random generator limits itself.
            max_concurrent_trials=reservation(space)[1] if searcher else None),
        run_config=_run_config(space, options.name, options.storage, callbacks),
    )


def build_round_tuner(space: SearchSpace, options: SweepOptions, callbacks: list[Any], round_dir: Path,
                      configurations: list[dict[str, Any]], replicate: int) -> Any:
    """The ``tune.Tuner`` of one racing round: each of ``configurations`` once, with seed index ``replicate``.

    Restored (unfinished trials continue, finished ones are kept) when Tune had started that round
    in ``round_dir``, as after a killed driver; built afresh when it had not.
    """
    from ray.tune.search import BasicVariantGenerator

    trainable = _trainable(space, options)
    if tune_started(round_dir):
        return tune.Tuner.restore(str(round_dir), trainable, resume_unfinished=True, resume_errored=False)
    points = [{**values, TRIAL_INDEX: replicate} for values in configurations]
    domains = {key: tune.choice(sorted({c[key] for c in configurations}, key=str)) for key in space.params}
    return tune.Tuner(
        trainable, param_space={**domains, TRIAL_INDEX: replicate},
        tune_config=tune.TuneConfig(
            metric=space.metric, mode=space.mode, num_samples=len(points), trial_dirname_creator=_trial_dirname,
            search_alg=BasicVariantGenerator(points_to_evaluate=points, max_concurrent=reservation(space)[1]),
            reuse_actors=True),  # rounds run FIFO: no trial is stopped mid-run
        run_config=_run_config(space, round_dir.name, round_dir.parent, callbacks),
    )


def tune_started(experiment_dir: Path) -> bool:
    """Whether Tune saved the state of an experiment run in ``experiment_dir`` (what a restore needs).

    ``Tuner.can_restore`` only looks for the tuner file, which a ``Tuner`` writes before its run
    starts; a driver killed between the two leaves a folder that cannot be restored (Tune's
    restored searcher fails on it), and the experiment is simply started again.
    """
    return any(experiment_dir.glob("experiment_state-*.json"))


def _reuse_actors(space: SearchSpace) -> bool:
    """Whether a finished trial's worker process runs the next trial (no process start, no re-import).

    Not with a scheduler that stops trials: a stopped function trial's thread trains on until
    its next report, and would write into its run directory while its worker waited for reuse.
    """
    return not SCHEDULERS[space.scheduler.type].stops_early


def _trainable(space: SearchSpace, options: SweepOptions) -> Any:
    context = TrialContext(space=space, sweep_dir=options.sweep_dir, share_stage1=options.share_stage1,
                           share_stage0=options.share_stage0)
    # The compact CLIReporter table instead of Tune's per-trial boxes of every metric; a
    # checkpoint at every evaluation is wanted, so no warning about frequent snapshots.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    trainable = tune.with_parameters(run_trial, context=context, callbacks=trial_callbacks())
    return tune.with_resources(trainable, reservation(space)[0])


def reservation(space: SearchSpace) -> tuple[dict[str, float], int]:
    """A trial's Ray resources and the concurrency limit, of a space fitted to the cluster.

    Raises:
        ValueError: ``auto`` left unresolved (``cluster.fit_to_cluster`` was not called): a bug.
    """
    cpus, gpus, limit = space.resources.cpus, space.resources.gpus, space.max_concurrent
    if isinstance(cpus, str) or isinstance(gpus, str) or isinstance(limit, str):
        raise ValueError("the search space's resources were not fitted to the Ray cluster")
    return {"cpu": cpus, "gpu": gpus}, limit


def _run_config(space: SearchSpace, name: str, storage: Path, callbacks: list[Any]) -> Any:
    return tune.RunConfig(
        name=name, storage_path=str(storage), callbacks=callbacks, verbose=1, progress_reporter=_live_table(space),
        failure_config=tune.FailureConfig(max_failures=space.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1))


def _live_table(space: SearchSpace) -> Any:
    """Tune's table of trials: swept values, iteration, stage, the metric and the report split."""
    metrics = {"iteration": "iter", "stage": "stage", space.metric: space.metric, REPORT_METRIC: REPORT_METRIC}
    columns = {key: key for key in space.params}
    if space.replicates > 1 or space.racing is not None:
        columns[TRIAL_INDEX] = "replicate"
    return tune.CLIReporter(metric_columns=metrics, parameter_columns=columns, max_report_frequency=30,
                            sort_by_metric=True)


def _trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


def _domain(param: Param) -> Any:
    """A Tune domain; ``randint``'s high is inclusive in simtune, exclusive in Tune."""
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
    return SEARCHERS[space.search.algorithm](space.search.seed, points, reservation(space)[1],
                                                    space.replicates)


def _scheduler(space: SearchSpace) -> Any:
    s = space.scheduler
    return SCHEDULER_BUILDERS[s.type](s.max_t, s.grace_period, s.reduction_factor, space.replicates)


# ----------------------------------------------------------------------------- searchers and schedulers by name

def _variant_generator(seed: int | None, points: list[dict[str, Any]] | None, max_concurrent: int | None,
                       replicates: int) -> Any:
    from ray.tune.search import BasicVariantGenerator

    # With replicates, random values are drawn once per sample and held over the replicate grid.
    return BasicVariantGenerator(points_to_evaluate=points, random_state=seed, max_concurrent=max_concurrent or 0,
                                 constant_grid_search=replicates > 1)


def _optuna_tpe(seed: int | None, points: list[dict[str, Any]] | None, max_concurrent: int | None,
                replicates: int) -> Any:
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    return repeated(OptunaSearch(points_to_evaluate=points, sampler=optuna.samplers.TPESampler(seed=seed)),
                    replicates)


def _fifo(max_t: int, grace_period: int, reduction_factor: float, replicates: int) -> Any:
    return FIFOScheduler()


def _asha(max_t: int, grace_period: int, reduction_factor: float, replicates: int) -> Any:
    return ConfigASHA(replicates=replicates, max_t=max_t, grace_period=grace_period,
                      reduction_factor=reduction_factor)


SEARCHERS: dict[str, Callable[[int | None, list[dict[str, Any]] | None, int | None, int], Any]] = {
    "grid": _variant_generator, "random": _variant_generator, "optuna": _optuna_tpe,
}  # (seed, points, max_concurrent, replicates) -> a Tune searcher; one entry per ALGORITHMS name

SCHEDULER_BUILDERS: dict[str, Callable[[int, int, float, int], Any]] = {
    "fifo": _fifo, "asha": _asha,
}  # (max_t, grace_period, reduction_factor, replicates) -> a Tune scheduler; one per SCHEDULERS name


# ----------------------------------------------------------------------------- replicates in Tune


def param_space(domains: dict[str, Any], replicates: int, searcher: bool) -> dict[str, Any]:
    """Tune's ``param_space``: the swept domains, plus the replicate grid unless a searcher is repeated."""
    if replicates == 1 or searcher:
        return dict(domains)
    return {**domains, TRIAL_INDEX: tune.grid_search(list(range(replicates)))}


def tune_num_samples(num_samples: int, replicates: int, searcher: bool) -> int:
    """Tune's ``num_samples``: a Repeater counts every replicate as a sample; grids multiply by themselves."""
    return num_samples * replicates if searcher else num_samples


def repeated(searcher: Any, replicates: int) -> Any:
    """A Tune searcher wrapped in a ``Repeater`` when K > 1: each proposal runs K times."""
    if replicates == 1:
        return searcher
    from ray.tune.search import Repeater

    return Repeater(searcher, repeat=replicates, set_index=True)


# ----------------------------------------------------------------------------- ASHA over configurations


class ConfigASHA(FIFOScheduler):  # type: ignore[misc]
    """ASHA whose unit is the configuration: the rule of ``simtune.search.halving`` on Tune trials.

    A trial is one replicate of one configuration (its swept values and ``TRIAL_INDEX``); each
    result goes to the rule, whose answer is the trial's STOP or CONTINUE. A trial that errors
    for good fails its configuration; one that Tune retries from its checkpoint is added again
    at once (``on_trial_error`` then ``on_trial_add``), so a failure counts only when the next
    call is not that re-add. Used for K = 1 as well (there it decides as Ray's ``ASHAScheduler``),
    so every ASHA sweep has one rule and one record.

    The record: Tune pickles a scheduler once, when the tuner is made, and saves none of its
    state with the experiment, so ``Tuner.restore`` (``--resume``) brings back an empty one.
    After every result the rule's state is therefore written to ``asha.json`` in the driver's
    staging copy of the experiment folder, which Tune uploads to the sweep folder with every
    experiment checkpoint and downloads before a restore; a restored scheduler reloads it when
    the first trial added to it is one the record knows (a new experiment's trials are not).
    The summary reads the rungs the configurations were stopped at from the same file.
    """

    def __init__(self, *, replicates: int, max_t: int, grace_period: int, reduction_factor: float,
                 time_attr: str = "iteration") -> None:
        super().__init__()
        self._rule_args: dict[str, Any] = {"replicates": replicates, "max_t": max_t, "grace_period": grace_period,
                                           "reduction_factor": reduction_factor}
        self._time_attr = time_attr
        self._mode: str | None = None
        self._rule: ConfigHalving | None = None
        self._record: Path | None = None
        self._trials: dict[str, tuple[str, int]] = {}  # trial id -> (configuration, replicate index)
        self._errored: set[str] = set()  # errored trials not yet known to be final

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        if (self._metric and metric) or (self._mode and mode):
            return False
        self._metric, self._mode = metric or self._metric, mode or self._mode
        return True

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        if not self._metric or self._mode not in DIRECTIONS:
            raise ValueError(f"ConfigASHA needs a metric and a mode ('max' or 'min'), but got metric="
                             f"{self._metric!r}, mode={self._mode!r}; pass them to tune.TuneConfig")
        self._errored.discard(trial.trial_id)  # added again: Tune retries it
        if trial.status == "ERROR":  # restored as failed: its configuration failed
            self._errored.add(trial.trial_id)
        self._trials[trial.trial_id] = (config_key(config_values(trial.config)), replicate_index(trial.config))
        if self._rule is None:
            self._rule = self._restored(trial) or ConfigHalving(mode=self._mode, **self._rule_args)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        self._fail_errored()
        return str(self.STOP if self._report(trial, result) == "stop" else self.CONTINUE)

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> None:
        self._fail_errored()
        self._report(trial, result)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        self._errored.add(trial.trial_id)

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        self._fail_errored()
        return super().choose_trial_to_run(tune_controller)

    def debug_string(self) -> str:
        stops = self._rule.stops.values() if self._rule else []
        return (f"Using ASHA over configurations of {self._rule_args['replicates']} replicate(s): "
                f"{sum(s.reason == 'cut' for s in stops)} stopped at a rung, "
                f"{sum(s.reason == 'failed' for s in stops)} failed")

    @property
    def rule(self) -> ConfigHalving:
        assert self._rule is not None, "no trial was added"
        return self._rule

    def _report(self, trial: Any, result: dict[str, Any]) -> Action:
        configuration, replicate = self._trials[trial.trial_id]
        value, time = result.get(str(self._metric)), result.get(self._time_attr)
        if not isinstance(value, (int, float)) or not isinstance(time, (int, float)):
            return "stop" if self.rule.stop(configuration) else "continue"
        action = self.rule.report(configuration, replicate, float(time), float(value))
        self._save()
        return action

    def _fail_errored(self) -> None:
        if not self._errored:
            return
        for trial_id in sorted(self._errored):
            self.rule.fail(self._trials[trial_id][0])
        self._errored.clear()
        self._save()

    def _restored(self, trial: Any) -> ConfigHalving | None:
        """The rule as the record left it, when ``trial`` is one of the record's (a restored experiment)."""
        folder = _experiment_folder(trial)
        self._record = None if folder is None else SweepDir(folder).asha
        saved = (read_json(self._record) if self._record else None) or {}
        return ConfigHalving.from_json(saved["rule"]) if trial.trial_id in saved.get("trials", {}) else None

    def _save(self) -> None:
        if self._record is not None:
            write_json(self._record, record(self.rule, self._trials))


def _experiment_folder(trial: Any) -> Path | None:
    """Where the driver stages the trial's experiment folder. Tune uploads that folder to the
    storage with each experiment checkpoint (overwriting what is there) and downloads it
    before a restore, so a record kept there travels with Tune's own experiment state."""
    staging = getattr(trial, "local_experiment_path", None) if getattr(trial, "storage", None) else None
    return None if staging is None else Path(staging)
