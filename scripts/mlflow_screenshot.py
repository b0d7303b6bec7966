"""Screenshots and checks of the MLflow UI as a user first lands on it, for docs/mlflow.md.

Starts ``simtune ui --storage <storage>`` (the command every simtune command ends with) and
headless Chromium with a fresh profile (nothing remembered from an earlier visit) in a
1600 x 1000 window, drives Chromium over its DevTools pipe (no browser driver package), leaves
MLflow's Assistant panel as MLflow shows it on a first visit, and

1. opens the configurations link ``simtune ui`` prints and checks that every configuration is
   one visible row, that the swept params are visible columns, and that the mean, std and n
   over seeds are visible columns beside them (``mlflow_runs.png``);
2. opens the "every trial, charted" link and checks that a chart of the selection metric
   against each swept param is visible and draws every finished trial (``mlflow_charts.png``);
3. opens the ``champion`` version's logged model and checks that it shows the final
   evaluation's ``val/miou`` of the run that logged it and its registered version
   (``mlflow_model.png``);
4. opens the newest retrain run and checks that its description states the confirmation and
   the fresh seeds, and that no text of it (nor the registered model's) renders as a GitHub
   ``@mention`` link (``mlflow_retrain.png``).

It prints one line per check and exits 1 when a check fails. Needs Debian's ``chromium``
(``apt-get install chromium``); everything else is simtune's environment::

    python scripts/mlflow_screenshot.py --storage sweeps --out docs/img
    python scripts/mlflow_screenshot.py --make-store /tmp/shots --out docs/img   # the pictured store, built first
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from simtune.testing import free_port, stop_process_group
from simtune.tracking import naming

WIDTH, HEIGHT = 1600, 1000
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  f"--window-size={WIDTH},{HEIGHT}", "--remote-debugging-pipe"]
# Whether an element is on screen and not covered (by the Assistant panel, a banner): the point at
# the middle of its box hits the element itself.
VISIBLE_JS = """(el) => { if (!el) return false; const r = el.getBoundingClientRect();
  if (r.width < 4 || r.height < 4 || r.left < 0 || r.top < 0 || r.right > innerWidth || r.bottom > innerHeight)
    return false;
  const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
  return !!hit && (el.contains(hit) || hit.contains(el)); }"""


class Browser:
    """Headless Chromium with a fresh profile, one tab, driven over the DevTools pipe (fds 3 and 4)."""

    def __init__(self, profile: str) -> None:
        to_browser, self._out = os.pipe()
        self._in, from_browser = os.pipe()
        shell = f'exec "$0" "$@" 3<&{to_browser} 4>&{from_browser}'
        self.proc = subprocess.Popen(["sh", "-c", shell, "chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                                      "about:blank"], pass_fds=(to_browser, from_browser),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        os.close(to_browser)
        os.close(from_browser)
        self._buffer, self._calls, self._session = b"", 0, ""
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self._session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT, deviceScaleFactor=1, mobile=False)

    def call(self, method: str, **params: Any) -> Any:
        self._calls += 1
        message = {"id": self._calls, "method": method, "params": params}
        if self._session:
            message["sessionId"] = self._session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buffer:
                chunk = os.read(self._in, 1 << 20)
                if not chunk:
                    raise SystemExit("chromium exited")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._calls:
                if "error" in reply:
                    raise SystemExit(f"chromium: {method}: {reply['error']}")
                return reply.get("result", {})

    def run(self, script: str) -> Any:
        return self.call("Runtime.evaluate", expression=script, returnByValue=True).get("result", {}).get("value")

    def open(self, url: str, ready: Callable[[], bool], timeout_s: float = 60) -> None:
        """Go to ``url``; wait until ``ready()`` (then 2 s for charts to draw) or the timeout."""
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not ready():
            time.sleep(0.5)
        time.sleep(2)

    def text(self) -> str:
        return str(self.run("document.body.innerText") or "")

    def visible(self, selector: str) -> list[bool]:
        """For each element ``selector`` finds: on screen and not covered."""
        return list(self.run(f"Array.from(document.querySelectorAll({json.dumps(selector)})).map({VISIBLE_JS})")
                    or [])

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
        print(f"{'ok  ' if passed else 'FAIL'} {name}" + (f": {detail}" if detail else ""), flush=True)


def cell(col_id: str) -> str:
    return f'.ag-header-cell[col-id={json.dumps(col_id)}]'


def configurations(page: Browser, checks: Checks, url: str, swept: list[str], expected: int, out: Path) -> None:
    """The configurations link: one visible row per configuration, swept params and mean/std/n visible."""
    rows = ".ag-pinned-left-cols-container .ag-row"
    page.open(url, lambda: len(page.visible(rows)) >= expected)
    names = [line.strip() for line in str(page.run(
        f"Array.from(document.querySelectorAll('{rows}')).map(r => r.innerText).join('\\n')") or "").splitlines()]
    groups = [n for n in names if n.startswith("Group:")]
    shown = page.visible(rows)
    checks("one visible row per configuration", len(groups) == expected == len(shown) and all(shown),
           f"{len(groups)} group rows of {expected} configurations, {sum(shown)} rows on screen")
    params = [all(page.visible(cell(f"params.`{key}`"))) and bool(page.visible(cell(f"params.`{key}`")))
              for key in swept]
    checks("swept params are visible columns", all(params), ", ".join(swept))
    stats = [naming.mean_key(naming.CONFIG, naming.SELECTION), naming.std_key(naming.CONFIG, naming.SELECTION),
             naming.seeds_key(naming.CONFIG)]
    seen = [bool(page.visible(cell(f"metrics.`{m}`"))) and all(page.visible(cell(f"metrics.`{m}`"))) for m in stats]
    checks("mean, std and n over seeds are visible columns", all(seen), ", ".join(stats))
    page.save(out / "mlflow_runs.png")


def charts(page: Browser, checks: Checks, url: str, swept: list[str], trials: int, out: Path) -> None:
    """The trials' chart link: the metric against each swept param, every trial a point, on screen."""
    count = ("Array.from(document.querySelectorAll('.js-plotly-plot'))"
             ".map(p => p.querySelectorAll('.scatterlayer .point').length)")
    page.open(url, lambda: len(page.run(count) or []) >= len(swept))
    points = list(page.run(count) or [])[: len(swept)]
    checks("a chart per swept param draws every trial", points == [trials] * len(swept),
           f"points {points}, finished trials {trials}")
    on_screen = page.visible(".js-plotly-plot")[: len(swept)]
    checks("those charts are on screen", len(on_screen) == len(swept) and all(on_screen))
    page.save(out / "mlflow_charts.png")


