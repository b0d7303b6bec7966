"""MLflow tracking of sweeps: opening the store, the parent run, the Tune callback, resume, REST.

The callback tests drive it with real Ray Tune runs of a trivial trainable that writes a
run directory (config.yaml, history.json) and reports through ``tune.report``, so they
exercise Tune's own event loop, pickling and restore without training a network.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import mlflow_ui
from simtune import config, schema
from simtune.rundir import write_config
from simtune.cli import main
from simtune.errors import TrackingError
from simtune.search.parse import load_space
from simtune.tracking.sweep import SweepTracker
from simtune.sweep.mlflow_callback import trial_loggers
from simtune.results.summary import Summary
from simtune.results.sweepdir import resolve_sweep_dir
from simtune.testing import SYNTHETIC_EXPERIMENT, free_port, tiny_overrides
from simtune.tracking.naming import command_name
from simtune.tracking.experiments import ensure_experiment
from simtune.tracking.store import (connect, default_tracking_uri, log_json_artifact, search,
                                    sqlite_path)
from simtune.tracking.system_metrics import start_system_metrics

SPACE = "base: {base}\nparams:\n  stage1.lambda_ci: {{grid: [0.001, 0.01]}}\n"


def space_file(tmp_path: Path, stem: str = "space", base: Path | None = None) -> Path:
    if base is None:
        base = tmp_path / "base.yaml"
        base.write_text("stage1: {iters: 10}\n")
    path = tmp_path / f"{stem}.yaml"
    path.write_text(SPACE.format(base=base))
    return path


def open_tracker(tmp_path: Path, *, resume: bool = False, uri: str | None = None, name: str = "demo",
                 space: str = "space", **kwargs: Any) -> SweepTracker:
    loaded = load_space(space_file(tmp_path, space))
    return SweepTracker.open(tracking_uri=uri, storage=tmp_path / "sweeps", sweep_name=name,
                             space_file=loaded.file, space=loaded, base_config=loaded.base_config,
                             resume=resume, **kwargs)


# ----------------------------------------------------------------------------- opening the store


def test_default_store_is_one_absolute_sqlite_file_for_the_folder_of_sweeps(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    uri = default_tracking_uri(Path("sweeps"))
    assert uri == f"sqlite:///{tmp_path}/sweeps/mlflow.db"
    assert sqlite_path(uri).is_absolute()  # type: ignore[union-attr]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///rel/x.db")
    assert default_tracking_uri(Path("sweeps")) == f"sqlite:///{tmp_path}/rel/x.db"


def test_sweeps_of_two_spaces_share_the_store_each_under_its_own_experiment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    first = open_tracker(tmp_path, name="a-1", space="lambda_w")
    second = open_tracker(tmp_path, name="b-1", space="thresholds")
    third = open_tracker(tmp_path, name="a-2", space="lambda_w")
    assert first.tracking_uri == second.tracking_uri == f"sqlite:///{tmp_path}/sweeps/mlflow.db"
    names = {e.name: e.experiment_id for e in first.client.search_experiments()}
    assert {"lambda_w", "thresholds"} <= set(names)
    assert (first.experiment_id, second.experiment_id) == (names["lambda_w"], names["thresholds"])
    assert third.experiment_id == first.experiment_id  # sweeps of one space compare in one experiment
    assert (tmp_path / "sweeps" / "mlartifacts" / "lambda_w").is_dir()


def test_storage_may_be_the_folder_of_sweeps_or_the_sweep_folder(tmp_path: Path) -> None:
    assert resolve_sweep_dir(tmp_path / "sweeps", "demo") == tmp_path / "sweeps" / "demo"
    sweep = tmp_path / "sweeps" / "demo"
    sweep.mkdir(parents=True)
    (sweep / "sweep.json").write_text("{}")
    assert resolve_sweep_dir(sweep, "demo") == sweep


def test_unreachable_server_fails_fast_with_one_line(tmp_path: Path) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    start = time.perf_counter()
    with pytest.raises(TrackingError) as info:
        open_tracker(tmp_path, uri=uri)
    assert time.perf_counter() - start < 5
    message = str(info.value)
    assert uri in message and "unreachable" in message and "\n" not in message


def test_unwritable_sqlite_store_fails_with_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the database folder should be")
    uri = f"sqlite:///{blocker}/mlflow.db"
    with pytest.raises(TrackingError) as info:
        open_tracker(tmp_path, uri=uri)
    assert uri in str(info.value) and "not writable" in str(info.value) and "\n" not in str(info.value)


def test_file_store_and_bad_policy_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(TrackingError, match="deprecated file store"):
        open_tracker(tmp_path, uri=f"file://{tmp_path}/mlruns")
    with pytest.raises(TrackingError, match="checkpoint_policy must be one of"):
        open_tracker(tmp_path, checkpoint_policy="every")


def test_cli_sweep_with_unreachable_store_exits_2_before_any_trial(tmp_path: Path, tiny_bench: tuple[Path, Path],
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("simtune.commands.sweep")
    uri = f"http://127.0.0.1:{free_port()}"
    start = time.perf_counter()
    overrides = [arg for item in tiny_overrides(*tiny_bench) for arg in ("--set", item)]
    code = main(["sweep", str(space_file(tmp_path, base=SYNTHETIC_EXPERIMENT)), "--name", "down",
                 "--storage", str(tmp_path / "sweeps"), "--tracking-uri", uri, *overrides])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and uri in err and err.startswith("simtune sweep: error:")
    assert not (tmp_path / "sweeps" / "down" / "runs").exists()  # no trial started
    assert time.perf_counter() - start < 15


def test_parent_run_is_recorded_once_and_found_again_on_resume(tmp_path: Path) -> None:
    first = open_tracker(tmp_path)
    again = open_tracker(tmp_path, resume=True)
    assert again.parent_run_id == first.parent_run_id
    parents = search(first.client, first.experiment_id, {"simtune.role": "sweep"})
    assert len(parents) == 1
    run = parents[0]
    assert run.info.run_name == "demo" and run.data.tags["simtune.sweep"] == "demo"
    # Params: the search space and the base's fixed changes; no base value of a swept key.
    assert run.data.params["stage1.lambda_ci"] == "grid [0.001, 0.01]"
    assert run.data.params["stage1.iters"] == "10" and run.data.params["sweep.search"] == "grid"
    assert "stage1.bank_size" not in run.data.params and "data.source.size" not in run.data.params
    assert run.data.tags["simtune.git_revision"] and run.data.tags["simtune.version.mlflow"]
    # In-process (pytest, or a pytest-xdist worker's ``python -c``) the Source is this program's name.
    assert run.data.tags["mlflow.user"] and run.data.tags["simtune.command"]
    assert run.data.tags["mlflow.source.name"] == command_name(run.data.tags["simtune.command"])
    assert "Sweep demo" in run.data.tags["mlflow.note.content"] and "`stage1.lambda_ci`" in run.data.tags[
        "mlflow.note.content"]
    artifacts = {a.path for a in first.client.list_artifacts(run.info.run_id, "sweep")}
    assert artifacts >= {"sweep/space.yaml", "sweep/base_config.yaml", "sweep/provenance.json"}
    assert first.tracking_uri == f"sqlite:///{tmp_path}/sweeps/mlflow.db"
    assert (tmp_path / "sweeps" / "mlartifacts" / "space").is_dir()  # artifacts beside the database
    for tracker in (first, again):
        tracker.monitor.finish()


def small_store(storage: Path) -> tuple[str, str, str]:
    """A store made by simtune's functions: a finished run with ``sweep/summary.json`` and a
    ``segmenter/`` folder registered as a version of ``simtune-space``; (uri, run id, version)."""
    uri = f"sqlite:///{storage}/mlflow.db"
    client = connect(uri)
    run_id = client.create_run(ensure_experiment(client, "space", uri)).info.run_id
    log_json_artifact(client, run_id, {"moved": False}, "summary.json", "sweep")
    model = storage.parent / "model"
    model.mkdir()
    (model / "weights.txt").write_text("weights")
    client.log_artifacts(run_id, str(model), "segmenter")
    client.create_registered_model("simtune-space")  # a model version of plain files, no logged model
    version = client.create_model_version("simtune-space", f"runs:/{run_id}/segmenter", run_id=run_id).version
    client.set_terminated(run_id)
    return uri, run_id, str(version)


def test_a_moved_or_copied_storage_folder_is_refused_until_its_old_path_leads_to_it(tmp_path: Path) -> None:
    _, run_id, _ = small_store(tmp_path / "sweeps")
    old, new = tmp_path / "sweeps", tmp_path / "elsewhere"
    old.rename(new)
    uri = f"sqlite:///{new}/mlflow.db"
    with pytest.raises(TrackingError) as moved:
        connect(uri)  # every simtune command connects like this, before Ray starts
    message = str(moved.value)
    assert f"was moved from {old}:" in message and f"(ln -s {new} {old})" in message and "\n" not in message
    shutil.copytree(new, old)  # the original is back, so `elsewhere` is a copy whose artifacts live there
    with pytest.raises(TrackingError, match=f"is a copy of {old}: .* open the original instead"):
        connect(uri)
    shutil.rmtree(old)
    old.symlink_to(new)
    client = connect(uri)
    summary = client.download_artifacts(run_id, "sweep/summary.json", str(tmp_path))
    assert json.loads(Path(summary).read_text()) == {"moved": False}


@pytest.mark.slow
def test_mlflow_ui_serves_a_moved_folders_artifacts_and_model_files_once_its_old_path_links_to_it(
        tmp_path: Path) -> None:
    import requests

    _, run_id, version = small_store(tmp_path / "sweeps")
    old, new = tmp_path / "sweeps", tmp_path / "elsewhere"
    old.rename(new)
    uri = f"sqlite:///{new}/mlflow.db"

    def fetch(url: str) -> tuple[Any, Any, Any]:
        artifact = requests.get(f"{url}/get-artifact", params={"path": "sweep/summary.json", "run_uuid": run_id},
                                timeout=10)
        listing = requests.get(f"{url}/ajax-api/2.0/mlflow/artifacts/list",
                               params={"run_id": run_id, "path": "segmenter"}, timeout=10)
        model_file = requests.get(f"{url}/model-versions/get-artifact", timeout=10,
                                  params={"path": "weights.txt", "name": "simtune-space", "version": version})
        return artifact, listing, model_file

    with mlflow_ui(uri) as url:  # the line simtune prints, for the folder where the store is now
        artifact, listing, model_file = fetch(url)
        assert (artifact.status_code, model_file.status_code) == (404, 404)  # looked for under the old path
        assert "files" not in listing.json()
        old.symlink_to(new)
        (new / "mlartifacts" / "space" / run_id / "artifacts" / "segmenter" / "weights.txt").write_text("new place")
        connect(uri)
        artifact, listing, model_file = fetch(url)
    assert artifact.status_code == 200 and artifact.json() == {"moved": False}
    assert [f["path"] for f in listing.json()["files"]] == ["segmenter/weights.txt"]
    assert (model_file.status_code, model_file.text) == (200, "new place")  # the file in the new folder


def test_system_metrics_sample_the_run_without_leaving_an_active_run(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The sampler runs through ``mlflow.start_run(log_system_metrics=True)`` in a thread of its own."""
    import mlflow

    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.5")  # MLflow's own setting, 10 s by default
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path}/sweeps/mlflow.db"
    client = connect(uri)
    experiment = ensure_experiment(client, "space", uri)
    run_id, other = (client.create_run(experiment).info.run_id for _ in range(2))
    monitor = start_system_metrics(uri, run_id)
    assert monitor is not None
    assert mlflow.active_run() is None and "MLFLOW_TRACKING_URI" not in os.environ  # callers log by run id
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(run_id=other):  # what logging the model does during a retrain
        mlflow.log_param("seed", 0)
    time.sleep(1.5)
    monitor.finish()
    run = client.get_run(run_id)
    assert "system/cpu_utilization_percentage" in run.data.metrics
    assert run.info.status == "RUNNING"  # simtune ends its runs itself
    assert mlflow.active_run() is None


