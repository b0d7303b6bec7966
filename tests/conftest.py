"""Shared fixtures: one tiny built-in benchmark and one Ray head per test session.

A test that runs a real Ray sweep is marked ``ray_sweep``: it is also ``slow`` (``make
test-fast`` leaves it out) and joins the session's Ray head through ``RAY_ADDRESS`` instead
of starting a Ray of its own; tests that drive Tune in-process join it too (``ray.init(address=ray_head)``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from simtune.testing import tiny_benchmark


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
# Ray's token authentication: every node, `ray status` and the driver use ~/.ray/auth_token.
CLUSTER_ENV = {**os.environ, "RAY_AUTH_MODE": "token"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def kill_group(process: subprocess.Popen[Any], sig: int = signal.SIGKILL) -> None:
    """Signal the process group this test started (the process was made its leader)."""
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def start_node(args: list[str], env: dict[str, str]) -> subprocess.Popen[Any]:
    """``ray start ... --block`` as the leader of a new process group (so it can be stopped alone)."""
    return subprocess.Popen([str(RAY), "start", "--block", *args], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


def stop_nodes(nodes: list[subprocess.Popen[Any]]) -> None:
    for node in reversed(nodes):
        kill_group(node, signal.SIGTERM)
    time.sleep(3)
    for node in nodes:
        kill_group(node)
        node.wait(timeout=30)


def wait_for_nodes(address: str, count: int, env: dict[str, str], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = subprocess.run([str(RAY), "status", f"--address={address}"], capture_output=True, text=True,
                                timeout=60, env=env)
        active = status.stdout.split("Pending:")[0] if status.returncode == 0 else ""
        if active.count("node_") >= count:
            return
        time.sleep(1)
    raise AssertionError(f"Ray cluster at {address} did not reach {count} nodes")


def _temp_dir(port: int) -> Path:
    return Path(os.environ.get("TMPDIR", "/tmp")) / f"rt{port}"  # short: Ray's socket paths are limited


@pytest.fixture(scope="session")
def ray_head() -> Iterator[str]:
    """One local Ray head (2 CPUs) for every sweep of the session; ``RAY_ADDRESS`` points at it.

    Started with token authentication off (``RAY_AUTH_MODE=disabled``), the mode every driver
    and every in-process ``ray.init`` of the session uses by default, so they can all join it.
    """
    port = free_port()
    address = f"127.0.0.1:{port}"
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "RAY_AUTH_MODE": "disabled"}
    node = start_node(["--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
                       f"--temp-dir={_temp_dir(port)}"], env)
    before = os.environ.get("RAY_ADDRESS")
    try:
        wait_for_nodes(address, 1, env)
        os.environ["RAY_ADDRESS"] = address
        yield address
    finally:
        if before is None:
            os.environ.pop("RAY_ADDRESS", None)
        else:
            os.environ["RAY_ADDRESS"] = before
        stop_nodes([node])


@pytest.fixture
def two_node_cluster() -> Iterator[str]:
    """A head and a worker node on 127.0.0.1, one CPU each, with token auth; yields the address."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    nodes = [start_node(["--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
                         f"--temp-dir={_temp_dir(port)}"], CLUSTER_ENV)]
    try:
        wait_for_nodes(address, 1, CLUSTER_ENV)
        nodes.append(start_node([f"--address={address}", "--num-cpus=1"], CLUSTER_ENV))
        wait_for_nodes(address, 2, CLUSTER_ENV)
        yield address
    finally:
        stop_nodes(nodes)


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