def champion_model(page: Browser, checks: Checks, client: Any, base: str, name: str, out: Path) -> None:
    """The champion's logged model page: its final metrics and its registered version."""
    version = client.get_model_version_by_alias(name, naming.CHAMPION)
    model = client.get_logged_model(version.source.removeprefix("models:/"))
    final = client.get_run(model.source_run_id).data.metrics[naming.SELECTION]  # the latest value = the final one
    page.open(f"{base}/models/{model.model_id}?workflowType={naming.TRAINING_WORKFLOW}",
              lambda: repr(final) in page.text())
    text = page.text()
    shown = {m.key: m.value for m in model.metrics}.get(naming.SELECTION)
    checks("logged model's val/miou is the run's final one", shown == final and repr(final) in text,
           f"page shows {shown}, run ended at {final}")
    checks("logged model lists its registered version", "Not registered" not in text and f"v{version.version}" in text,
           f"{name} v{version.version}")
    page.save(out / "mlflow_model.png")


MENTIONS = "Array.from(document.querySelectorAll('a')).filter(a => /^@/.test(a.innerText.trim())).length"


def retrain(page: Browser, checks: Checks, base: str, run: Any, model: str, out: Path) -> None:
    """The retrain run's overview: the outcome in its description, nothing rendered as a mention."""
    page.open(f"{base.split('/#/')[0]}/#/models/{model}?workflowType={naming.TRAINING_WORKFLOW}",
              lambda: model in page.text())
    checks("registered model's description renders as text", page.run(MENTIONS) == 0)
    page.open(f"{base}/runs/{run.info.run_id}?workflowType={naming.TRAINING_WORKFLOW}",
              lambda: "Description" in page.text())
    page.run("Array.from(document.querySelectorAll('button, a')).filter(b => (b.innerText || '').trim() === "
             "'Show more').forEach(b => b.click())")  # the whole description
    page.run("Array.from(document.querySelectorAll('h1, h2, h3, h4, span, div')).find(e => "
             "e.childElementCount <= 2 && (e.innerText || '').trim() === 'Description').scrollIntoView()")
    time.sleep(2)
    text = page.text()
    seeds = run.data.params.get("fresh_seeds", "?")
    checks("retrain description states fresh seeds and confirmation",
           f"fresh seeds: {seeds}" in text and "Confirmation: " in text, f"fresh seeds {seeds}")
    checks("retrain description renders as text", page.run(MENTIONS) == 0)
    page.save(out / "mlflow_retrain.png")