def test_evaluations_that_never_reached_the_driver_are_filled_in_from_the_run_dir(tmp_path: Path) -> None:
    from types import SimpleNamespace

    tracker = open_tracker(tmp_path)
    (logger,) = trial_loggers(tracker)
    run_dir = tracker.sweep_dir / "runs" / "t1"
    (run_dir / "stage1").mkdir(parents=True)
    write_config(schema.Config(), run_dir / "config.yaml")
    history = [{"step": s, "val/miou": float(s), "iteration": float(s)} for s in (2, 4, 6)]
    (run_dir / "stage1" / "history.json").write_text(json.dumps(history))
    trial = SimpleNamespace(trial_id="t1", config={"stage1.lambda_ci": 0.01}, error_file=None)
    logger.on_trial_result(0, [], trial, {"iteration": 4, "val/miou": 4.0, "stage": 1, "training_iteration": 1})
    logger.on_trial_result(0, [], trial, {"iteration": 4, "val/miou": 4.0, "stage": 1, "training_iteration": 2})
    logger.on_trial_complete(0, [], trial)
    assert logger.write_errors == 0
    (run,) = search(tracker.client, tracker.experiment_id, {"simtune.trial_id": "t1"})
    steps = sorted(m.step for m in tracker.client.get_metric_history(run.info.run_id, "val/miou"))
    assert steps == [2, 4, 6]  # 2 and 6 from history.json, 4 once
    assert run.data.tags["simtune.stopped_early"] == "true"  # no results.json: a scheduler stopped it


