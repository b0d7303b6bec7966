"""``simtune report``: figures and a markdown summary of a finished sweep.

Trials are read, grouped into configurations and ranked by ``simtune.results`` (last
evaluation, mean over replicates, the one rule).

The report mirrors the paper's ablations: Table 3 (mIoU against ``lambda_ci`` at fixed
``w`` = ``bank_size``) and Table 4 (against ``w`` at fixed ``lambda_ci``), each point the mean
± std over the replicates (seeds) with its n; parameter importances from an Optuna study
rebuilt from the configurations' seed-adjusted estimates, flagged unless the configurations
differ beyond the seed noise (one test over all of them), both over the configurations trained
to the end (``simtune.workflows.importance``);
the best configuration's per-class IoU; whether each label-free ``select/*`` validator can select
(the trust table with seed intervals, also written alone to ``report/trust.md``:
``simtune.workflows.selection_report``); and a markdown summary that states the verdict
on best against runner-up (paired 95% interval, ``simtune.stats``) and, with two replicates or
more, the split-half reproducibility of the ranking. With one replicate it says that the
noise is unknown and how to measure it. ``val/miou`` is labelled the oracle wherever it
appears: it needs val labels.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simtune.keys import REPORT_METRIC, SELECTION_METRIC
from simtune.errors import ConfigError, SimtuneError
from simtune.labels import CLASS_NAMES
from simtune.rundir import RunDir
from simtune.selection import trust
from simtune.stats import NOISE_HINT, Spread, format_estimate, format_spread, spread
from simtune.results.ranking import ConfigResult, ranking_verdict, reproducibility_line
from simtune.results.sweepdir import SweepDir
from simtune.results.trials import TrialOutcome, load_configs, load_trials, selection_rule
from simtune import figures
from simtune.tracking import naming
from simtune.workflows.importance import like_with_like, param_importances, surface_noise
from simtune.workflows.report_folder import ReportFolder, report_folder
from simtune.workflows.selection_report import TRUST_FILE, TrustOutcome, section, trust_study

LAMBDA_KEYS = ("stage1.lambda_ci", "stage2.lambda_ci")
BANK_KEYS = ("stage1.bank_size", "stage2.bank_size")


def varying(trials: Sequence[TrialOutcome]) -> list[str]:
    """Config keys whose value differs between the given trials (the swept ones)."""
    if not trials:
        return []
    keys = trials[0].params
    return [k for k in keys if len({json.dumps(t.params.get(k)) for t in trials}) > 1]


# ----------------------------------------------------------------------------- the paper's tables


def effect_rows(trials: Sequence[TrialOutcome], param: str) -> list[dict[str, Any]]:
    """Mean ± std of ``val/miou`` and ``report/miou`` per value of ``param`` (Tables 3-4)."""
    rows = []
    for value in sorted({t.params[param] for t in trials}):
        group = [t for t in trials if t.params[param] == value]
        for metric in (SELECTION_METRIC, REPORT_METRIC):
            values = [t.final[metric] for t in group if metric in t.final]
            if values:
                s = spread(values)
                rows.append({"value": value, "metric": metric, "mean": s.mean, "std": s.std, "n": s.n})
    return rows


@dataclass(frozen=True)
class Effect:
    """One of the paper's Tables 3-4 for this sweep."""

    param: str
    fixed: str  # e.g. "stage1.bank_size = 50", or "all stage1.bank_size" when no slice has two values
    rows: list[dict[str, Any]]


def effect_at_fixed(ranked: Sequence[TrialOutcome], param: str, other: str) -> Effect:
    """Rows for ``param`` among trials sharing the best trial's ``other`` value (all trials if too few)."""
    best_other = ranked[0].params[other]
    sliced = [t for t in ranked if t.params[other] == best_other]
    if len({t.params[param] for t in sliced}) >= 2 or len({t.params[param] for t in ranked}) < 2:
        return Effect(param, f"{other} = {best_other} (the best configuration's)", effect_rows(sliced, param))
    return Effect(param, f"all {other} values pooled: no {other} slice has two {param} values",
                  effect_rows(ranked, param))


def pick_key(trials: Sequence[TrialOutcome], keys: Sequence[str]) -> str:
    """The first of ``keys`` that varies between trials, else the first."""
    swept = set(varying(trials))
    return next((k for k in keys if k in swept), keys[0])


# ----------------------------------------------------------------------------- the report


