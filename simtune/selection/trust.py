"""How far a label-free validator tracks report mIoU trial by trial: rank agreement and regret.

The per-trial view (no seeds, no intervals) behind the report's scatter figure; the trust
table with seed intervals and verdicts is ``simtune.selection.study``.

Inputs are plain records of evaluations (one dict of metrics per evaluation, grouped by
trial); nothing here reads files. The *oracle* is the supervised ``val/miou`` on the
selection split, which a user without target labels does not have.

- **Spearman / Kendall** between a validator and ``report/miou``: over trials (each
  trial's last evaluation), and over every evaluation of every trial pooled.
- **Regret** of selecting by a validator: report mIoU of the trial the oracle picks
  minus that of the trial the validator picks (higher-is-better for both). 0 = as good as
  the oracle; negative = luckier than the oracle. Within trials: the same, picking one
  evaluation per trial, averaged over trials.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from scipy import stats as scipy_stats

from simtune import stats
from simtune.keys import REPORT_METRIC, SELECTION_METRIC

ORACLE = SELECTION_METRIC
TRUTH = REPORT_METRIC
SELECT_PREFIX = "select/"

Evaluation = Mapping[str, float]  # one evaluation's metrics, e.g. {"select/entropy": ..., "report/miou": ...}


@dataclass(frozen=True)
class TrustRow:
    """One validator's agreement with report mIoU. Correlations are None when undefined."""

    metric: str
    trials: int
    spearman: float | None
    kendall: float | None
    regret: float | None
    evaluations: int
    spearman_evals: float | None
    kendall_evals: float | None
    regret_within: float | None  # mean over trials with >= 2 evaluations


def kendall(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Kendall's tau-b; None if fewer than 2 points or either side is constant."""
    if len(x) < 2 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    return float(scipy_stats.kendalltau(x, y).statistic)


def _spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    return stats.spearman(x, y) if len(x) >= 2 else None


def regret(evaluations: Sequence[Evaluation], metric: str) -> float | None:
    """``report/miou`` of the oracle's pick minus that of ``metric``'s pick (first best wins ties)."""
    scored = [e for e in evaluations if _finite(e, metric) and _finite(e, ORACLE) and _finite(e, TRUTH)]
    if not scored:
        return None
    by_metric = max(scored, key=lambda e: e[metric])
    by_oracle = max(scored, key=lambda e: e[ORACLE])
    return float(by_oracle[TRUTH] - by_metric[TRUTH])


def trust_row(trials: Mapping[str, Sequence[Evaluation]], metric: str,
              complete: Collection[str] | None = None) -> TrustRow:
    """Agreement of ``metric`` with ``report/miou`` over ``trials`` (trial id -> its evaluations in order).

    Args:
        complete: trial ids whose last evaluation enters the across-trials columns (trials
            trained to the end; None = all); every trial's evaluations enter the pooled ones.
    """
    last = [evals[-1] for tid, evals in trials.items() if evals and (complete is None or tid in complete)]
    last = [e for e in last if _finite(e, metric) and _finite(e, TRUTH)]
    pooled = [e for evals in trials.values() for e in evals if _finite(e, metric) and _finite(e, TRUTH)]
    within = [regret(evals, metric) for evals in trials.values() if len(evals) >= 2]
    within_known = [r for r in within if r is not None]
    return TrustRow(
        metric=metric,
        trials=len(last),
        spearman=_spearman([e[metric] for e in last], [e[TRUTH] for e in last]),
        kendall=kendall([e[metric] for e in last], [e[TRUTH] for e in last]),
        regret=regret(last, metric),
        evaluations=len(pooled),
        spearman_evals=_spearman([e[metric] for e in pooled], [e[TRUTH] for e in pooled]),
        kendall_evals=kendall([e[metric] for e in pooled], [e[TRUTH] for e in pooled]),
        regret_within=sum(within_known) / len(within_known) if within_known else None,
    )


def select_metrics(trials: Mapping[str, Sequence[Evaluation]]) -> list[str]:
    """The ``select/*`` metrics present in any evaluation, sorted, with the oracle first."""
    names = sorted({k for evals in trials.values() for e in evals for k in e if k.startswith(SELECT_PREFIX)})
    return [ORACLE, *names]


def trust_table(trials: Mapping[str, Sequence[Evaluation]], complete: Collection[str] | None = None) -> list[TrustRow]:
    """One row per validator found, the oracle (``val/miou``) first as the reference."""
    return [trust_row(trials, metric, complete) for metric in select_metrics(trials)]


def scatter_points(trials: Mapping[str, Sequence[Evaluation]], complete: Collection[str] | None = None
                   ) -> dict[str, list[tuple[float, float, bool]]]:
    """metric -> ``(value, report/miou, is a complete trial's last evaluation)`` per evaluation."""
    points: dict[str, list[tuple[float, float, bool]]] = {}
    for metric in select_metrics(trials):
        points[metric] = [
            (float(e[metric]), float(e[TRUTH]), i == len(evals) - 1 and (complete is None or tid in complete))
            for tid, evals in trials.items() for i, e in enumerate(evals) if _finite(e, metric) and _finite(e, TRUTH)]
    return points


def markdown(rows: Sequence[TrustRow]) -> str:
    """The table as Markdown; the oracle row is labelled as such."""
    lines = [
        "| metric | trials | Spearman | Kendall | regret (mIoU) | evaluations | Spearman (evals) "
        "| Kendall (evals) | regret within trials |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        name = f"{row.metric} (oracle, uses val labels)" if row.metric == ORACLE else row.metric
        cells = [name, str(row.trials), _fmt(row.spearman), _fmt(row.kendall), _fmt(row.regret),
                 str(row.evaluations), _fmt(row.spearman_evals), _fmt(row.kendall_evals), _fmt(row.regret_within)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:+.2f}"


def _finite(evaluation: Evaluation, key: str) -> bool:
    value = evaluation.get(key)
    return value is not None and math.isfinite(float(value))
