"""Screenshots and checks of the MLflow UI a user lands on, for docs/mlflow.md.

Starts ``mlflow ui`` on ``<storage>/mlflow.db`` and headless Chromium with a fresh profile
(no view remembered from an earlier visit), drives Chromium over its DevTools protocol and

1. opens the sweep's link exactly as ``simtune sweep`` prints it (``naming.ui_url``, with
   this UI's port) and checks that it lands on the runs table in MLflow's training view (the
   ``Model registry`` entry of the sidebar exists only there) with the sweep's runs;
2. opens the ``@champion`` version's logged model and checks that its page shows the
   final evaluation's ``val/miou`` of the run that logged it and its registered version;
3. opens the newest retrain run's overview (description, links, model).

It saves ``<out>/mlflow_runs.png``, ``<out>/mlflow_model.png``, ``<out>/mlflow_retrain.png``,
prints one line per check and exits 1 when a check fails. Needs Debian's ``chromium`` and
the ``websocket-client`` package (not simtune dependencies)::

    python scripts/mlflow_screenshot.py --storage sweeps --experiment lambda_w --out docs/img
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from simtune.testing import stop_process_group
from simtune.tracking import naming

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

    def text(self) -> str:
        return str(self.run("document.body.innerText") or "")

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
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))
        print(f"wrote {path}")


class Checks:
    """Named pass/fail lines; ``ok`` is False once one failed."""

    def __init__(self) -> None:
        self.ok = True

    def __call__(self, name: str, passed: bool, detail: str = "") -> None:
        self.ok = self.ok and passed
        print(f"{'ok  ' if passed else 'FAIL'} {name}" + (f": {detail}" if detail else ""))


def landing(page: Page, checks: Checks, url: str, sweep: str, out: Path) -> None:
    """The printed link: the runs table of the sweep in the training view."""
    page.open(url, settle_s=10)
    href, text = str(page.run("location.href")), page.text()
    search = str(page.run("Array.from(document.querySelectorAll('input')).map(i => i.value).join(' | ')"))
    checks("link lands on the runs table", f"/experiments/" in href and "/runs?" in href and "matching runs" in text,
           href.split("?")[0])
    checks("training view (sidebar has Model registry)", "Model registry" in text)
    checks("the sweep's runs are listed", f"simtune.sweep` = '{sweep}'" in search and f"\n{sweep}\n" in text,
           f"filter tags.`simtune.sweep` = '{sweep}'")
    checks("swept params and means are columns", "config/val/miou_mean" in text and "val/miou" in text)
    page.unfold_parents()
    time.sleep(3)
    page.save(out / "mlflow_runs.png")


def champion_model(page: Page, checks: Checks, client: Any, base: str, name: str, out: Path) -> None:
    """The champion's logged model page: its final metrics and its registered version."""
    version = client.get_model_version_by_alias(name, naming.CHAMPION)
    model = client.get_logged_model(version.source.removeprefix("models:/"))
    final = client.get_run(model.source_run_id).data.metrics[naming.SELECTION]  # the latest value = the final one
    page.open(f"{base}/models/{model.model_id}?workflowType={naming.TRAINING_WORKFLOW}", settle_s=10)
    text = page.text()
    shown = {m.key: m.value for m in model.metrics}.get(naming.SELECTION)
    checks("logged model's val/miou is the run's final one", shown == final and repr(final) in text,
           f"page shows {shown}, run ended at {final}")
    checks("logged model lists its registered version", "Not registered" not in text and f"v{version.version}" in text,
           f"{name} v{version.version}")
    page.save(out / "mlflow_model.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--storage", type=Path, default=Path("sweeps"))
    parser.add_argument("--experiment", default="lambda_w")
    parser.add_argument("--sweep", default=None, help="sweep name (default: the experiment's newest sweep)")
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    parser.add_argument("--port", type=int, default=0, help="port of the UI (default: a free one)")
    args = parser.parse_args(argv)
    from mlflow import MlflowClient

    uri = f"sqlite:///{(args.storage / 'mlflow.db').resolve()}"
    client = MlflowClient(uri, registry_uri=uri)
    experiment = client.get_experiment_by_name(args.experiment)
    if experiment is None:
        print(f"{uri}: no experiment {args.experiment!r}", file=sys.stderr)
        return 2
    exp_id = experiment.experiment_id
    sweeps = client.search_runs([exp_id], "tags.`simtune.role` = 'sweep'", max_results=1)
    sweep = args.sweep or (sweeps[0].data.tags["simtune.sweep"] if sweeps else None)
    retrains = client.search_runs([exp_id], "tags.`simtune.role` = 'retrain'", max_results=1)
    port = args.port or free_port()
    ui = start([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--port", str(port),
                "--workers", "1"], {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    checks = Checks()
    with tempfile.TemporaryDirectory() as profile:
        debug = free_port()
        browser = start(["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1600,1000",
                         f"--remote-debugging-port={debug}", "about:blank"])
        try:
            wait_for(f"http://127.0.0.1:{port}/health")
            page, base = Page(debug), f"http://127.0.0.1:{port}/#/experiments/{exp_id}"
            if sweep is not None:
                landing(page, checks, naming.ui_url(uri, exp_id, port=port, sweep=sweep), sweep, args.out)
            model = naming.model_name(args.experiment)
            if retrains and client.search_model_versions(f"name = '{model}'"):
                champion_model(page, checks, client, base, model, args.out)
                page.open(f"{base}/runs/{retrains[0].info.run_id}?workflowType={naming.TRAINING_WORKFLOW}")
                page.click_text("Show more")  # the whole description, links included
                time.sleep(2)
                page.save(args.out / "mlflow_retrain.png")
        finally:
            for proc in (browser, ui):
                stop_process_group(proc)
    return 0 if checks.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