@dataclass
class Report:
    """What ``build_report`` wrote and where it attached it."""

    sweep_dir: Path
    out_dir: Path
    files: list[Path] = field(default_factory=list)
    best: TrialOutcome | None = None  # the best configuration's first counted replicate
    best_config: ConfigResult | None = None
    verdict: str = ""  # the "Verdict: ..." line on best against runner-up
    noise: str = ""  # split-half reproducibility (K >= 2), or that the noise is unknown (K = 1)
    parent_run_id: str | None = None
    tracking_uri: str | None = None  # the store it was attached to
    experiment_id: str | None = None
    notes: list[str] = field(default_factory=list)
    trust: TrustOutcome | None = None  # the trust table's study (workflows.selection_report)


def build_report(sweep_dir: Path, out_dir: Path | None = None, *, tracking_uri: str | None = None) -> Report:
    """Write the sweep's figures and ``summary.md`` to ``out_dir`` (default ``<sweep>/report``), replacing
    the report there, if any, whole (``workflows.report_folder``; a note says so).

    Also attaches them to the sweep's parent MLflow run under ``report/`` when the store
    has one (a missing store is a note, not an error: the report stands on the run dirs).
    Raises:
        ConfigError: the sweep has no finished trial, or ``out_dir`` holds files but no report.
    """
    folder = report_folder(Path(out_dir) if out_dir is not None else SweepDir(sweep_dir).report,
                           chosen=out_dir is not None)
    trials = load_trials(sweep_dir)
    metric, mode = selection_rule(sweep_dir)
    configs = load_configs(sweep_dir, trials, metric, mode)
    if not configs:
        raise ConfigError(f"{sweep_dir}: no finished trial with {metric} to report on ({len(trials)} trials)")
    out = folder.staging()
    by_id = {t.trial_id: t for t in trials}
    counted = [by_id[r.trial_id] for c in configs for r in c.replicates]  # best configuration first
    report = Report(sweep_dir, out, best=counted[0], best_config=configs[0],
                    verdict=ranking_verdict(configs, metric).line, noise=_noise_line(configs, metric))
    lam, bank = pick_key(counted, LAMBDA_KEYS), pick_key(counted, BANK_KEYS)
    swept = set(varying(counted))  # no figure for a parameter the sweep held fixed (one point)
    effects = [e for e in (effect_at_fixed(counted, lam, bank), effect_at_fixed(counted, bank, lam))
               if e.param in swept]
    for effect in effects:
        table, log_x = _table_name(effect), effect.param in LAMBDA_KEYS
        fig = figures.param_effect(effect.rows, param=effect.param, fixed=effect.fixed, log_x=log_x,
                                   title=f"{table} form: mIoU vs {effect.param}\n{_bars_note(effect)}")
        report.files.append(figures.save_figure(fig, out / f"{table.lower().replace(' ', '')}_{effect.param}.png"))
    importances, flag = _importances(report, configs, metric, mode)
    best_final = mean_final([by_id[r.trial_id] for r in configs[0].replicates])
    fig = figures.class_iou_bars(best_final, f"best configuration: per-class IoU, last evaluation, "
                                             f"mean of {configs[0].n} replicate(s)")
    report.files.append(figures.save_figure(fig, out / "best_class_iou.png"))
    _validators(report, trials, [t for t in trials if t.finished and t.failure is None])
    report.trust = trust_study(sweep_dir, trials, configs)
    validators = section(report.trust)
    if validators:
        report.files.append(_write(out / TRUST_FILE, "\n".join(validators)))
    elif report.trust.note:
        report.notes.append(report.trust.note)
    summary = out / "summary.md"
    summary.write_text(_markdown(report, trials, configs, metric, mode, effects, (importances, flag), best_final,
                                 validators))
    report.files.append(summary)
    _publish(report, folder)
    _attach(report, tracking_uri)
    return report


def _publish(report: Report, folder: ReportFolder) -> None:
    """Move the report from its staging folder to ``folder`` and point ``report`` at it."""
    staging = report.out_dir
    replaced = folder.publish(staging, report.sweep_dir)
    report.files = [folder.path / path.relative_to(staging) for path in report.files]
    report.out_dir = folder.path
    report.notes += [replaced] if replaced else []


def _table_name(effect: Effect) -> str:
    """The paper's table an effect reproduces: Table 3 for lambda_ci, Table 4 for w."""
    return "Table 3" if effect.param in LAMBDA_KEYS else "Table 4"


def _noise_line(configs: Sequence[ConfigResult], metric: str) -> str:
    if max(c.n for c in configs) < 2:
        return f"Noise unknown: every configuration ran with a single seed; {NOISE_HINT}."
    return reproducibility_line(configs, metric)


