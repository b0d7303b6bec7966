"""Screenshots of the MLflow UI on a simtune store, for docs/mlflow.md.

Starts ``mlflow ui`` on ``<storage>/mlflow.db`` and headless Chromium, drives Chromium over
its DevTools protocol (close the assistant panel, unfold the sweep's trials) and saves:

- ``<out>/mlflow_runs.png``: the experiment's runs table;
- ``<out>/mlflow_retrain.png``: the newest retrain run's overview (description, links, model).

Needs Debian's ``chromium`` and the ``websocket-client`` package (not simtune dependencies)::

    python scripts/mlflow_screenshot.py --storage sweeps --experiment lambda_w --out docs
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--remote-allow-origins=*"]


def start(command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env=env)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, seconds: float = 90) -> Any:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                return json.loads(reply.read() or b"null") if url.endswith("/json") else True
        except (OSError, ValueError):
            time.sleep(0.5)
    raise SystemExit(f"{url} did not answer within {seconds:.0f} s")


class Page:
    """One Chromium tab driven over the DevTools protocol."""

    def __init__(self, debug_port: int) -> None:
        import websocket  # websocket-client

        tabs = wait_for(f"http://127.0.0.1:{debug_port}/json")
        self.ws = websocket.create_connection(next(t for t in tabs if t["type"] == "page")["webSocketDebuggerUrl"],
                                              timeout=60)
        self.calls = 0

    def call(self, method: str, **params: Any) -> Any:
        self.calls += 1
        self.ws.send(json.dumps({"id": self.calls, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.calls:
                return message.get("result", {})

    def run(self, script: str) -> Any:
        return self.call("Runtime.evaluate", expression=script, returnByValue=True).get("result", {}).get("value")

    def open(self, url: str, settle_s: float = 8) -> None:
        self.call("Page.navigate", url=url)
        time.sleep(settle_s)
        self.click_label("Close")  # MLflow's assistant panel
        time.sleep(1)

    def click_label(self, label: str) -> int:
        return int(self.run(f"""(() => {{ const found = Array.from(document.querySelectorAll("button"))
            .filter(b => b.getAttribute("aria-label") === {json.dumps(label)}); found.forEach(b => b.click());
            return found.length; }})()""") or 0)

    def click_text(self, text: str) -> int:
        return int(self.run(f"""(() => {{ const found = Array.from(document.querySelectorAll("button, a"))
            .filter(b => (b.innerText || "").trim() === {json.dumps(text)}); found.forEach(b => b.click());
            return found.length; }})()""") or 0)

    def unfold_parents(self) -> int:
        """Click the expander in the run-name cell of every parent run."""
        return int(self.run("""(() => { const found = document.querySelectorAll(
            'button[data-component-id*="runnamecellrenderer"]'); found.forEach(b => b.click());
            return found.length; })()""") or 0)

    def save(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))
        print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", type=Path, default=Path("sweeps"))
    parser.add_argument("--experiment", default="lambda_w")
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--port", type=int, default=0, help="port of the UI (default: a free one)")
    args = parser.parse_args(argv)
    from mlflow import MlflowClient

    uri = f"sqlite:///{(args.storage / 'mlflow.db').resolve()}"
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(args.experiment)
    if experiment is None:
        raise SystemExit(f"{uri}: no experiment {args.experiment!r}")
    retrains = client.search_runs([experiment.experiment_id], "tags.`simtune.role` = 'retrain'", max_results=1)
    port = args.port or free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    ui = start([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--port", str(port),
                "--workers", "1"], env)
    with tempfile.TemporaryDirectory() as profile:
        browser = start(["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1600,1000",
                         "--remote-debugging-port=9338", "about:blank"])
        try:
            wait_for(f"http://127.0.0.1:{port}/health")
            if ui.poll() is not None:
                raise SystemExit(f"mlflow ui exited with {ui.returncode}")
            page, base = Page(9338), f"http://127.0.0.1:{port}/#/experiments/{experiment.experiment_id}"
            page.open(f"{base}/runs")
            page.unfold_parents()
            time.sleep(3)
            page.save(args.out / "mlflow_runs.png")
            if retrains:
                page.open(f"{base}/runs/{retrains[0].info.run_id}")
                page.click_text("Show more")  # the whole description, links included
                time.sleep(2)
                page.save(args.out / "mlflow_retrain.png")
        finally:
            for proc in (browser, ui):
                os.killpg(proc.pid, signal.SIGINT)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
