"""``simtune ui``: MLflow's UI on the store a folder of sweeps uses, run from simtune's own
environment (``python -m mlflow ui`` with this interpreter), so it works without an activated
virtualenv and always with the mlflow simtune wrote the store with."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from simtune.errors import ConfigError
from simtune.results.sweepdir import SweepDir, find_sweep
from simtune.rundir import read_json
from simtune.tracking import naming
from simtune.tracking.store import connect, default_tracking_uri, sqlite_path

START_TIMEOUT_S = 120.0  # MLflow's server on the 2-core VM answers in 5-15 s
STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class UiTarget:
    """What ``simtune ui`` opens: the store, and the newest sweep whose views the links open (if any)."""

    tracking_uri: str
    storage: Path
    experiment_id: str | None = None
    sweep: str | None = None


def ui_target(storage: Path) -> UiTarget:
    """The store of a folder of sweeps and its most recent sweep.

    The store is the one the newest sweep recorded (``tracking.json``), else ``<storage>/mlflow.db``.

    Raises:
        ConfigError: ``storage`` is not a folder, or holds no store.
        TrackingError: the store was moved or copied away from its artifacts (``connect``).
    """
    storage = Path(storage).resolve()
    if not storage.is_dir():
        raise ConfigError(f"--storage {storage}: no such folder; give the folder of sweeps (default ./sweeps)")
    try:
        recorded = read_json(SweepDir(find_sweep(storage, None)).tracking) or {}
    except ConfigError:  # no sweep folder: the store alone is still worth opening
        recorded = {}
    uri = str(recorded.get("tracking_uri") or default_tracking_uri(storage))
    path = sqlite_path(uri)
    if path is not None and not path.is_file():
        raise ConfigError(f"--storage {storage}: no MLflow store {path}; simtune sweep writes it there")
    if path is not None:
        connect(uri)  # refuses a moved or copied store with one line
    experiment = recorded.get("experiment_id")
    return UiTarget(uri, storage, str(experiment) if experiment is not None else None, recorded.get("sweep"))


def check_port(port: int) -> None:
    """Raises ConfigError when ``127.0.0.1:port`` is taken or not a port."""
    if not 0 < port < 65536:
        raise ConfigError(f"--port {port}: expected 1 to 65535")
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is no conflict
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise ConfigError(f"--port {port}: 127.0.0.1:{port} is in use ({exc.strerror}); pass another --port") \
                from None


def link_lines(target: UiTarget, port: int) -> list[str]:
    """Where to look: the UI's address and the newest sweep's two views."""
    lines = [f"MLflow UI: http://127.0.0.1:{port} (store {target.tracking_uri}); Ctrl-C stops it"]
    if target.experiment_id is not None and target.sweep:
        uri, experiment, sweep = target.tracking_uri, target.experiment_id, target.sweep
        lines += [f"  sweep {sweep}, configurations: {naming.ui_url(uri, experiment, port=port, sweep=sweep)}",
                  f"  sweep {sweep}, every trial, charted: "
                  f"{naming.ui_url(uri, experiment, port=port, sweep=sweep, charts=True)}"]
    return lines


def serve(target: UiTarget, port: int = naming.UI_PORT, *, say: Callable[[str], None] = print) -> int:
    """Run ``mlflow ui`` on ``target``'s store until Ctrl-C (or until it exits); returns the exit code.

    The links are said once the server answers. Ctrl-C (SIGINT to the terminal's process group, or
    to this process alone) stops the server and returns 0.

    Raises:
        ConfigError: the port is taken.
    """
    if target.tracking_uri.startswith(("http://", "https://")):
        say(f"the sweeps' store is the MLflow server {target.tracking_uri}, which serves its own UI")
        say("\n".join(link_lines(target, port)[1:]).replace(f"http://127.0.0.1:{port}", target.tracking_uri))
        return 0
    check_port(port)
    # One worker, no background job runners (MLflow's GenAI jobs): a UI for one user that Ctrl-C stops.
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", target.tracking_uri,
                             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"], env=env)
    try:
        if _wait_until_up(f"http://127.0.0.1:{port}/health", proc):
            say("\n".join(link_lines(target, port)))
        code = proc.wait()
    except KeyboardInterrupt:
        _stop(proc)
        say("simtune ui: stopped")
        return 0
    return code


def _wait_until_up(url: str, proc: subprocess.Popen[bytes]) -> bool:
    """True once ``url`` answers; False when the server exited first (its own output says why)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except OSError:
            time.sleep(0.5)
    return proc.poll() is None


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Ctrl-C the server if the terminal's did not reach it; kill it if it has not ended in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # what a terminal's Ctrl-C sends; mlflow's server stops on it
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
