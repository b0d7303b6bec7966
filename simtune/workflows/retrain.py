"""``simtune retrain --best``: retrain a sweep's best configuration over several seeds.

The best trial is the sweep's first by ``simtune.results.ranking.rank`` (the selection metric,
``val/miou`` on frankfurt, at its *last* evaluation -- not its best-ever one). Its resolved
config runs the full two-stage pipeline on N fresh seeds, none of which any trial of the sweep
trained with (``search.replicates.fresh_seeds``); the held-out report split (``report/miou``,
lindau + munster) gives mean ± std over them next to the sweep's own estimate, optionally
beside the runner-up on the same seeds. The seed run with the best selection metric is logged
as an MLflow pyfunc model (``simtune.tracking.registry``) and registered as a new version of
the search space's model, which takes the alias ``champion`` (the one before becomes
``previous``).

MLflow layout, in the sweep's experiment: a parent run ``retrain · λ_ci=0.01 w=200`` whose
description links the sweep, the trial it retrains and the model version, with a child
``seed 2 · λ_ci=0.01 w=200`` per (candidate, seed). Run directories:
``<sweep>/retrain/<trial>-x<scale>/seed<seed>/``; a finished one is reused, so an
interrupted retrain continues where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simtune.errors import ConfigError, TrackingError
from simtune.rundir import RunDir, load_segmenter_state
from simtune.schema import direction_sign
from simtune.search.replicates import fresh_seeds
from simtune.workflows.retrain_seeds import SeedRun, train_seeds_of
from simtune.stats import Spread, format_spread, paired_difference, spread, unpaired_difference, verdict
from simtune.results.sweepdir import find_sweep
from simtune.results.trials import TrialOutcome, load_configs, load_trials, selection_rule
from simtune.tracking.sweep import experiment_of
from simtune.results.ranking import metric_unit
from simtune.tracking import naming
from simtune.tracking.experiments import ensure_experiment, set_sweep_view
from simtune.tracking.naming import CHAMPION
from simtune.tracking.retrain import create_retrain_run, set_outcome, set_registered
from simtune.tracking.store import connect, end_run, find_sweep_parent, log_metrics, one_line, sweep_store
from simtune.tracking.system_metrics import start_system_metrics
from simtune.tracking.trials import find_trial_run
from simtune import preflight


@dataclass
class Candidate:
    """A sweep configuration being retrained (``role`` is "best" or "runner_up").

    ``trial`` is its first counted replicate (its resolved config is retrained). ``seeds`` are
    fresh: no trial of the sweep trained with them, and both candidates get the same ones, so
    they are compared seed by seed. ``sweep`` is its mean over the sweep's own seeds (the
    estimate it was selected on).
    """

    role: str
    trial: TrialOutcome
    seeds: list[int] = field(default_factory=list)
    runs: list[SeedRun] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)  # the swept values, which name its runs
    sweep: dict[str, Spread] = field(default_factory=dict)  # metric -> spread over the sweep's seeds

    def by_seed(self, metric: str) -> dict[int, float]:
        return {r.seed: r.final[metric] for r in self.runs if metric in r.final}

    def spread(self, metric: str) -> Spread | None:
        """Mean and sample std of ``metric`` over the fresh seeds that finished; None if none did."""
        values = list(self.by_seed(metric).values())
        return spread(values) if values else None


@dataclass
class RetrainResult:
    """What ``retrain_best`` trained, logged and registered."""

    sweep_dir: Path
    metric: str
    mode: str
    tracking_uri: str
    parent_run_id: str
    sweep_parent_run_id: str | None
    candidates: list[Candidate]
    model_name: str | None = None
    model_version: str | None = None
    champion: SeedRun | None = None
    notes: list[str] = field(default_factory=list)
    experiment_id: str = ""
    previous_version: str | None = None  # the version that was @champion before this retrain
    seeds: int = 1
    iters_scale: float = 1.0
    configs: list[dict[str, Any]] = field(default_factory=list)  # every ranked configuration's swept values
    replicated: bool = False  # the sweep ran several seeds per configuration


def retrain_best(*, storage: Path, sweep: str | None = None, seeds: int = 3, iters_scale: float = 1.0,
                 compare_runner_up: bool = False, tracking_uri: str | None = None, model_name: str | None = None,
                 seeds_from: int | None = None, address: str | None = None,
                 say: Callable[[str], None] = lambda line: None) -> RetrainResult:
    """Retrain the best trial (and the runner-up) of a sweep on ``seeds`` fresh seeds; register the champion.

    The seeds train at once as Ray trials with the sweep's resources (``sweep.jobs.seeds``), on the
    cluster at ``address`` (None: ``RAY_ADDRESS``, else a local Ray); run again after a kill, the
    same retrain continues the seeds from their checkpoints and keeps the ones that finished.

    Args:
        storage: folder of sweep folders; ``sweep`` None = the most recent sweep there.
        seeds_from: the first confirmation seed; None = one past the largest seed of the sweep.
            Seeds the sweep trained with are refused: a confirmation never re-runs a selection seed.
        iters_scale: multiplies stage iters, schedule lengths and ``eval.every``.
        tracking_uri: None = the store the sweep recorded (``sweep_store``); another one is refused.
        model_name: registered model name; None = the search space's (``simtune-<space>``).
        say: where one-line notes go (the resources the seeds run with).
    Raises:
        ConfigError: bad arguments, or a sweep without a finished trial.
        TrackingError: the store cannot be reached or written, before any training.
    """
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, but got {seeds}")
    if not iters_scale > 0:
        raise ConfigError(f"--iters-scale must be > 0, but got {iters_scale}")
    result = _plan(find_sweep(storage, sweep), compare_runner_up, tracking_uri, seeds, seeds_from)
    preflight.check(RunDir(c.trial.run_dir).config() for c in result.candidates)
    result.seeds, result.iters_scale = seeds, iters_scale
    client = connect(result.tracking_uri)
    experiment = experiment_of(result.sweep_dir)
    result.experiment_id = ensure_experiment(client, experiment, result.tracking_uri)
    set_sweep_view(client, result.experiment_id, result.sweep_dir.name, result.candidates[0].values, result.metric,
                   configs=result.configs, replicated=result.replicated)
    sweep_parent = find_sweep_parent(client, result.experiment_id, result.sweep_dir.name, result.sweep_dir)
    result.sweep_parent_run_id = sweep_parent.info.run_id if sweep_parent else None
    result.parent_run_id = _create_parent(client, result)
    monitor = start_system_metrics(result.tracking_uri, result.parent_run_id)
    try:
        train_seeds_of(client, result, iters_scale, address, say)
        _log_spread(client, result)
        _register(client, result, model_name or naming.model_name(experiment))
    except KeyboardInterrupt:
        end_run(client, result.parent_run_id, "KILLED")
        raise
    except BaseException:
        end_run(client, result.parent_run_id, "FAILED")
        raise
    finally:
        if monitor is not None:
            monitor.finish()
    end_run(client, result.parent_run_id, "FINISHED")
    return result


def _plan(sweep_dir: Path, compare_runner_up: bool, tracking_uri: str | None, seeds: int,
          seeds_from: int | None) -> RetrainResult:
    """The candidates (best, runner-up configuration) by the sweep's ranking, their fresh seeds, the store.

    Raises:
        ConfigError: no ranked configuration, or ``seeds_from`` would reuse a seed of the sweep.
    """
    metric, mode = selection_rule(sweep_dir)
    trials = load_trials(sweep_dir)
    ranked = load_configs(sweep_dir, trials, metric, mode)
    if not ranked:
        raise ConfigError(f"{sweep_dir}: no finished trial with {metric}; nothing to retrain")
    chosen = ranked[: 2 if compare_runner_up else 1]
    by_id = {t.trial_id: t for t in trials}
    try:  # the same fresh seeds for both: paired, and never a seed the selection saw
        fresh = fresh_seeds((int(t.params.get("seed", 0)) for t in trials), seeds, seeds_from)
    except ValueError as exc:
        raise ConfigError(f"--seeds-from {seeds_from}: {exc}") from None
    uri = sweep_store(sweep_dir, tracking_uri)
    result = RetrainResult(sweep_dir, metric, mode, uri, "", None, [
        Candidate(role, by_id[c.replicates[0].trial_id], fresh, values=dict(c.params),
                  sweep={m: s for m in dict.fromkeys((metric, naming.REPORT)) if (s := c.spread(m)) is not None})
        for role, c in zip(("best", "runner_up"), chosen)])
    result.configs, result.replicated = [dict(c.params) for c in ranked], any(c.n > 1 for c in ranked)
    if compare_runner_up and len(ranked) < 2:
        result.notes.append("no runner-up to compare: the sweep has a single ranked configuration")
    return result


def verdicts(result: RetrainResult) -> list[str]:
    """Best against runner-up, paired over the retrain seeds both finished: one verdict line per metric."""
    if len(result.candidates) < 2:
        return []
    best, runner_up = result.candidates
    lines = []
    for metric in dict.fromkeys((naming.REPORT, result.metric)):
        a, b = best.by_seed(metric), runner_up.by_seed(metric)
        seeds = sorted(set(a) & set(b))
        if not seeds:
            lines.append(f"Verdict: no seed finished for both candidates; nothing to compare on {metric}")
            continue
        diff = paired_difference([a[s] for s in seeds], [b[s] for s in seeds])
        lines.append(verdict(diff, unit=f"{metric_unit(metric)} on {metric}"))
    return lines


def _create_parent(client: Any, result: RetrainResult) -> str:
    best = result.candidates[0]
    return create_retrain_run(
        client, result.experiment_id, name=naming.retrain_run_name(best.values), sweep_dir=result.sweep_dir,
        sweep_parent_run_id=result.sweep_parent_run_id, trial_id=best.trial.trial_id,
        runner_up_trial_id=result.candidates[1].trial.trial_id if len(result.candidates) > 1 else None,
        selection=f"{result.metric} ({result.mode}) at each trial's last evaluation, not best-ever",
        note=_parent_note(client, result), seed=best.trial.params.get("seed", 0),
        params={"n_fresh_seeds": result.seeds, "fresh_seeds": ", ".join(map(str, best.seeds)),
                "iters_scale": result.iters_scale, "best_trial": best.trial.trial_id, **best.values},
        cfg=RunDir(best.trial.run_dir).config())


def _parent_note(client: Any, result: RetrainResult, model: str = "") -> str:
    """The retrain parent's description: what is retrained on which fresh seeds, how it was chosen, and
    once the seeds ended the outcome in full (confirmation, ``report/miou``, verdicts, model version)."""
    lines = [f"`{naming.config_label(c.values) or c.trial.trial_id}` ({c.role.replace('_', '-')}, trial "
             f"`{c.trial.trial_id}`) on {result.seeds} fresh seeds: {', '.join(map(str, c.seeds))}; "
             f"iterations ×{result.iters_scale:g}" for c in result.candidates]
    lines.append(f"chosen by `{result.metric}` ({result.mode}) at each trial's last evaluation; fresh seeds: no "
                 "trial of the sweep trained with them")
    lines += [naming.plain(line) for line in _outcome_lines(result)]
    if result.model_version is not None:
        before = f", `{naming.PREVIOUS}` version {result.previous_version}" if result.previous_version else ""
        lines.append(f"registered as `{result.model_name}` version {result.model_version}, alias "
                     f"`{naming.CHAMPION}`{before}")
    links = [naming.run_link(result.experiment_id, run_id, text) for run_id, text in _sweep_links(client, result)]
    return naming.description(f"Retrain of sweep {result.sweep_dir.name}", lines, [*links, *([model] if model else [])])


def _outcome_lines(result: RetrainResult) -> list[str]:
    """The confirmation and verdict lines, and ``report/miou`` on fresh seeds beside the sweep's estimate."""
    report = [f"{naming.REPORT} ({c.role.replace('_', '-')}, lindau + munster): "
              f"{format_spread(c.spread(naming.REPORT), with_n=True)} on fresh seeds; the sweep estimated "
              f"{format_spread(c.sweep.get(naming.REPORT), with_n=True)}" for c in result.candidates if c.runs]
    return [*confirmation(result), *report, *verdicts(result)]