def start_ui(storage: Path, port: int) -> tuple[subprocess.Popen[str], list[str]]:
    """``simtune ui`` and the lines it printed once the UI answers (its links)."""
    proc = subprocess.Popen([sys.executable, "-m", "simtune.cli", "ui", "--storage", str(storage), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    lines: list[str] = []
    assert proc.stdout is not None
    while not any("Ctrl-C stops it" in line for line in lines):
        line = proc.stdout.readline()
        if not line:
            raise SystemExit(f"simtune ui exited with {proc.wait()} before the UI answered")
        lines.append(line.rstrip())
    lines += [proc.stdout.readline().rstrip() for _ in range(2)]
    return proc, lines


def link(lines: list[str], label: str) -> str:
    found = [re.search(r"(http://\S+)", line) for line in lines if label in line]
    if not found or found[0] is None:
        raise SystemExit(f"simtune ui printed no '{label}' link: {lines}")
    return found[0].group(1)


def make_store(folder: Path) -> Path:
    """The store the pictures show, built through the CLI in ``folder``; returns its folder of sweeps."""
    from simtune.testing import simtune, tiny_benchmark, write_tiny_space

    if folder.exists():
        raise SystemExit(f"--make-store {folder}: exists; give a new folder")
    folder.mkdir(parents=True)
    bench = tiny_benchmark(folder / "bench")
    space = write_tiny_space(folder, bench, {"stage1.lambda_ci": {"grid": [0.001, 0.01]},
                                             "stage1.bank_size": {"grid": [8, 16]}},
                             replicates=2, search={"algorithm": "grid"}, resources={"cpus": 1})
    space = space.rename(folder / "lambda_w.yaml")  # the experiment and model are named after the space
    for command in (("sweep", str(space), "--name", "lambda_w", "--storage", "sweeps"),
                    ("retrain", "--best", "--seeds", "2")):
        done = simtune(*command, cwd=folder)
        if done.returncode != 0:
            raise SystemExit(f"simtune {command[0]} failed: {done.stderr.strip().splitlines()[-1:]}")
    return folder / "sweeps"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--storage", type=Path, default=Path("sweeps"))
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    parser.add_argument("--make-store", type=Path, metavar="FOLDER",
                        help="first build the pictured store in FOLDER (a new folder): a 2 x 2 sweep with 2 "
                             "replicates on the tiny benchmark, then retrain --best --seeds 2; --storage is then "
                             "FOLDER/sweeps")
    args = parser.parse_args(argv)
    if args.make_store is not None:
        args.storage = make_store(args.make_store)
    from mlflow import MlflowClient

    from simtune.results.sweepdir import SweepDir, find_sweep, read_summary
    from simtune.rundir import read_json

    sweep_dir = find_sweep(args.storage, None)
    recorded = read_json(SweepDir(sweep_dir).tracking) or {}
    uri, exp_id = recorded["tracking_uri"], str(recorded["experiment_id"])
    client = MlflowClient(uri, registry_uri=uri)
    summary = read_summary(sweep_dir)
    swept = list(summary["configs"][0]["params"]) if summary.get("configs") else []
    finished = sum(1 for t in summary.get("trials", []) if t.get("status") == "TERMINATED")
    experiment = client.get_experiment(exp_id).name
    retrains = client.search_runs([exp_id], f"tags.`simtune.role` = 'retrain' AND tags.`simtune.sweep` = "
                                            f"'{sweep_dir.name}'", max_results=1)
    port, checks = free_port(), Checks()
    ui, lines = start_ui(args.storage, port)
    with tempfile.TemporaryDirectory() as profile:
        page = Browser(profile)
        try:
            expected = len({json.dumps(c["params"], sort_keys=True) for c in summary["configs"]})
            configurations(page, checks, link(lines, "configurations:"), swept, expected, args.out)
            charts(page, checks, link(lines, "every trial, charted:"), swept, finished, args.out)
            base, model = f"http://127.0.0.1:{port}/#/experiments/{exp_id}", naming.model_name(experiment)
            if retrains and client.search_model_versions(f"name = '{model}'"):
                champion_model(page, checks, client, base, model, args.out)
                retrain(page, checks, base, retrains[0], model, args.out)
        finally:
            stop_process_group(page.proc)
            stop_process_group(ui)
    return 0 if checks.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
