"""``simtune ui``: the MLflow UI from simtune's own environment on a folder of sweeps' store, the
links to the newest sweep's saved views, a clean stop on Ctrl-C, and one-line refusals."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from simtune.results.sweepdir import SweepDir
from simtune.rundir import write_json
from conftest import free_port
from simtune.tracking.experiments import ensure_experiment, set_sweep_view
from simtune.tracking.store import connect

SWEPT = ["stage1.lambda_ci", "stage1.bank_size"]


def sweeps_folder(tmp_path: Path) -> Path:
    """A folder of sweeps as ``simtune sweep`` leaves it: one sweep folder and its recorded store,
    a real SQLite MLflow store with the sweep's experiment and saved views."""
    storage = tmp_path / "sweeps"
    sweep = SweepDir(storage / "demo")
    sweep.runs.mkdir(parents=True)
    uri = f"sqlite:///{storage}/mlflow.db"
    client = connect(uri)
    experiment_id = ensure_experiment(client, "lambda_w", uri)
    set_sweep_view(client, experiment_id, "demo", SWEPT, configs=[{"stage1.lambda_ci": 0.01, "stage1.bank_size": 50}])
    write_json(sweep.tracking, {"tracking_uri": uri, "experiment_id": experiment_id, "experiment": "lambda_w",
                                "parent_run_id": "none", "sweep": "demo"})
    return storage


def start(*args: str, cwd: Path) -> tuple[subprocess.Popen[str], queue.Queue[str]]:
    """``simtune ui ...`` in a session of its own (as a terminal runs it); its stdout lines, as they come."""
    proc = subprocess.Popen([sys.executable, "-m", "simtune.cli", "ui", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line.rstrip()) for line in proc.stdout or []], daemon=True).start()
    return proc, lines


def read_until(lines: queue.Queue[str], text: str, timeout: float = 180) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            seen.append(lines.get(timeout=1))
        except queue.Empty:
            continue
        if text in seen[-1]:
            return seen
    raise AssertionError(f"no '{text}' within {timeout:g} s; printed: {seen[-20:]}")


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.slow
def test_ui_serves_the_sweeps_store_prints_the_views_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    sweeps_folder(tmp_path)
    port = free_port()
    proc, lines = start("--port", str(port), cwd=tmp_path)  # --storage defaults to ./sweeps
    try:
        read_until(lines, "Ctrl-C stops it")
        printed = read_until(lines, "every trial, charted:", timeout=10)
        links = [word for line in printed for word in line.split() if word.startswith("http://")]
        assert links[-2:] == [
            f"http://127.0.0.1:{port}/#/experiments/1/runs?workflowType=machine_learning&viewStateShareKey=demo",
            f"http://127.0.0.1:{port}/#/experiments/1/runs?workflowType=machine_learning"
            "&viewStateShareKey=demo-trials&compareRunsMode=CHART"]
        api = f"http://127.0.0.1:{port}/api/2.0/mlflow"
        tags = {t["key"]: t["value"] for t in requests.get(f"{api}/experiments/get", params={"experiment_id": "1"},
                                                          timeout=30).json()["experiment"]["tags"]}
        for key in ("demo", "demo-trials"):  # the store it serves holds the views its links open
            assert json.loads(tags[f"mlflow.sharedViewState.{key}"])["searchFilter"].startswith(
                "tags.`simtune.sweep` = 'demo'")
        server = [int(p) for p in os.popen(f"pgrep -g {proc.pid}").read().split()]
        assert len(server) >= 2  # simtune and the MLflow server it started
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        assert proc.wait(timeout=60) == 0
        assert read_until(lines, "simtune ui: stopped", timeout=10)
        assert not os.popen(f"pgrep -g {proc.pid}").read().split()  # nothing of it left running
        assert port_is_free(port)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_ui_refuses_bad_input_with_one_line(tmp_path: Path) -> None:
    def ui(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "simtune.cli", "ui", *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=120)

    missing = ui("--storage", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and missing.stderr.strip().splitlines() == [
        f"simtune ui: error: --storage {tmp_path / 'nowhere'}: no such folder; give the folder of sweeps "
        "(default ./sweeps)"]
    (tmp_path / "empty").mkdir()
    empty = ui("--storage", str(tmp_path / "empty"))
    assert empty.returncode == 2 and empty.stderr.strip().splitlines() == [
        f"simtune ui: error: --storage {tmp_path / 'empty'}: no MLflow store {tmp_path / 'empty' / 'mlflow.db'}; "
        "simtune sweep writes it there"]
    storage = sweeps_folder(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = ui("--storage", str(storage), "--port", str(port))
    assert busy.returncode == 2 and len(busy.stderr.strip().splitlines()) == 1
    assert busy.stderr.startswith(f"simtune ui: error: --port {port}: 127.0.0.1:{port} is in use")