def _sweep_links(client: Any, result: RetrainResult) -> list[tuple[str, str]]:
    """(run id, text) of the sweep's parent run and of the trial runs being retrained."""
    links = [(result.sweep_parent_run_id, f"sweep {result.sweep_dir.name}")] if result.sweep_parent_run_id else []
    if result.sweep_parent_run_id:
        for c in result.candidates:
            run = find_trial_run(client, result.experiment_id, result.sweep_parent_run_id, c.trial.trial_id)
            links += [(run.info.run_id, f"{c.role.replace('_', '-')} trial {run.info.run_name}")] if run else []
    return links


def _log_spread(client: Any, result: RetrainResult) -> None:
    """Each candidate's mean, std and n over the fresh seeds (``confirm/...``) and over the sweep's
    seeds (``best_config/...``, the sweep's estimate), on the retrain parent run (``naming``)."""
    points: list[tuple[str, float, int]] = []
    for candidate in result.candidates:
        fresh_scope, sweep_scope = naming.FRESH_SCOPES[candidate.role], naming.SWEEP_SCOPES[candidate.role]
        for metric in dict.fromkeys((naming.REPORT, result.metric)):
            for scope, found in ((fresh_scope, candidate.spread(metric)), (sweep_scope, candidate.sweep.get(metric))):
                if found is not None:
                    points.append((naming.mean_key(scope, metric), found.mean, 0))
                    points += [(naming.std_key(scope, metric), found.std, 0)] if found.std is not None else []
        points.append((naming.seeds_key(fresh_scope), float(len(candidate.by_seed(result.metric))), 0))
        selected = candidate.sweep.get(result.metric)
        if selected is not None:
            points.append((naming.seeds_key(sweep_scope), float(selected.n), 0))
    log_metrics(client, result.parent_run_id, points)
    set_outcome(client, result.parent_run_id, verdicts(result) + confirmation(result), _parent_note(client, result))


