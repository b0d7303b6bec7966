"""The trust table with intervals: every validator of a ``Grid`` studied, and its markdown.

``run_study`` studies the oracle (for reference), each label-free validator found, and a
consensus of the validators that beat the no-selection baseline *on the selection split*
(``val/miou``), shown on the report split like every other row. ``markdown`` writes the
three numbers (the validator's pick, the oracle's pick, the default) side by side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from simtune.selection.study import (CONSENSUS, ORACLE, Baselines, Estimate, Grid, StudyRow, baselines,
                                     beats_baseline, study_row, verdict)
from simtune.stats import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, CONFIDENCE, format_interval, seed_weights

LABEL_FREE_PREFIXES = ("select/", "source_val/")  # validators a user without target labels has


@dataclass(frozen=True)
class Study:
    """Everything the trust table shows."""

    rows: list[StudyRow]  # the oracle first, then the validators, then the consensus if any
    baselines: Baselines
    members: list[str]  # the consensus's validators ([] = none beat the baseline on the selection split)
    resamples: int  # bootstrap resamples drawn (0 with one seed)


def validators_in(grid: Grid) -> list[str]:
    """Label-free metrics present in any evaluation, sorted."""
    return sorted({k for evals in grid.runs.values() for e in evals for k in e if k.startswith(LABEL_FREE_PREFIXES)})


def run_study(grid: Grid, metrics: Sequence[str] | None = None, *, resamples: int = BOOTSTRAP_RESAMPLES,
              seed: int = BOOTSTRAP_SEED) -> Study:
    """Rows for the oracle, ``metrics`` (default: every validator found) and, if two or more of
    them beat the default beyond noise on the selection split, their consensus."""
    weights = seed_weights(len(grid.seeds), resamples, seed)
    names = list(metrics) if metrics is not None else validators_in(grid)
    rows = [row for name in [ORACLE, *names] if (row := study_row(grid, name, weights)) is not None]
    members = [r.metric for r in rows if r.metric != ORACLE and beats_baseline(r, on_selection=True)]
    if len(members) >= 2:
        consensus = study_row(grid, CONSENSUS, weights, members)
        if consensus is not None:
            rows.append(consensus)
    return Study(rows, baselines(grid, weights), members, len(weights) - 1)


def fmt(estimate: Estimate, digits: int = 2) -> str:
    """``+0.41 [-0.12, +0.95]``; ``-`` when undefined; no interval when the noise is unknown."""
    if estimate.value is None:
        return "-"
    return format_interval(estimate.value, estimate.low, estimate.high, digits=digits, signed=True)


def level(estimate: Estimate) -> str:
    """``22.41 [21.90, 22.95]``: an mIoU level (no sign)."""
    return "-" if estimate.value is None else format_interval(estimate.value, estimate.low, estimate.high)


def name(row: StudyRow, members: Sequence[str]) -> str:
    if row.metric == ORACLE:
        return f"{ORACLE} (oracle, uses val labels)"
    if row.metric == CONSENSUS:
        return f"consensus (mean rank of {', '.join(members)})"
    return row.metric


def markdown(study: Study) -> str:
    """The three numbers, the trust table (two parts: configurations, checkpoints) and the verdicts."""
    b = study.baselines
    noise = (f"intervals: {100 * CONFIDENCE:.0f}% percentile bootstrap over seeds, {study.resamples} resamples, "
             "the pick repeated inside each" if study.resamples else
             "one seed: the noise is unknown, so no interval and no verdict (run the sweep with `replicates: K`)")
    lines = [f"Seeds: {b.seeds} (paired across configurations); {noise}. mIoU in points.", "",
             "**Selecting a configuration** (last evaluation of each run; report mIoU, mean over seeds):", "",
             "| validator | picks | report mIoU of its pick | of the oracle's pick | of the default | "
             "pick - oracle | pick - default | pick - default, cross-fitted | verdict |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in study.rows:
        lines.append(f"| {name(row, study.members)} | {row.pick} | {level(row.pick_report)} | "
                     f"{level(b.oracle_report)} ({b.oracle_pick}) | {level(b.default_report)} ({b.default or '-'}) | "
                     f"{fmt(row.vs_oracle)} | {fmt(row.vs_default)} | {fmt(row.vs_default_crossfit)} | "
                     f"{verdict(row)} |")
    lines += ["", "**Rank agreement with report mIoU** (across configurations: configuration means; within runs: "
              "over each run's evaluations, averaged over runs) and **checkpoint selection** (report mIoU of the "
              "evaluation picked in each run minus the oracle's and minus the last evaluation's, averaged over "
              "runs):", "",
              "| validator | Spearman | Kendall | Spearman within runs | Kendall within runs | runs | "
              "checkpoint - oracle's | checkpoint - last |", "|---|---|---|---|---|---|---|---|"]
    for row in study.rows:
        lines.append(f"| {name(row, study.members)} | {fmt(row.spearman)} | {fmt(row.kendall)} | "
                     f"{fmt(row.spearman_within)} | {fmt(row.kendall_within)} | {row.runs_within} | "
                     f"{fmt(row.within_vs_oracle)} | {fmt(row.within_vs_last)} |")
    lines += ["", consensus_line(study)]
    return "\n".join(lines)


def consensus_line(study: Study) -> str:
    """Which validators a consensus was built from, chosen on the selection split."""
    chosen = [r for r in study.rows if r.metric != ORACLE and beats_baseline(r, on_selection=True)]
    if len(chosen) >= 2:
        return (f"Consensus: {', '.join(r.metric for r in chosen)} each beat the default beyond noise on the "
                "selection split (`val/miou`); their mean rank is shown on the report split above.")
    if len(chosen) == 1:
        return (f"Consensus: only {chosen[0].metric} beats the default beyond noise on the selection split "
                "(`val/miou`); a consensus of one is that validator, so none is shown.")
    return ("Consensus: no validator beats the default beyond noise on the selection split (`val/miou`), "
            "so none qualifies for a consensus.")
