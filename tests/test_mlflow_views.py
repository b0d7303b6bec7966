"""The saved views a sweep's links open: what they hold, that a real SQLite store's search runs
their filters, and that the installed MLflow UI still reads every name they use (its shared view
state is not documented, so an MLflow that renames one must fail here, not silently open a
default page). The real-browser check is ``scripts/mlflow_screenshot.py`` (docs/mlflow.md)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from simtune.tracking import naming, views
from simtune.tracking.experiments import ensure_experiment, set_sweep_view
from simtune.tracking.naming.tags import TAG_PARENT, TAG_ROLE, TAG_SWEEP
from simtune.tracking.store import connect, log_metrics, log_params

SWEPT = ["stage1.lambda_ci", "stage1.bank_size"]
TABLE_WIDTH_PX = 937  # the runs table beside MLflow's Assistant panel in a 1600 px window (3.17.2, measured)


def ui_code() -> str:
    """Every script of the installed MLflow UI."""
    import mlflow

    folder = Path(mlflow.__file__).parent / "server" / "js" / "build" / "static" / "js"
    return "\n".join(path.read_text(errors="replace") for path in sorted(folder.glob("*.js")))


def js_list(code: str, first: str, second: str) -> list[str]:
    """The JS array literal of strings that starts with ``"first","second"``."""
    found = re.search(rf'\["{first}","{second}"(?:,"[A-Za-z]+")*\]', code)
    assert found, f"MLflow's UI has no list starting {first}, {second}"
    return list(json.loads(found.group(0)))


def test_the_installed_ui_reads_every_name_the_views_use() -> None:
    code = ui_code()
    missing = [name for name in views.UI_CONTRACT if name not in code]
    assert not missing, f"MLflow's UI no longer mentions {missing}"
    # What a shared view may set: the search facets and the page state the Share button copies.
    facets = js_list(code, "searchFilter", "orderByKey")
    shared = js_list(code, "selectedColumns", "columnOrder")
    private = js_list(code, "runsExpanded", "runsPinned")  # kept out of a shared view
    for state in (views.configurations_view("s", SWEPT)[1], views.trials_view("s", SWEPT)[1]):
        for key in json.loads(state):
            assert key in facets or (key in shared and key not in private), f"a shared view cannot set {key}"
    assert '"mlflow.sharedViewState."' in code and '"viewStateShareKey"' in code and '"compareRunsMode"' in code
    for literal in ('SCATTER="SCATTER"', 'CONTOUR="CONTOUR"', 'PARALLEL="PARALLEL"', 'SHOWALL="SHOW_ALL"',
                    'e.Param="param"', 'e.Average="average"', 'field:"runDateAndNestInfo"', 'ATTRIBUTES,"Run Name")',
                    '?"METRIC":"PARAM"'):
        assert literal in code, literal
    # A Group by row's id is "<mode>.<key>.<value>", joined by commas over the keys; an id set to
    # false in groupsExpanded folds that row (unset = unfolded).
    assert re.search(r"\(\{groupByData:(\w),mode:(\w),value:(\w)\}\)=>`\$\{\2\}\.\$\{\1\}\.\$\{\3\|\|null\}`", code)
    assert re.search(r'groupingValues\.map\(\w+\)\.join\(","\)', code)
    assert re.search(r"\(0,\w+\.isUndefined\)\((\w)\[(\w)\]\)\|\|!0===\1\[\2\]", code)


def test_configurations_view_is_one_folded_row_per_configuration_params_first() -> None:
    configs = [{"stage1.lambda_ci": a, "stage1.bank_size": w} for a in (0.001, 0.01) for w in (50, 200)]
    key, value = views.configurations_view("lambda_w-1 x", SWEPT, configs=configs)
    assert key == "mlflow.sharedViewState.lambda_w-1_x"  # what MLflow's Share button writes
    view = json.loads(value)
    assert view["groupBy"] == {"aggregateFunction": "average", "groupByKeys": [
        {"mode": "param", "groupByData": "stage1.lambda_ci"}, {"mode": "param", "groupByData": "stage1.bank_size"}]}
    assert view["groupsExpanded"]["param.stage1.lambda_ci.0.01,param.stage1.bank_size.200"] is False
    assert len(view["groupsExpanded"]) == 4
    assert view["columnOrder"] == ["attributes.`Run Name`", "runDateAndNestInfo", "params.`stage1.lambda_ci`",
                                   "params.`stage1.bank_size`", "metrics.`config/val/miou_mean`",
                                   "metrics.`config/val/miou_std`", "metrics.`config/n_seeds`", "metrics.`val/miou`"]
    assert view["orderByKey"] == "metrics.`config/val/miou_mean`" and view["orderByAsc"] is False
    shown = [c for c in view["columnOrder"] if c != "metrics.`val/miou`"]
    assert sum(view["columnWidths"][c] for c in shown) + 40 <= TABLE_WIDTH_PX  # + the tick-box column
    assert view["runsHiddenMode"] == "SHOW_ALL"
    single = json.loads(views.configurations_view("s", SWEPT, replicated=False)[1])
    assert single["orderByKey"] == "metrics.`val/miou`" and "metrics.`config/n_seeds`" not in single["columnOrder"]


def test_trials_view_charts_every_trial_against_each_swept_param() -> None:
    key, value = views.trials_view("demo", SWEPT)
    view = json.loads(value)
    assert key == "mlflow.sharedViewState.demo-trials" and view["runsHiddenMode"] == "SHOW_ALL"
    assert view["useGroupedValuesInCharts"] is False and "groupBy" not in view
    charts = {c["type"]: c for c in view["compareRunCharts"]}
    scatter = [c for c in view["compareRunCharts"] if c["type"] == "SCATTER"]
    assert [(c["xaxis"], c["yaxis"]) for c in scatter] == [
        ({"key": k, "type": "PARAM"}, {"key": "val/miou", "type": "METRIC"}) for k in SWEPT]
    assert charts["CONTOUR"]["zaxis"] == {"key": "val/miou", "type": "METRIC"}
    assert charts["PARALLEL"]["selectedParams"] == SWEPT and charts["PARALLEL"]["showAllRuns"] is True
    assert {c["metricSectionId"] for c in view["compareRunCharts"]} == {s["uuid"] for s in view["compareRunSections"]}
    assert "CONTOUR" not in {c["type"] for c in json.loads(views.trials_view("d", SWEPT[:1])[1])["compareRunCharts"]}
    url = naming.ui_url("sqlite:////s/mlflow.db", "3", sweep="demo", charts=True)
    assert url.endswith("/#/experiments/3/runs?workflowType=machine_learning&viewStateShareKey=demo-trials"
                        "&compareRunsMode=CHART")


def make_run(client: Any, experiment_id: str, role: str, params: dict[str, Any], metrics: dict[str, float],
             sweep: str = "demo", parent: str | None = None) -> Any:
    tags = {TAG_ROLE: role, TAG_SWEEP: sweep, **({TAG_PARENT: parent} if parent else {})}
    run = client.create_run(experiment_id, tags=tags)
    log_params(client, run.info.run_id, params)
    log_metrics(client, run.info.run_id, [(k, v, 0) for k, v in metrics.items()])
    return run


def test_a_real_store_answers_the_views_searches_with_the_runs_they_promise(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = connect(uri)
    experiment_id = ensure_experiment(client, "lambda_w", uri)
    values = {"stage1.lambda_ci": 0.01, "stage1.bank_size": 200}
    parent = make_run(client, experiment_id, "sweep", dict.fromkeys(SWEPT, "grid [0.01]"), {}).info.run_id
    trials = [make_run(client, experiment_id, "trial", {**values, "seed": s}, {"val/miou": 40.0 + s}, parent=parent)
              for s in (0, 1)]
    config = make_run(client, experiment_id, "configuration", values, {"config/val/miou_mean": 40.5}, parent=parent)
    make_run(client, experiment_id, "retrain", values, {"confirm/val/miou_mean": 39.0})
    make_run(client, experiment_id, "retrain_seed", {**values, "seed": 2}, {"val/miou": 39.0})
    make_run(client, experiment_id, "trial", values, {"val/miou": 1.0}, sweep="another")
    set_sweep_view(client, experiment_id, "demo", SWEPT, configs=[values])
    tags = client.get_experiment(experiment_id).tags
    table = json.loads(tags["mlflow.sharedViewState.demo"])
    order = f"{table['orderByKey']} {'ASC' if table['orderByAsc'] else 'DESC'}"
    found = client.search_runs([experiment_id], table["searchFilter"], order_by=[order])
    assert [r.info.run_id for r in found][0] == config.info.run_id  # the configuration's mean ranks its group
    assert sorted(r.info.run_id for r in found) == sorted([config.info.run_id, *(t.info.run_id for t in trials)])
    for run in found:  # every one of them lands in the configuration's folded group
        assert ",".join(f"param.{k}.{run.data.params[k]}" for k in SWEPT) in table["groupsExpanded"]
    charted = json.loads(tags["mlflow.sharedViewState.demo-trials"])
    assert sorted(r.info.run_id for r in client.search_runs([experiment_id], charted["searchFilter"])) == sorted(
        t.info.run_id for t in trials)


@pytest.mark.parametrize("text", ["@champion is the latest", "alias champion_2 *best* [x](y) <b>"])
def test_free_text_in_descriptions_renders_as_itself(text: str) -> None:
    escaped = naming.plain(text)
    assert all(backslash for _, backslash, _, _ in naming.GH_MENTION.findall(escaped))  # no GitHub @mention link
    assert re.sub(r"\\(.)", r"\1", escaped) == text  # markdown's backslash escapes give the text back
    note = naming.description("Retrain of sweep a_b", [escaped], ["[sweep](#/a)", "[model](#/b)"])
    assert note.splitlines()[-2:] == ["- [sweep](#/a)", "- [model](#/b)"]  # one link a line
