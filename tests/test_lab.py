"""A sweep the size of a lab: one MLflow store wherever a command runs, against a real
``mlflow server`` over HTTP with its own backend and artifact store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import Cluster, mlflow_http_server
from simtune.errors import TrackingError
from simtune.testing import FAULT_ENV, kill_group, simtune, simtune_command, tiny_cfg, write_tiny_space
from simtune.tracking.store import sweep_store
from test_sweep import FULL, attempts, summary_of, sweep_command, tune_results


def test_the_recorded_store_wins_and_another_is_refused(tmp_path: Path) -> None:
    sweep = tmp_path / "sweeps" / "s"
    assert sweep_store(sweep, None) == f"sqlite:///{tmp_path / 'sweeps' / 'mlflow.db'}"  # not started: the default
    sweep.mkdir(parents=True)
    (sweep / "tracking.json").write_text(json.dumps({"tracking_uri": "http://lab:5000"}))
    assert sweep_store(sweep, None) == "http://lab:5000"
    assert sweep_store(sweep, "http://lab:5000") == "http://lab:5000"
    with pytest.raises(TrackingError) as refused:
        sweep_store(sweep, "sqlite:///elsewhere.db")
    assert str(refused.value).startswith("--tracking-uri sqlite:///elsewhere.db: sweep s logs to http://lab:5000")


@pytest.mark.ray_sweep
def test_sweep_retrain_report_all_land_on_the_tracking_server(tmp_path: Path, tiny_bench: tuple[Path, Path]) -> None:
    from mlflow import MlflowClient

    space = write_tiny_space(tmp_path / "space", tiny_bench, {"stage1.lambda_ci": {"grid": [0.001, 0.01]}},
                             resources={"cpus": 1})
    with mlflow_http_server(tmp_path / "server") as url:
        done = simtune("sweep", str(space), "--name", "lab", "--storage", "sweeps", "--tracking-uri", url, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        # Later commands name no store: they log where the sweep started.
        retrain = simtune("retrain", "--best", "--name", "lab", "--seeds", "1", cwd=tmp_path)
        assert retrain.returncode == 0, retrain.stderr[-3000:]
        report = simtune("report", "--name", "lab", cwd=tmp_path)
        assert report.returncode == 0, report.stderr[-3000:]
        wrong = simtune("retrain", "--best", "--name", "lab", "--tracking-uri", f"sqlite:///{tmp_path}/x.db",
                        cwd=tmp_path)
        assert wrong.returncode == 2 and wrong.stderr.strip().startswith(
            f"simtune retrain: error: --tracking-uri sqlite:///{tmp_path}/x.db: sweep lab logs to {url}")

        client = MlflowClient(url, registry_uri=url)
        (experiment,) = [e for e in client.search_experiments() if e.name == "space"]
        roles = [r.data.tags.get("simtune.role") for r in client.search_runs([experiment.experiment_id])]
        assert roles.count("sweep") == 1 and roles.count("trial") == 2 and roles.count("retrain") == 1
        (parent,) = [r for r in client.search_runs([experiment.experiment_id])
                     if r.data.tags.get("simtune.role") == "sweep"]
        assert any(a.path == "report" for a in client.list_artifacts(parent.info.run_id))
        assert client.get_model_version_by_alias("simtune-space", "champion") is not None
    assert not list(tmp_path.rglob("mlflow.db")) and not (tmp_path / "x.db").exists()  # no stray local store


# ----------------------------------------------------------------------------- a node that dies mid-trial


def _worker_node_id(cluster: Cluster) -> str:
    """The NodeID of the cluster's non-head node, as its trials record it (``run.json`` placement)."""
    code = (f"import ray; ray.init(address='{cluster.address}', logging_level='ERROR'); "
            "print([n['NodeID'] for n in ray.nodes() if n['Alive'] and "
            "'node:__internal_head__' not in n['Resources']][0])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=cluster.env)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


def _first_placements(sweep: Path) -> dict[str, dict[str, Any]]:
    """Trial id -> the placement of its first attempt (``attempts.jsonl``)."""
    return {run.name: attempts(sweep, run.name)[0]["placement"] for run in (sweep / "runs").iterdir()
            if attempts(sweep, run.name)}


@pytest.mark.slow
def test_a_worker_node_killed_mid_trial_loses_no_trial(tmp_path: Path, tiny_bench: tuple[Path, Path],
                                                       two_node_cluster: Cluster) -> None:
    """Trials run on both nodes; the trial on the killed node resumes on the head from its last
    checkpoint (iteration 2) and the sweep ends with every configuration and exit code 0."""
    cluster = two_node_cluster
    worker = _worker_node_id(cluster)
    space = write_tiny_space(tmp_path / "space", tiny_bench, {"stage1.lambda_ci": {"grid": [0.001, 0.01]}},
                             replicates=2, resources={"cpus": 1})
    storage = tmp_path / "shared"
    storage.mkdir()
    with open(tmp_path / "driver.log", "w") as log:
        driver = subprocess.Popen(sweep_command(space, storage, "nodes", "--address", cluster.address), cwd=tmp_path,
                                  env={**cluster.env, FAULT_ENV: "pause_once_at=2"}, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        sweep = storage / "nodes"
        deadline = time.monotonic() + 300
        victim = None
        while victim is None:
            assert driver.poll() is None and time.monotonic() < deadline, (tmp_path / "driver.log").read_text()[-3000:]
            paused = [run.name for run in (sweep / "runs").glob("*") if (run / ".fault-paused").is_file()] \
                if (sweep / "runs").is_dir() else []
            placements = _first_placements(sweep) if paused else {}
            victim = next((t for t in paused if placements.get(t, {}).get("node") == worker), None)
            time.sleep(0.5)
        kill_group(cluster.nodes[1])  # kill -9 of the worker node: its raylet and the trial's process
        code = driver.wait(timeout=900)
    assert code == 0, (tmp_path / "driver.log").read_text()[-3000:]
    summary = summary_of(sweep)
    assert summary["counts"]["finished"] == summary["counts"]["total"] == 4
    assert [c["seeds"] for c in summary["configs"]] == [[0, 1], [0, 1]]
    assert {p["node"] for p in _first_placements(sweep).values()} >= {worker}
    assert len({p["node"] for p in _first_placements(sweep).values()}) == 2  # both nodes trained
    tries = attempts(sweep, victim)
    assert len(tries) == 2 and tries[1]["placement"]["node"] != worker
    assert tries[1]["resumed"] is True
    # From its last checkpoint (iteration 2, in the shared run dir), not from scratch: every
    # evaluation was reported once over both attempts, up to the end.
    steps = [r["iteration"] for r in tune_results(sweep, victim) if "iteration" in r]
    assert steps == [2, 4, FULL]


# ----------------------------------------------------------------------------- retrain on Ray


@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory: pytest.TempPathFactory, tiny_bench: tuple[Path, Path], ray_head: str) -> Path:
    """A finished 2-configuration sweep (seed 0) in ``<dir>/sweeps/small``; returns ``<dir>``."""
    folder = tmp_path_factory.mktemp("lab")
    space = write_tiny_space(folder / "space", tiny_bench, {"stage1.lambda_ci": {"grid": [0.001, 0.01]}},
                             resources={"cpus": 1})
    done = simtune("sweep", str(space), "--name", "small", "--storage", "sweeps", cwd=folder)
    assert done.returncode == 0, done.stderr[-3000:]
    return folder


def _seed_dirs(folder: Path) -> list[Path]:
    return sorted((folder / "sweeps" / "small" / "retrain").glob("*/seed*"))


@pytest.mark.ray_sweep
def test_retrain_trains_its_seeds_at_once_on_ray_and_lists_a_failed_seed(small_sweep: Path) -> None:
    """Four seed runs (best and runner-up, fresh seeds 1 and 2) on the 2-CPU head: two at a time;
    seed 2 diverges in both and is listed, seed 1 of both finishes."""
    done = simtune("retrain", "--best", "--name", "small", "--seeds", "2", "--compare-runner-up", cwd=small_sweep,
                   env={**os.environ, FAULT_ENV: "nan_at=2@seed=2"})
    assert done.returncode == 1, done.stderr[-3000:]  # a seed failed: exit code 1, the rest went on
    assert "simtune retrain: seeds: 1 CPU + 0 GPUs per trial, up to 2 at once" in done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("2 of 4 seed runs failed; first: seed 2: ") and "nan" in last
    intervals = []
    for run in _seed_dirs(small_sweep):
        placement = json.loads((run / "run.json").read_text())["placement"]
        end = (run / "results.json").stat().st_mtime if (run / "results.json").is_file() else \
            (run / "failure.json").stat().st_mtime
        intervals.append((placement["start"], end))
    assert len(intervals) == 4
    at_once = max(sum(1 for s, e in intervals if s <= start < e) for start, _ in intervals)
    assert at_once == 2  # parallel, as the resources allow


@pytest.mark.ray_sweep
def test_a_retrain_killed_mid_seed_continues_from_the_checkpoints(small_sweep: Path) -> None:
    command = simtune_command("retrain", "--best", "--name", "small", "--seeds", "1", "--seeds-from", "7")
    with open(small_sweep / "retrain.log", "w") as log:
        driver = subprocess.Popen(command, cwd=small_sweep, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True, env={**os.environ, FAULT_ENV: "pause_once_at=2"})
        deadline = time.monotonic() + 300
        while not any((run / ".fault-paused").is_file() for run in _seed_dirs(small_sweep) if run.name == "seed7"):
            assert driver.poll() is None and time.monotonic() < deadline, (small_sweep / "retrain.log").read_text()
            time.sleep(0.5)
        kill_group(driver)  # kill -9 of the retrain and its Ray workers, mid-seed (after iteration 2)
        driver.wait(timeout=60)
    again = subprocess.run(command, cwd=small_sweep, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    (seed,) = [run for run in _seed_dirs(small_sweep) if run.name == "seed7"]
    tries = [json.loads(line) for line in (seed / "attempts.jsonl").read_text().splitlines()]
    assert len(tries) == 2 and tries[1]["resumed"] is True
    history = [r["step"] for stage in ("stage1", "stage2") if (seed / stage / "history.json").is_file()
               for r in json.loads((seed / stage / "history.json").read_text())]
    assert history == [2, 4, FULL]  # continued from iteration 2, every evaluation once


# ----------------------------------------------------------------------------- a lock held too long


def test_a_run_waiting_for_a_shared_stage_gives_up_naming_the_holder(tmp_path: Path,
                                                                     tiny_bench: tuple[Path, Path]) -> None:
    """Another process holds the stage-1 key's lock (as a trial training it would, or a dead node's
    leftover on NFS): the run waits ``runtime.shared_stage_timeout_h``, then fails with one line
    that names the holder and the lock file; it trained nothing."""
    from simtune.errors import StageWaitTimeout
    from simtune.train.pipeline import run_pipeline
    from simtune.train.stage_cache import stage1_key

    cfg = tiny_cfg(tiny_bench, "runtime.shared_stage_timeout_h=0.0005")
    lock = tmp_path / "stage1_cache" / f"{stage1_key(cfg)}.lock"
    code = (f"import time; from pathlib import Path; from simtune.files import waiting_lock\n"
            f"with waiting_lock(Path({str(lock)!r}), 10):\n    print('held', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(StageWaitTimeout) as info:
            run_pipeline(cfg, tmp_path / "run", stage1_cache=tmp_path / "stage1_cache")
    finally:
        holder.kill()
        holder.wait()
    message = str(info.value)
    assert message.startswith(f"stage1 shared through {lock.with_suffix('')}: waited ")
    assert f"pid {holder.pid} on host" in message and f"delete {lock}" in message and "\n" not in message
    assert not (tmp_path / "run" / "stage1" / "checkpoint.pt").exists()