def test_trial_logger_restored_by_tune_follows_the_resumed_drivers_store(tmp_path: Path) -> None:
    """Tune hands a resumed sweep the callbacks it pickled; ``setup`` points them at this driver's run."""
    import pickle
    from types import SimpleNamespace

    first = open_tracker(tmp_path)
    (logger,) = trial_loggers(first)
    restored = pickle.loads(pickle.dumps(logger))
    other = f"sqlite:///{tmp_path}/elsewhere/mlflow.db"
    resumed = open_tracker(tmp_path, resume=True, uri=other)
    assert resumed.parent_run_id != first.parent_run_id  # a new store: a new parent run there
    restored.setup(total_num_samples=1)
    assert (restored.tracking_uri, restored.parent_run_id) == (other, resumed.parent_run_id)
    trial = SimpleNamespace(trial_id="t1", config={"stage1.lambda_ci": 0.01}, error_file=None)
    restored.on_trial_result(0, [], trial, {"iteration": 2, "val/miou": 1.0, "stage": 1})
    assert restored.write_errors == 0
    assert len(search(resumed.client, resumed.experiment_id, {"simtune.trial_id": "t1"})) == 1
    assert not search(first.client, first.experiment_id, {"simtune.trial_id": "t1"})


# ----------------------------------------------------------------------------- Tune runs of a trivial trainable