def confirmation(result: RetrainResult) -> list[str]:
    """The best configuration on fresh seeds against its sweep estimate, on the selection metric.

    A configuration chosen as the best of several is, on average, luckier on the seeds it was
    chosen on than it will be on others (the winner's curse). The line gives sweep estimate minus
    confirmation with its 95% interval (Welch: the two seed sets are disjoint,
    ``stats.unpaired_difference``) and calls the shortfall the winner's curse only when that
    interval excludes 0; a shortfall inside the seed noise is said to be within it.
    """
    best = result.candidates[0]
    fresh, selected = best.spread(result.metric), best.sweep.get(result.metric)
    if fresh is None or selected is None:
        return []
    seeds = ", ".join(map(str, best.seeds))
    text = (f"Confirmation: {result.metric} {format_spread(fresh)} on fresh seeds {seeds}; "
            f"the sweep estimated {format_spread(selected, with_n=True)} on its own seeds")
    diff = unpaired_difference(selected, fresh)
    if diff.half_width is None:
        return [text + f": sweep estimate - confirmation = {diff.mean:.2f} {metric_unit(result.metric)}; noise "
                       "unknown with one seed on a side"]
    gap = f"sweep estimate - confirmation = {diff.mean:.2f} ± {diff.half_width:.2f} {metric_unit(result.metric)} (95%)"
    if diff.beyond_noise and diff.mean > 0:
        return [text + f": {gap}, lower on fresh seeds beyond noise (winner's curse: the sweep picked the "
                       "configuration partly for its luck on its seeds)"]
    if diff.beyond_noise:
        return [text + f": {gap}, higher on fresh seeds beyond noise"]
    return [text + f": {gap}, confirmation within noise of the sweep's estimate"]