def _bars_note(effect: Effect) -> str:
    ns = sorted({r["n"] for r in effect.rows})
    if ns == [1]:
        return "n = 1 per point: no error bars, noise unknown"
    return f"error bars: std over replicates, n = {'/'.join(str(n) for n in ns)} per point"


def mean_final(trials: Sequence[TrialOutcome]) -> dict[str, float]:
    """Every metric's mean over ``trials``' last evaluations (the keys all of them have)."""
    keys = set.intersection(*(set(t.final) for t in trials)) if trials else set()
    return {k: statistics.fmean(t.final[k] for t in trials) for k in sorted(keys)}


def _importances(report: Report, configs: Sequence[ConfigResult], metric: str,
                 mode: str) -> tuple[dict[str, float], str]:
    """Importances and Friedman's test over the configurations trained to the end (like with like)."""
    swept = [p for p in configs[0].params if not p.startswith("data.")]
    configs, stopped = like_with_like(configs)
    if stopped:
        report.notes.append("parameter importance and the noise test leave out the configurations ASHA stopped "
                            "early: " + ", ".join(stopped))
    try:
        importances = param_importances(configs, swept, metric, mode)
    except SimtuneError as exc:
        report.notes.append(f"parameter importance skipped: {exc}")
        return {}, ""
    surface, flag = surface_noise(configs, metric)
    noisy = surface is None or not surface.beyond_noise
    title = f"parameter importance for {metric} ({len(configs)} configuration estimates)"
    fig = figures.importance_bars(importances, title + ("\nWITHIN NOISE: ranks noise" if noisy else ""))
    report.files.append(figures.save_figure(fig, report.out_dir / "importance.png"))
    return importances, flag


def _validators(report: Report, trials: Sequence[TrialOutcome], ranked: Sequence[TrialOutcome]) -> None:
    """The scatter figure of every evaluation, when the trials logged ``select/*``."""
    records = {t.trial_id: RunDir(t.run_dir).records() for t in trials if t.failure is None}
    complete = {t.trial_id for t in ranked if t.finished}
    points = trust.scatter_points(records, complete)
    if len(points) > 1:
        fig = figures.validator_scatter({_label(name): values for name, values in points.items()},
                                        f"validators against report mIoU ({len(complete)} trials)")
        report.files.append(figures.save_figure(fig, report.out_dir / "validators.png"))


def _write(path: Path, text: str) -> Path:
    path.write_text(text + "\n")
    return path


def _attach(report: Report, tracking_uri: str | None) -> None:
    """Log the report folder to the sweep's parent run, if the store has one."""
    from simtune.tracking.artifacts import log_to_sweep_parent
    from simtune.tracking.sweep import experiment_of
    from simtune.tracking.store import connect, sqlite_path, sweep_store

    sweep_dir = report.sweep_dir
    uri = sweep_store(sweep_dir, tracking_uri)
    db = sqlite_path(uri)
    if db is not None and not db.is_file():
        report.notes.append(f"not attached to MLflow: no store at {uri}")
        return
    parent = log_to_sweep_parent(connect(uri), experiment_of(sweep_dir), sweep_dir, report.out_dir, "report")
    if parent is None:
        report.notes.append(f"not attached to MLflow: no parent run of sweep '{sweep_dir.name}' in {uri}")
        return
    report.parent_run_id, report.tracking_uri = parent.info.run_id, uri
    report.experiment_id = str(parent.info.experiment_id)


# ----------------------------------------------------------------------------- markdown