def fake_trial(params: dict[str, Any], runs_dir: str, reports: int = 5, pause_s: float = 0.0) -> None:
    """Writes a run dir like ``run_pipeline`` and reports one evaluation per step of 2 iterations.

    ``lambda_ci`` 0.01 fails at its third evaluation, unless ``<runs>/.heal`` exists.
    """
    from ray import tune

    trial_id = tune.get_context().get_trial_id()
    run_dir = Path(runs_dir) / trial_id
    (run_dir / "stage1").mkdir(parents=True, exist_ok=True)
    cfg = config.build({"stage1": {"lambda_ci": params["stage1.lambda_ci"]}})
    write_config(cfg, run_dir / "config.yaml")
    history = []
    for i in range(1, reports + 1):
        record = {"step": 2 * i, "val/miou": 100 * params["stage1.lambda_ci"] * i, "report/miou": float(i),
                  "val/iou/road": 50.0 + i, "report/iou/car": 10.0 + i, "iteration": float(2 * i)}
        history.append(record)
        (run_dir / "stage1" / "history.json").write_text(json.dumps(history))
        if params["stage1.lambda_ci"] == 0.01 and i == 3 and not (Path(runs_dir) / ".heal").exists():
            raise RuntimeError("boom at the third evaluation")
        tune.report({**{k: v for k, v in record.items() if k != "step"}, "stage": 1, "loss/seg_src": 1.0 / i})
        time.sleep(pause_s)
    (run_dir / "results.json").write_text(json.dumps({"stages": {"stage1": history[-1]}}))


