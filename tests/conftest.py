"""Shared fixtures: one tiny built-in benchmark and one Ray head per test session.

A test that runs a real Ray sweep is marked ``ray_sweep``: it is also ``slow`` (``make
test-fast`` leaves it out) and joins the session's Ray head through ``RAY_ADDRESS`` instead
of starting a Ray of its own; tests that drive Tune in-process join it too (``ray.init(address=ray_head)``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from simtune.sweep.options import CALLBACKS_ENV
from simtune.testing import free_port, kill_group, stop_process_group, tiny_benchmark


@pytest.fixture(scope="session")
def tiny_bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(source root, target root) of a tiny benchmark in the real GTA5/Cityscapes layouts."""
    return tiny_benchmark(tmp_path_factory.mktemp("bench") / "synthetic")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Ray sweeps are slow and join the session's Ray head; GPU tests skip cleanly without CUDA."""
    for item in items:
        if "ray_sweep" in item.keywords:
            item.add_marker(pytest.mark.slow)
            fixtures = getattr(item, "fixturenames", None)
            if fixtures is not None and "ray_head" not in fixtures:
                fixtures.insert(0, "ray_head")  # session scope: set up before the module's sweep fixtures
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# ----------------------------------------------------------------------------- Ray clusters on 127.0.0.1

RAY = Path(sys.executable).with_name("ray")


@dataclass
class Cluster:
    """Ray nodes on 127.0.0.1 started by a test; ``env`` is what every process that joins needs.

    Each node's ``ray start`` output goes to ``<folder>/node<i>.log``, so a node that does not
    come up is reported with Ray's own message.
    """

    address: str
    env: dict[str, str]
    folder: Path
    nodes: list[subprocess.Popen[Any]] = field(default_factory=list)

    def start_node(self, *args: str) -> subprocess.Popen[Any]:
        """``ray start ... --block`` as the leader of a new process group (so it can be killed alone)."""
        log = self.folder / f"node{len(self.nodes)}.log"
        with open(log, "w") as handle:
            node = subprocess.Popen([str(RAY), "start", "--block", *args], start_new_session=True,
                                    stdout=handle, stderr=subprocess.STDOUT, env=self.env)
        self.nodes.append(node)
        return node

    def wait_for_nodes(self, count: int, timeout: float = 90) -> None:
        """Until ``ray status`` lists ``count`` active nodes; else fail with what Ray printed."""
        deadline = time.monotonic() + timeout
        status = None
        while time.monotonic() < deadline:
            status = subprocess.run([str(RAY), "status", f"--address={self.address}"], capture_output=True,
                                    text=True, timeout=60, env=self.env)
            if status.returncode == 0 and status.stdout.split("Pending:")[0].count("node_") >= count:
                return
            if any(node.poll() is not None for node in self.nodes):
                break  # a node exited: waiting longer will not help
            time.sleep(1)
        said = "" if status is None else (status.stderr or status.stdout).strip()[-1500:]
        raise AssertionError(f"Ray cluster at {self.address} did not reach {count} nodes.\n"
                             f"ray status said:\n{said}\n{self.node_output()}")

    def node_output(self) -> str:
        """The end of each node's ``ray start`` output."""
        parts = []
        for i, node in enumerate(self.nodes):
            text = (self.folder / f"node{i}.log").read_text(errors="replace").strip()
            state = "running" if node.poll() is None else f"exited with {node.returncode}"
            parts.append(f"node {i} ({state}):\n{text[-2000:]}")
        return "\n".join(parts)

    def stop(self) -> None:
        for node in reversed(self.nodes):
            kill_group(node, signal.SIGTERM)
        time.sleep(3)
        for node in self.nodes:
            kill_group(node)
            node.wait(timeout=30)


def token_env(folder: Path) -> dict[str, str]:
    """Token authentication with a token of this cluster's own, in ``folder`` (never ``~/.ray``)."""
    token = folder / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    inherited = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN")}
    return {**inherited, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}


def _temp_dir(port: int) -> Path:
    return Path(os.environ.get("TMPDIR", "/tmp")) / f"rt{port}"  # short: Ray's socket paths are limited