def _markdown(report: Report, trials: Sequence[TrialOutcome], configs: Sequence[ConfigResult], metric: str,
              mode: str, effects: Sequence[Effect], importance: tuple[dict[str, float], str],
              best_final: dict[str, float], validators: Sequence[str] = ()) -> str:
    best = configs[0]
    swept = [k for k in best.params if not k.startswith("data.")]
    finished = sum(t.finished for t in trials)
    lines = [f"# Sweep `{report.sweep_dir.name}`", "",
             f"{len(trials)} trials ({finished} trained to the end) of {len(configs)} ranked configurations. "
             f"Configurations are ranked by `{_label(metric)}` ({mode}), its mean over their replicates (seeds; "
             "the seed-adjusted estimate when they ran different seeds), "
             "each replicate at its **last** evaluation, not its best-ever one; configurations trained to the end "
             "before those a scheduler stopped. `report/miou` (lindau + munster) is held out and never used for "
             "selection. ± is the sample std over replicates, except in the verdict, where it is the half-width "
             "of the 95% interval of the paired difference.", "",
             f"**Best configuration:** {naming.config_label(best.params) or 'the base config'}: "
             f"{_label(metric)} {_spread(best, metric)}, report/miou {_spread(best, REPORT_METRIC)}", "",
             report.verdict, "", report.noise, "",
             "## Configurations", "", _configs_table(configs, swept, metric), "",
             "## Trials", "", _trials_table(trials, swept, metric), ""]
    for effect in effects:
        table = _table_name(effect)
        lines += [f"## {table} form: mIoU vs `{effect.param}` ({effect.fixed})", "", _bars_note(effect) + ".", "",
                  "| value | val/miou (selection, oracle) | report/miou | n |", "|---|---|---|---|"]
        for value in sorted({r["value"] for r in effect.rows}):
            cells = {r["metric"]: r for r in effect.rows if r["value"] == value}
            lines.append(f"| {value} | {_pm(cells.get(SELECTION_METRIC))} | {_pm(cells.get(REPORT_METRIC))} | "
                         f"{max(r['n'] for r in cells.values())} |")
        lines.append("")
    importances, flag = importance
    if importances:
        lines += ["## Parameter importance (on seed-adjusted configuration estimates, configurations trained "
                  "to the end)", "", f"Against seed noise: {flag}.", "",
                  "| parameter | importance |", "|---|---|"]
        lines += [f"| {k} | {v:.3f} |" for k, v in importances.items()] + [""]
    lines += [f"## Per-class IoU of the best configuration (mean of {best.n} replicate(s), last evaluation)", "",
              "| class | val (selection, oracle) | report |", "|---|---|---|"]
    lines += [f"| {c} | {best_final.get(f'val/iou/{c}', math.nan):.1f} | "
              f"{best_final.get(f'report/iou/{c}', math.nan):.1f} |" for c in CLASS_NAMES
              if f"val/iou/{c}" in best_final or f"report/iou/{c}" in best_final]
    lines += [f"| **mIoU** | **{best_final.get(SELECTION_METRIC, math.nan):.1f}** | "
              f"**{best_final.get(REPORT_METRIC, math.nan):.1f}** |", ""]
    lines += list(validators)
    lines += [f"- {note}" for note in report.notes]
    return "\n".join(lines) + "\n"


def _label(metric: str) -> str:
    """``val/miou (oracle)``: the supervised metric is marked wherever a selection metric is named."""
    return f"{metric} (oracle)" if metric == SELECTION_METRIC else metric


def _configs_table(configs: Sequence[ConfigResult], swept: Sequence[str], metric: str) -> str:
    """Ranked configurations; a seed-adjusted column when they ran different seeds (what ranks them)."""
    scores = list(dict.fromkeys([metric, SELECTION_METRIC, REPORT_METRIC]))
    unlike = len({tuple(sorted(c.by_seed(metric))) for c in configs if c.stop is None}) > 1
    head = ["rank", *swept, *(f"{_label(m)} mean ± std" for m in scores),
            *([f"{_label(metric)} seed-adjusted ± se"] if unlike else []), "n", "seeds", "trials"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for place, c in enumerate(configs, 1):
        adjusted = [format_estimate(c.estimate.value if c.estimate else None, c.estimate.se if c.estimate else None)
                    ] if unlike else []
        cells = [f"{place}{'' if c.completed else _stopped(c)}", *(str(c.params.get(k)) for k in swept),
                 *(_spread(c, m, with_n=False) for m in scores), *adjusted, str(c.n),
                 ", ".join(str(r.seed) for r in c.replicates), ", ".join(c.trial_ids)]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _stopped(c: ConfigResult) -> str:
    return " (stopped early)" if c.stop is None else f" (stopped at iteration {c.stop.iteration:g}, mean there)"


def _spread(c: ConfigResult, metric: str, *, with_n: bool = True) -> str:
    return format_spread(c.spread(metric), with_n=with_n)


def _trials_table(trials: Sequence[TrialOutcome], swept: Sequence[str], metric: str) -> str:
    shown = [k for k in swept if not k.startswith("data.")]
    scores = list(dict.fromkeys([metric, SELECTION_METRIC, REPORT_METRIC]))
    head = ["trial", "status", *shown, *(_label(m) for m in scores)]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t in trials:
        status = ("finished" if t.finished else "failed: " + t.failure if t.failure
                  else "stopped early" if t.stopped_early else "not finished")
        values = [str(t.params.get(k)) for k in shown]
        cells = [f"{t.final[m]:.2f}" if m in t.final else "-" for m in scores]
        rows.append("| " + " | ".join([t.trial_id, status.replace("|", "/"), *values, *cells]) + " |")
    return "\n".join(rows)


def _pm(row: dict[str, Any] | None) -> str:
    return "-" if row is None else format_spread(Spread(row["n"], row["mean"], row["std"]))
