"""The saved views of MLflow's runs page that a sweep's printed links open.

MLflow 3.17's UI opens ``#/experiments/<id>/runs?viewStateShareKey=<key>`` from the experiment
tag ``mlflow.sharedViewState.<key>``, the tag its own **Share** button writes: a JSON object with
the search (filter, order) and the page's state (columns, their order and widths, Group by,
charts). ``&compareRunsMode=CHART`` opens the page's chart tab. Neither is in MLflow's
documentation: ``UI_CONTRACT`` names every string of the UI these views rely on, and
tests/test_mlflow_views.py finds each one in the installed UI's code, so an MLflow that renames
one fails the suite instead of silently opening a default page.

Two views per sweep (``naming.view_key``, ``naming.trials_view_key``):

- **configurations** (the printed link): the sweep's trials and configuration runs under
  MLflow's Group by over the swept params, mean aggregation, groups folded: one row per
  configuration, best ``config/<metric>_mean`` first, columns the swept params, then mean, std
  and n over seeds, then the trials' mean of the metric itself;
- **trials** (the chart tab): every trial of the sweep, all of them shown, with the metric
  against each swept param (scatter), all params at once (parallel coordinates) and, for two
  swept params, MLflow's contour chart: the paper's Tables 3-4 as one surface.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from simtune.tracking.naming import (CONFIG, SELECTION, mean_key, seeds_key, short_name, std_key, trials_view_key,
                                     view_key)
from simtune.tracking.naming.tags import TAG_VIEW_PREFIX
from simtune.tracking.store import param_text

# The MLflow UI names these views use (checked against the installed UI by a test).
UI_CONTRACT: tuple[str, ...] = (
    "viewStateShareKey", TAG_VIEW_PREFIX, "compareRunsMode", "CHART",
    # search facets and page state a shared view may carry
    "searchFilter", "orderByKey", "orderByAsc", "selectedColumns", "columnOrder", "columnWidths",
    "runsHiddenMode", "SHOW_ALL", "groupBy", "groupsExpanded", "groupByKeys", "groupByData", "aggregateFunction",
    "average", "useGroupedValuesInCharts", "hideEmptyCharts", "compareRunCharts", "compareRunSections",
    "isAccordionReordered", "runListHidden",
    # chart cards
    "SCATTER", "PARALLEL", "CONTOUR", "metricSectionId", "runsCountToCompare", "selectedParams", "selectedMetrics",
    "showAllRuns", "xaxis", "yaxis", "zaxis",
    # column ids
    "Run Name", "runDateAndNestInfo",
)

RUN_NAME, CREATED = "attributes.`Run Name`", "runDateAndNestInfo"  # the two columns pinned at the left
# Widths (px) that fit the configurations table beside MLflow's Assistant panel at 1600 px.
WIDTHS = {RUN_NAME: 170, CREATED: 90, "param": 120, "metric": 130, "n": 110}
SECTION = "simtune-sweep"  # the chart section of the views' own charts, listed first


def param_column(key: str) -> str:
    return f"params.`{key}`"


def metric_column(key: str) -> str:
    return f"metrics.`{key}`"


def sweep_filter(sweep: str) -> str:
    """The runs of a sweep: ``tags.`simtune.sweep` = '<sweep>'`` (quotes escaped)."""
    quoted = sweep.replace("\\", "\\\\").replace("'", "\\'")
    return f"tags.`simtune.sweep` = '{quoted}'"


def group_id(swept: Sequence[str], values: Mapping[str, Any]) -> str:
    """MLflow's id of a Group by row over the swept params: ``param.<key>.<value>`` joined by commas,
    the values as the params are stored (``json`` for lists, ``str`` otherwise)."""
    return ",".join(f"param.{key}.{param_text(values[key]) if key in values else 'null'}" for key in swept)


def configurations_view(sweep: str, swept: Sequence[str], metric: str = SELECTION, *,
                        configs: Iterable[Mapping[str, Any]] = (), replicated: bool = True) -> tuple[str, str]:
    """The experiment tag (key, JSON) of the configurations table the sweep's link opens.

    Args:
        swept: the swept keys, in the space's order (its first columns).
        configs: the swept values of each configuration known so far; their groups start folded
            (a configuration not listed shows its trials until the view is written again).
        replicated: configurations ran several seeds, so configuration runs hold
            ``config/<metric>_mean``, ``_std`` and ``config/n_seeds`` (else each trial is its
            configuration and the table ranks trials by ``metric``).
    """
    metrics = [mean_key(CONFIG, metric), std_key(CONFIG, metric), seeds_key(CONFIG)] if replicated else []
    columns = [*(param_column(k) for k in swept), *(metric_column(m) for m in (*metrics, metric))]
    widths = {RUN_NAME: WIDTHS[RUN_NAME], CREATED: WIDTHS[CREATED],
              **{c: WIDTHS["param" if c.startswith("params.") else "n" if "n_seeds" in c else "metric"]
                 for c in columns}}
    state = {
        "searchFilter": " AND ".join([sweep_filter(sweep), *(f"tags.`simtune.role` != '{role}'"
                                                             for role in ("sweep", "retrain", "retrain_seed"))]),
        "orderByKey": metric_column(metrics[0] if replicated else metric), "orderByAsc": False,
        "selectedColumns": columns, "columnOrder": [RUN_NAME, CREATED, *columns], "columnWidths": widths,
        "groupBy": {"aggregateFunction": "average",
                    "groupByKeys": [{"mode": "param", "groupByData": key} for key in swept]},
        "groupsExpanded": {group_id(swept, values): False for values in configs},
        "runsHiddenMode": "SHOW_ALL", "useGroupedValuesInCharts": True, "hideEmptyCharts": True,
        **chart_state(swept, metric, "every configuration: mean over its seeds"),
    }
    return TAG_VIEW_PREFIX + view_key(sweep), json.dumps(state, ensure_ascii=False)


def trials_view(sweep: str, swept: Sequence[str], metric: str = SELECTION) -> tuple[str, str]:
    """The experiment tag (key, JSON) of the chart view: every trial of the sweep, none hidden,
    the metric against the swept params; the run list folded away so the charts take the page."""
    state = {
        "searchFilter": f"{sweep_filter(sweep)} AND tags.`simtune.role` = 'trial'",
        "orderByKey": metric_column(metric), "orderByAsc": False,
        "selectedColumns": [*(param_column(k) for k in swept), metric_column(metric)],
        "runsHiddenMode": "SHOW_ALL", "useGroupedValuesInCharts": False, "hideEmptyCharts": True,
        "runListHidden": True, **chart_state(swept, metric, "every trial"),
    }
    return TAG_VIEW_PREFIX + trials_view_key(sweep), json.dumps(state, ensure_ascii=False)


def chart_state(swept: Sequence[str], metric: str, what: str) -> dict[str, Any]:
    """The views' charts, in a section of their own listed before MLflow's per-metric charts:
    ``metric`` against each swept param, parallel coordinates, and a contour for two params."""
    symbols = " and ".join(short_name(k) for k in swept) or "the swept params"

    def card(kind: str, name: str, **axes: Any) -> dict[str, Any]:
        return {"uuid": f"{SECTION}-{name}", "type": kind, "metricSectionId": SECTION, "runsCountToCompare": 1000,
                "deleted": False, "isGenerated": False, **axes}

    cards = [card("SCATTER", f"scatter-{key}", displayName=f"{metric} vs {short_name(key)} ({key})",
                  xaxis={"key": key, "type": "PARAM"}, yaxis={"key": metric, "type": "METRIC"}) for key in swept]
    if len(swept) == 2:
        cards.append(card("CONTOUR", "contour", displayName=f"{metric} over {symbols}",
                          xaxis={"key": swept[0], "type": "PARAM"}, yaxis={"key": swept[1], "type": "PARAM"},
                          zaxis={"key": metric, "type": "METRIC"}))
    cards.append(card("PARALLEL", "parallel", displayName=f"{symbols} → {metric}", selectedParams=list(swept),
                      selectedMetrics=[metric], showAllRuns=True))
    section = {"uuid": SECTION, "name": f"{metric} by {symbols} ({what})", "display": True, "isReordered": True,
               "deleted": False, "isGenerated": False}
    return {"compareRunCharts": cards, "compareRunSections": [section], "isAccordionReordered": True}