@pytest.fixture(scope="module")
def ray_session(ray_head: str) -> Any:
    """This process as a driver of the session's Ray head (2 CPUs; fake trials take a quarter each)."""
    ray = pytest.importorskip("ray")
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import test modules
    ray.init(address=ray_head, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def run_tune(tracker: SweepTracker, values: list[float], *, reports: int = 5, concurrent: int = 2,
             pause_s: float = 0.0) -> Any:
    from ray import tune

    trainable = tune.with_resources(tune.with_parameters(
        fake_trial, runs_dir=str(tracker.sweep_dir / "runs"), reports=reports, pause_s=pause_s), {"cpu": 0.25})
    tuner = tune.Tuner(trainable, param_space={"stage1.lambda_ci": tune.grid_search(values)},
                       tune_config=tune.TuneConfig(max_concurrent_trials=concurrent),
                       run_config=tune.RunConfig(name="tune", storage_path=str(tracker.sweep_dir),
                                                 callbacks=trial_loggers(tracker), verbose=0))
    return tuner.fit()


@pytest.fixture(scope="module")
def finished(ray_session: Any, tmp_path_factory: pytest.TempPathFactory) -> SweepTracker:
    """A finished two-trial sweep: lambda_ci 0.001 finishes, 0.01 fails."""
    tmp = tmp_path_factory.mktemp("finished")
    tracker = open_tracker(tmp)
    run_tune(tracker, [0.001, 0.01])
    tracker.finish(Summary.empty(tracker.sweep_dir))
    return tracker


def children(tracker: SweepTracker) -> dict[str, Any]:
    runs = search(tracker.client, tracker.experiment_id, {"mlflow.parentRunId": tracker.parent_run_id})
    return {r.data.params["stage1.lambda_ci"]: r for r in runs}


@pytest.mark.slow
def test_each_trial_is_a_child_run_with_params_metric_history_and_artifacts(finished: SweepTracker) -> None:
    client, runs = finished.client, children(finished)
    assert set(runs) == {"0.001", "0.01"}
    ok, bad = runs["0.001"], runs["0.01"]
    trial_id = ok.data.tags["simtune.trial_id"]
    assert ok.info.run_name == f"λ_ci=0.001 · {trial_id.rsplit('_', 1)[-1]}"  # what it tried, which trial
    assert ok.data.params["stage1.bank_size"] == "50"  # the full resolved config, not just the sampled key
    note = ok.data.tags["mlflow.note.content"]
    assert "`stage1.lambda_ci`: 0.01 → 0.001" in note
    assert f"runs/{finished.parent_run_id}?workflowType=machine_learning)" in note
    assert ok.data.tags["mlflow.user"] and ok.data.tags["mlflow.source.name"]
    history = client.get_metric_history(ok.info.run_id, "val/miou")
    assert [m.step for m in history] == [2, 4, 6, 8, 10]  # step = the reported global iteration
    assert [m.value for m in history] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    assert {"val/iou/road", "report/iou/car", "stage", "loss/seg_src"} <= set(ok.data.metrics)
    assert not {"iteration", "training_iteration", "time_total_s"} & set(ok.data.metrics)  # the step is the iteration
    assert (ok.info.status, bad.info.status) == ("FINISHED", "FAILED")
    assert ok.data.tags["simtune.stopped_early"] == "false"  # its run dir has results.json
    assert "boom at the third evaluation" in bad.data.tags["simtune.failure_reason"]
    # Reported at 2 and 4; the evaluation at 6 reached history.json before the crash and is filled in.
    assert [m.step for m in client.get_metric_history(bad.info.run_id, "val/miou")] == [2, 4, 6]
    paths = {a.path for folder in ("run", "figures", "history/stage1")
             for a in client.list_artifacts(ok.info.run_id, folder)}
    assert {"run/config.yaml", "figures/miou_curve.png", "figures/class_iou.png",
            "history/stage1/history.json"} <= paths


@pytest.mark.slow
def test_finish_records_best_trial_and_failures_on_the_parent(finished: SweepTracker) -> None:
    parent = finished.client.get_run(finished.parent_run_id)
    runs = children(finished)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["trials/failed"] == 1 and parent.data.metrics["trials/finished"] == 1
    assert parent.data.tags["simtune.best_trial_id"] == runs["0.001"].data.tags["simtune.trial_id"]
    assert parent.data.tags["simtune.failed_trials"] == runs["0.01"].data.tags["simtune.trial_id"]
    assert "sweep/summary.json" in {a.path for a in finished.client.list_artifacts(finished.parent_run_id, "sweep")}
    best = runs["0.001"]
    assert f"[{best.info.run_name}](#/experiments/{finished.experiment_id}/runs/{best.info.run_id}?workflowType=" in \
        parent.data.tags["mlflow.note.content"]


@pytest.mark.slow
def test_eight_concurrent_trials_log_without_database_locks(ray_session: Any, tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture,
                                                            capfd: pytest.CaptureFixture[str]) -> None:
    tracker = open_tracker(tmp_path)
    (tracker.sweep_dir / "runs").mkdir(parents=True)
    (tracker.sweep_dir / "runs" / ".heal").write_text("")  # no failures here
    values = [0.001 * (i + 1) for i in range(8)]
    with caplog.at_level("WARNING"):
        run_tune(tracker, values, reports=40, concurrent=8, pause_s=0.15)
    out = capfd.readouterr()
    logs = out.out + out.err + caplog.text
    assert logs.count("database is locked") == 0 and "simtune tracking: could not log" not in logs
    runs = search(tracker.client, tracker.experiment_id, {"mlflow.parentRunId": tracker.parent_run_id})
    assert len(runs) == 8 and all(r.info.status == "FINISHED" for r in runs)
    assert max(r.info.start_time for r in runs) < min(r.info.end_time for r in runs)  # all 8 ran at once
    for run in runs:
        assert len(tracker.client.get_metric_history(run.info.run_id, "val/miou")) == 40


@pytest.mark.slow
def test_resumed_sweep_reuses_parent_and_children_without_duplicate_points(ray_session: Any, tmp_path: Path) -> None:
    from ray import tune

    tracker = open_tracker(tmp_path)
    run_tune(tracker, [0.001, 0.01])
    (tracker.sweep_dir / "runs" / ".heal").write_text("")
    resumed = open_tracker(tmp_path, resume=True)
    assert resumed.parent_run_id == tracker.parent_run_id
    trainable = tune.with_resources(
        tune.with_parameters(fake_trial, runs_dir=str(tracker.sweep_dir / "runs"), reports=5), {"cpu": 1})
    # The callbacks come back from Tune's pickled experiment, without their MLflow client.
    tune.Tuner.restore(str(tracker.sweep_dir / "tune"), trainable, resume_errored=True).fit()
    resumed.finish(Summary.empty(resumed.sweep_dir))
    runs = search(tracker.client, tracker.experiment_id, {"mlflow.parentRunId": tracker.parent_run_id})
    assert len(runs) == 2
    assert len(search(tracker.client, tracker.experiment_id, {"simtune.role": "sweep"})) == 1
    healed = next(r for r in runs if r.data.params["stage1.lambda_ci"] == "0.01")
    assert healed.info.status == "FINISHED"
    steps = [m.step for m in tracker.client.get_metric_history(healed.info.run_id, "val/miou")]
    assert steps == [2, 4, 6, 8, 10]  # the replayed evaluations at 2 and 4 were not logged twice


# One sweep's driver, without Ray's scheduler: it opens its tracker, feeds its Tune callback 30
# evaluations of 4 trials and finishes. Two of these start together on a store that does not exist yet.
DRIVER = """
import sys, time
from pathlib import Path
from types import SimpleNamespace
from simtune.search.parse import load_space
from simtune.sweep.mlflow_callback import trial_loggers
from simtune.tracking.sweep import SweepTracker
tmp, name, start_at = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
space = load_space(tmp / f"{name}.yaml")
while time.time() < start_at:
    time.sleep(0.01)
tracker = SweepTracker.open(tracking_uri=None, storage=tmp / "sweeps", sweep_name=f"{name}-1", space_file=space.file,
                            space=space, base_config=space.base_config, resume=False)
(logger,) = trial_loggers(tracker)
trials = [SimpleNamespace(trial_id=f"{name}_{i:05d}", config={"stage1.lambda_ci": 0.001 * (i + 1)}, error_file=None)
          for i in range(4)]
for step in range(1, 31):
    for trial in trials:
        logger.on_trial_result(0, [], trial, {"iteration": step, "val/miou": step / 10, "stage": 1})
for trial in trials:
    logger.on_trial_complete(0, [], trial)
from simtune.results.summary import Summary
tracker.finish(Summary.empty(tracker.sweep_dir))
print("write errors:", logger.write_errors)
"""


@pytest.mark.slow
def test_two_sweeps_write_one_new_sqlite_store_at_once_without_lock_errors(tmp_path: Path) -> None:
    for name in ("lambda_w", "thresholds"):
        space_file(tmp_path, name)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    start_at = time.time() + 15  # both import Ray and MLflow first, then meet the empty folder together
    procs = [subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path), name, str(start_at)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for name in ("lambda_w", "thresholds")]
    outputs = [proc.communicate(timeout=600)[0] for proc in procs]
    for proc, out in zip(procs, outputs):
        assert proc.returncode == 0, out[-3000:]
        assert "write errors: 0" in out and "database is locked" not in out and "could not log" not in out
    client = connect(f"sqlite:///{tmp_path}/sweeps/mlflow.db")
    for name in ("lambda_w", "thresholds"):
        experiment = client.get_experiment_by_name(name)
        trials = search(client, experiment.experiment_id, {"simtune.role": "trial"})
        assert len(trials) == 4 and all(r.info.status == "FINISHED" for r in trials)
        assert all(len(client.get_metric_history(r.info.run_id, "val/miou")) == 30 for r in trials)