@contextlib.contextmanager
def local_cluster(folder: Path, env: dict[str, str], head: tuple[str, ...] = ("--num-cpus=2",),
                  workers: tuple[tuple[str, ...], ...] = ()) -> Iterator[Cluster]:
    """A head (and worker nodes) on 127.0.0.1 with the given ``ray start`` resources."""
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(f"127.0.0.1:{port}", env, folder)
    try:
        cluster.start_node("--head", f"--port={port}", "--include-dashboard=false",
                           f"--temp-dir={_temp_dir(port)}", *head)
        cluster.wait_for_nodes(1)
        for worker in workers:
            cluster.start_node(f"--address={cluster.address}", *worker)
            cluster.wait_for_nodes(len(cluster.nodes))
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One local Ray head (2 CPUs) for every sweep of the session; ``RAY_ADDRESS`` points at it.

    Started with token authentication off (``RAY_AUTH_MODE=disabled``), the mode every driver
    and every in-process ``ray.init`` of the session uses by default, so they can all join it.
    """
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "RAY_AUTH_MODE": "disabled"}
    before = os.environ.get("RAY_ADDRESS")
    with local_cluster(tmp_path_factory.mktemp("ray_head"), env) as cluster:
        os.environ["RAY_ADDRESS"] = cluster.address
        try:
            yield cluster.address
        finally:
            if before is None:
                os.environ.pop("RAY_ADDRESS", None)
            else:
                os.environ["RAY_ADDRESS"] = before


@pytest.fixture
def two_node_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A head and a worker node on 127.0.0.1, one CPU each, with token auth (a token of its own)."""
    folder = tmp_path_factory.mktemp("cluster")
    with local_cluster(folder, token_env(folder), head=("--num-cpus=1",), workers=(("--num-cpus=1",),)) as cluster:
        yield cluster


# ----------------------------------------------------------------------------- a real MLflow server


@contextlib.contextmanager
def mlflow_http_server(folder: Path) -> Iterator[str]:
    """``mlflow server`` over HTTP with its own backend (SQLite) and artifact store under ``folder``,
    one worker, on a free port; yields its address. Stopped with its process group."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    with open(folder / "server.log", "w") as log:  # the server keeps its own copy of the descriptor
        proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                                 "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
                                 "--artifacts-destination", str(folder / "artifacts"), "--workers", "1"],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env, cwd=folder)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, proc, timeout=120, log=folder / "server.log")
        yield url
    finally:
        stop_process_group(proc)


@contextlib.contextmanager
def mlflow_ui(uri: str) -> Iterator[str]:
    """The ``mlflow ui`` line simtune prints for ``uri``, on a free port with one worker; yields its address."""
    from simtune.tracking import naming

    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no background job workers
    proc = subprocess.Popen([sys.executable, "-m", *shlex.split(naming.ui_command(uri, port)), "--workers", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, proc)
        yield url
    finally:
        stop_process_group(proc)


def wait_until_up(url: str, proc: subprocess.Popen[Any], timeout: float = 90, log: Path | None = None) -> None:
    """Until an MLflow server at ``url`` answers ``/health``; fails when ``proc`` exits or time runs out
    (with the end of ``log``, where the server writes one)."""
    import requests

    said = lambda: "" if log is None else ":\n" + log.read_text(errors="replace")[-3000:]  # noqa: E731
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {proc.returncode}{said()}")
        with contextlib.suppress(requests.exceptions.RequestException):
            if requests.get(f"{url}/health", timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"mlflow server did not start within {timeout:g} s{said()}")


@pytest.fixture(autouse=True, scope="session")
def fault_hook() -> Iterator[None]:
    """Every trial a sweep or retrain of the session runs carries the fault hook, which injects what a
    test's ``SIMTUNE_FAULT`` asks for (nothing when it is unset); subprocesses inherit it."""
    before = os.environ.get(CALLBACKS_ENV)
    os.environ[CALLBACKS_ENV] = "simtune.testing:fault_hook"
    yield
    if before is None:
        os.environ.pop(CALLBACKS_ENV, None)
    else:
        os.environ[CALLBACKS_ENV] = before


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The suite's records of checked datasets (``data.check``) go to a folder of its own, not
    the user's ``~/.cache``; subprocesses inherit it."""
    before = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if before is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = before


@pytest.fixture(autouse=True)
def isolated_mlflow_uri() -> Iterator[None]:
    """``mlflow.set_tracking_uri`` also exports MLFLOW_TRACKING_URI; undo it after each test
    so one test's store never becomes the next test's default."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if os.environ.get("MLFLOW_TRACKING_URI") != before and "mlflow" in sys.modules:
        sys.modules["mlflow"].set_tracking_uri(before)
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before