# ----------------------------------------------------------------------------- the model registry


def _register(client: Any, result: RetrainResult, name: str) -> None:
    """Log the best candidate's best seed (by the selection metric) as a model version; make it ``champion``."""
    from simtune.tracking.registry import log_segmenter, register

    sign = direction_sign(result.mode)
    done = [r for r in result.candidates[0].runs if result.metric in r.final]
    if not done:
        return
    champion = max(done, key=lambda r: sign * r.final[result.metric])
    best = result.candidates[0]
    confirmed = format_spread(best.spread(naming.REPORT), with_n=True)
    estimated = format_spread(best.sweep.get(naming.REPORT), with_n=True)
    run = RunDir(champion.run_dir)
    last = run.last_evaluation()
    try:  # logged at its final evaluation's step: that step's metrics become the model's
        model_uri = log_segmenter(champion.run_id, result.tracking_uri, load_segmenter_state(run.weights()),
                                  run.config_file, run.config().model.num_classes,
                                  step=int(last[1]["step"]) if last else 0)
        text = naming.description(
            f"Seed {champion.seed} of {naming.config_label(best.values)}",
            [f"best `{result.metric}` of {len(done)} fresh seeds", f"`report/miou` {confirmed} on fresh seeds, "
             f"{estimated} on the sweep's seeds"],
            [naming.run_link(result.experiment_id, run_id, label)
             for run_id, label in [(result.parent_run_id, "retrain"), *_sweep_links(client, result)]])
        registered = register(client, name, model_uri, result.parent_run_id, description=text, tags={
            "sweep": result.sweep_dir.name, "trial_id": result.candidates[0].trial.trial_id,
            "seed": str(champion.seed), "report_miou_fresh_seeds": confirmed, "report_miou_sweep_seeds": estimated,
            "selection": result.metric})
    except Exception as exc:  # MLflow wraps store and artifact errors in several types
        raise TrackingError(f"could not register the champion model in {result.tracking_uri}: {one_line(exc)}") from exc
    link = naming.model_link(name, registered.version, f"model {name} version {registered.version} "
                                                       f"(alias {CHAMPION})")
    result.model_name, result.model_version, result.champion = name, registered.version, champion
    result.previous_version = registered.previous
    set_registered(client, result.parent_run_id, name, registered.version, _parent_note(client, result, link))