# ----------------------------------------------------------------------------- a real MLflow server


@pytest.fixture
def mlflow_server(finished: SweepTracker) -> Iterator[str]:
    with mlflow_ui(finished.tracking_uri) as url:
        yield url




@pytest.mark.slow
def test_rest_api_of_a_real_server_shows_parent_children_params_and_histories(finished: SweepTracker,
                                                                             mlflow_server: str) -> None:
    import requests

    api = f"{mlflow_server}/api/2.0/mlflow"
    found = requests.post(f"{api}/runs/search", timeout=10, json={
        "experiment_ids": [finished.experiment_id], "filter": "tags.`simtune.role` = 'sweep'"}).json()["runs"]
    assert [r["info"]["run_id"] for r in found] == [finished.parent_run_id]
    trials = requests.post(f"{api}/runs/search", timeout=10, json={
        "experiment_ids": [finished.experiment_id],
        "filter": f"tags.`mlflow.parentRunId` = '{finished.parent_run_id}'"}).json()["runs"]
    assert len(trials) == 2
    by_value = {next(p["value"] for p in r["data"]["params"] if p["key"] == "stage1.lambda_ci"): r for r in trials}
    assert {r["info"]["status"] for r in trials} == {"FINISHED", "FAILED"}
    ok = by_value["0.001"]["info"]["run_id"]
    history = requests.get(f"{api}/metrics/get-history", timeout=10,
                           params={"run_id": ok, "metric_key": "val/miou"}).json()["metrics"]
    assert sorted(int(m["step"]) for m in history) == [2, 4, 6, 8, 10]
    assert requests.get(f"{api}/metrics/get-history", timeout=10, params={
        "run_id": ok, "metric_key": "val/iou/road"}).json()["metrics"]
