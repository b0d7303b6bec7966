"""The MLflow store of a sweep: reaching it, finding runs again, and the sweep's parent run.

Every write to the store happens in one process (the Ray driver during a sweep, the CLI
process for ``retrain`` and ``report``), so a SQLite store never sees two writers at once.

Runs are found again by tags, never by name, so a resumed sweep reuses its parent run and
its trials' child runs instead of duplicating them::

    parent   simtune.role=sweep   simtune.sweep=<name>   simtune.sweep_dir=<dir>
    child    simtune.role=trial   simtune.trial_id=<id>  mlflow.parentRunId=<parent>
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from simtune import config
from simtune.config import Config
from simtune.errors import TrackingError
from simtune.provenance import describe

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

EXPERIMENT = "simtune"
CHECKPOINT_POLICIES = ("best", "all", "none")
SELECTION_METRIC = "val/miou"  # selection split (frankfurt); report/ is held out

TAG_ROLE = "simtune.role"  # sweep | trial | retrain | retrain_seed
TAG_SWEEP = "simtune.sweep"
TAG_SWEEP_DIR = "simtune.sweep_dir"
TAG_TRIAL = "simtune.trial_id"
TAG_RUN_DIR = "simtune.run_dir"
TAG_FAILURE = "simtune.failure_reason"
TAG_STOPPED = "simtune.stopped_early"  # "true" when a scheduler (ASHA) ended the trial early
TAG_PARENT = "mlflow.parentRunId"

_PROBE_TIMEOUT_S = 3.0
_MAX_PARAMS_PER_BATCH = 100  # MLflow's log_batch limits
_MAX_METRICS_PER_BATCH = 1000


# ----------------------------------------------------------------------------- reaching the store


def default_tracking_uri(sweep_dir: Path) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<sweep_dir>/mlflow.db`` (absolute).

    One database per sweep keeps a sweep folder self-contained: ``mlflow ui
    --backend-store-uri sqlite:///$PWD/sweeps/<name>/mlflow.db`` shows it, and deleting the
    folder deletes its tracking too.
    """
    env = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if env:
        return normalise_uri(env)
    return "sqlite:///" + str((Path(sweep_dir) / "mlflow.db").resolve())


def resolve_sweep_dir(storage: Path, sweep_name: str) -> Path:
    """The sweep folder, whether ``storage`` is the folder of sweeps or already the sweep's own.

    The sweep runner creates the sweep folder (with ``sweep.json``) before it opens the
    tracker, so a folder named like the sweep that holds ``sweep.json`` is the sweep's.
    """
    storage = Path(storage).resolve()
    if (storage / "sweep.json").is_file() or (storage.name == sweep_name and not (storage / sweep_name).is_dir()):
        return storage
    return storage / sweep_name


def normalise_uri(uri: str) -> str:
    """Make a relative ``sqlite:///`` path absolute: Ray trials and servers run elsewhere."""
    path = sqlite_path(uri)
    if path is None or path.is_absolute():
        return uri
    return "sqlite:///" + str(path.resolve())


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, or None for other stores."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):])


def check_store(uri: str) -> None:
    """Fail fast, with one line, when the store cannot be reached or written.

    Raises:
        TrackingError: an HTTP server that does not answer within a few seconds, a SQLite
            file whose folder cannot be created or written, or a file store (MLflow 3 has none).
    """
    if uri.startswith(("http://", "https://")):
        _probe_http(uri)
        return
    path = sqlite_path(uri)
    if path is not None:
        _check_sqlite_folder(uri, path)
        return
    if uri.startswith("file:") or "://" not in uri:
        raise TrackingError(f"tracking URI {uri}: MLflow 3 has no file store; use sqlite:///<absolute path>/mlflow.db "
                            "or http://<host>:<port>")


def _probe_http(uri: str) -> None:
    import requests

    url = uri.rstrip("/") + "/api/2.0/mlflow/experiments/search"
    try:
        reply = requests.post(url, json={"max_results": 1}, timeout=_PROBE_TIMEOUT_S, auth=_http_auth(),
                              headers=_http_headers())
    except requests.exceptions.Timeout:
        raise TrackingError(f"tracking server {uri} did not answer within {_PROBE_TIMEOUT_S:.0f} s") from None
    except requests.exceptions.RequestException as exc:
        reason = "connection refused" if isinstance(exc, requests.exceptions.ConnectionError) else type(exc).__name__
        raise TrackingError(f"tracking server {uri} is unreachable ({reason}); start it or pass "
                            "another --tracking-uri") from None
    if reply.status_code in (401, 403):
        raise TrackingError(f"tracking server {uri} refused access (HTTP {reply.status_code}); set "
                            "MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME/PASSWORD")
    if reply.status_code != 200:
        raise TrackingError(f"tracking server {uri} answered HTTP {reply.status_code}; is it an MLflow server?")


def _http_auth() -> tuple[str, str] | None:
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    return (user, password) if user and password else None


def _http_headers() -> dict[str, str]:
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


def _check_sqlite_folder(uri: str, path: Path) -> None:
    """Create the database's folder and write a scratch file in it (SQLite needs both)."""
    if not path.is_absolute():
        raise TrackingError(f"tracking URI {uri}: the SQLite path must be absolute (trials change directory)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".simtune-write-check-"):
            pass
        if path.exists():
            with open(path, "r+b"):
                pass
    except OSError as exc:
        raise TrackingError(f"tracking store {uri} is not writable ({exc.strerror or exc}: "
                            f"{exc.filename or path.parent})") from None


def connect(uri: str) -> MlflowClient:
    """A client for ``uri`` (tracking and model registry), after ``check_store``."""
    check_store(uri)
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message, for one-line errors and tags."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:500]


def ensure_experiment(client: MlflowClient, name: str, uri: str) -> str:
    """The id of experiment ``name``, created if missing.

    A SQLite store keeps its artifacts in ``mlartifacts/`` beside the database file, so a
    sweep folder is self-contained; a server decides itself.
    """
    try:
        found = client.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        path = sqlite_path(uri)
        location = (path.parent / "mlartifacts").as_uri() if path is not None else None
        return str(client.create_experiment(name, artifact_location=location))
    except Exception as exc:  # MLflow wraps SQL and HTTP errors in several types
        raise TrackingError(f"tracking store {uri}: cannot open experiment '{name}' ({one_line(exc)})") from None


# ----------------------------------------------------------------------------- finding and writing runs


def search(client: MlflowClient, experiment_id: str, tags: Mapping[str, str],
           *, newest_first: bool = True) -> list[Run]:
    """Every run of the experiment whose tags equal ``tags`` (all pages)."""
    clauses = [f"tags.`{key}` = '{_quote(value)}'" for key, value in tags.items()]
    order = ["attributes.start_time DESC" if newest_first else "attributes.start_time ASC"]
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string=" and ".join(clauses), max_results=1000,
                                  order_by=order, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _quote(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("'", "\\'")


def param_text(value: Any) -> str:
    """A config value as an MLflow param string (lists as JSON, ``[160, 96]``)."""
    return json.dumps(value) if isinstance(value, (list, tuple, dict)) else str(value)


def log_params(client: MlflowClient, run_id: str, params: Mapping[str, Any]) -> None:
    """Log params in batches MLflow accepts."""
    from mlflow.entities import Param

    items = [Param(key, param_text(value)[:6000]) for key, value in params.items()]
    for start in range(0, len(items), _MAX_PARAMS_PER_BATCH):
        client.log_batch(run_id, params=items[start:start + _MAX_PARAMS_PER_BATCH], synchronous=True)


def log_metrics(client: MlflowClient, run_id: str, points: Iterable[tuple[str, float, int]],
                timestamp_ms: int | None = None) -> int:
    """Log ``(key, value, step)`` points, skipping non-finite values; returns how many were logged."""
    from mlflow.entities import Metric

    stamp = timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)
    items = [Metric(key, float(value), stamp, int(step)) for key, value, step in points
             if math.isfinite(float(value))]
    for start in range(0, len(items), _MAX_METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=items[start:start + _MAX_METRICS_PER_BATCH], synchronous=True)
    return len(items)


def log_history(client: MlflowClient, run_id: str, history: Iterable[Mapping[str, Any]],
                logged: MutableMapping[str, set[int]] | None = None) -> int:
    """Log evaluation records (``{"step": s, "val/miou": ..., ...}``) at their global step.

    Args:
        logged: key -> steps already in the store; those points are left out, and the
            points logged here are added to it.
    """
    logged = logged if logged is not None else {}
    points = [(key, value, int(record["step"])) for record in history for key, value in record.items()
              if key != "step" and _is_number(value) and int(record["step"]) not in logged.get(key, ())]
    for key, _, step in points:
        logged.setdefault(key, set()).add(step)
    return log_metrics(client, run_id, points)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def log_json_artifact(client: MlflowClient, run_id: str, payload: Any, name: str, folder: str | None = None) -> None:
    """Write ``payload`` as ``name`` (JSON or, for ``*.yaml``, YAML) and log it."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        text = yaml.safe_dump(payload, sort_keys=False) if name.endswith(".yaml") else json.dumps(payload, indent=1,
                                                                                                  default=str)
        path.write_text(text)
        client.log_artifact(run_id, str(path), folder)


def provenance_tags(seed: int) -> dict[str, str]:
    """Git revision and package versions as tags (MLflow's own git tag included)."""
    info = describe(seed)
    tags = {"simtune.git_revision": info["git_revision"], "mlflow.source.git.commit": info["git_revision"],
            "simtune.python": info["python"], "simtune.device": str(info["device_name"])}
    tags.update({f"simtune.version.{name}": version for name, version in info["packages"].items()})
    return tags


def find_sweep_parent(client: MlflowClient, experiment_id: str, sweep_name: str, sweep_dir: Path) -> Run | None:
    """The newest parent run of this sweep folder (or, if the folder moved, of this sweep name), or None."""
    tags = {TAG_ROLE: "sweep", TAG_SWEEP: sweep_name}
    runs = search(client, experiment_id, {**tags, TAG_SWEEP_DIR: str(Path(sweep_dir).resolve())})
    runs = runs or search(client, experiment_id, tags)
    return runs[0] if runs else None


# ----------------------------------------------------------------------------- the sweep's parent run


@dataclass
class SweepTracker:
    """One MLflow parent run per sweep, a child run per trial, written from the Ray driver.

    Build it with ``SweepTracker.open`` before Ray starts; pass ``tune_callbacks()`` to the
    Tuner's ``RunConfig``; call ``finish(summary)`` when Tune returns.
    """

    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    sweep_name: str
    sweep_dir: Path
    base_params: dict[str, Any]
    checkpoint_policy: str
    client: Any  # MlflowClient; Any keeps mlflow out of the import-time path
    metric: str = SELECTION_METRIC  # the space's selection metric and its direction
    mode: str = "max"

    @classmethod
    def open(cls, *, tracking_uri: str | None, storage: Path, sweep_name: str, space_file: Path, space: Any,
             base_config: Config, resume: bool, checkpoint_policy: str = "best",
             experiment_name: str = EXPERIMENT) -> SweepTracker:
        """Reach the store and create (or, on ``resume``, find again) the sweep's parent run.

        Args:
            tracking_uri: None = ``default_tracking_uri(sweep folder)``.
            storage: the folder of sweeps, or the sweep's own folder (``resolve_sweep_dir``);
                trial run dirs are ``<sweep folder>/runs/<trial_id>/``.
            space_file: the search-space YAML, logged as an artifact.
            space: the loaded search space (its ``params``, ``base``, ``metric``, ``mode`` are recorded).
            base_config: the resolved base experiment; its flattened values are the parent's params.
            resume: find the existing parent run instead of creating one.
            checkpoint_policy: which trials' final ``model.pt`` is logged: "best" (the best
                trial's, at ``finish``), "all" (every finished trial's) or "none".
        Raises:
            TrackingError: unreachable or unwritable store, before any trial runs.
        """
        if checkpoint_policy not in CHECKPOINT_POLICIES:
            raise TrackingError(f"checkpoint_policy must be one of {list(CHECKPOINT_POLICIES)}, "
                                f"but got checkpoint_policy={checkpoint_policy!r}")
        sweep_dir = resolve_sweep_dir(storage, sweep_name)
        uri = normalise_uri(tracking_uri) if tracking_uri else default_tracking_uri(sweep_dir)
        client = connect(uri)
        experiment_id = ensure_experiment(client, experiment_name, uri)
        try:
            parent = find_sweep_parent(client, experiment_id, sweep_name, sweep_dir) if resume else None
            if parent is None:
                run_id = _create_parent(client, experiment_id, sweep_name, sweep_dir, space_file, space, base_config)
            else:
                run_id = parent.info.run_id
                client.update_run(run_id, status="RUNNING")
        except TrackingError:
            raise
        except Exception as exc:  # SQL / HTTP failures surface as several MLflow types
            raise TrackingError(f"tracking store {uri}: cannot write the sweep's parent run ({one_line(exc)})") from None
        return cls(uri, experiment_id, run_id, sweep_name, sweep_dir, config.flatten(base_config),
                   checkpoint_policy, client, str(getattr(space, "metric", SELECTION_METRIC)),
                   str(getattr(space, "mode", "max")))

    def tune_callbacks(self) -> list[Any]:
        """The ``ray.tune.Callback`` that logs every trial as a child run (from the driver)."""
        from simtune.tracking.tune_callback import MlflowTrialLogger

        return [MlflowTrialLogger(tracking_uri=self.tracking_uri, experiment_id=self.experiment_id,
                                  parent_run_id=self.parent_run_id, sweep_name=self.sweep_name,
                                  runs_dir=self.sweep_dir / "runs", base_params=self.base_params,
                                  checkpoint_policy=self.checkpoint_policy)]

    def finish(self, summary: dict[str, Any]) -> None:
        """Log the sweep's outcome to the parent run and end it.

        The best trial is the finished child with the best selection metric (``val/miou``)
        at its *last* evaluation (MLflow's latest value), not its best-ever one, trials
        trained to the end ranking before those a scheduler stopped early; failed
        trials are counted and listed. ``summary`` (the runner's) is attached as JSON.
        """
        from simtune.tracking.tune_callback import log_checkpoint

        children = search(self.client, self.experiment_id, {TAG_PARENT: self.parent_run_id, TAG_ROLE: "trial"})
        outcome = sweep_outcome(children, self.metric, self.mode)
        log_metrics(self.client, self.parent_run_id, [(k, v, 0) for k, v in outcome.metrics().items()])
        for key, value in outcome.tags().items():
            self.client.set_tag(self.parent_run_id, key, value)
        log_json_artifact(self.client, self.parent_run_id, summary, "summary.json", "sweep")
        best_config = self.sweep_dir / "best_config.yaml"
        if best_config.is_file():
            self.client.log_artifact(self.parent_run_id, str(best_config), "sweep")
        if self.checkpoint_policy == "best" and outcome.best is not None:
            log_checkpoint(self.client, outcome.best.info.run_id, Path(outcome.best.data.tags.get(TAG_RUN_DIR, "")))
        self.client.set_terminated(self.parent_run_id, "FINISHED" if outcome.finished else "FAILED")


def _create_parent(client: MlflowClient, experiment_id: str, sweep_name: str, sweep_dir: Path, space_file: Path,
                   space: Any, base_config: Config) -> str:
    params = getattr(space, "params", {}) or {}
    tags = {TAG_ROLE: "sweep", TAG_SWEEP: sweep_name, TAG_SWEEP_DIR: str(sweep_dir),
            "simtune.space_file": str(Path(space_file).resolve()),
            "simtune.base_experiment": str(getattr(space, "base", "")),
            "simtune.searched": ", ".join(params),
            "simtune.metric": str(getattr(space, "metric", SELECTION_METRIC)),
            "simtune.mode": str(getattr(space, "mode", "max")),
            **provenance_tags(base_config.seed)}
    run = client.create_run(experiment_id, run_name=sweep_name, tags=tags)
    run_id = run.info.run_id
    log_params(client, run_id, config.flatten(base_config))
    client.log_artifact(run_id, str(space_file), "sweep")
    log_json_artifact(client, run_id, config.to_dict(base_config), "base_config.yaml", "sweep")
    log_json_artifact(client, run_id, describe(base_config.seed), "provenance.json", "sweep")
    return str(run_id)


@dataclass(frozen=True)
class SweepOutcome:
    """Counts and the best child run (last evaluation of the selection metric) of a sweep."""

    total: int
    finished: int
    failed: int
    best: Run | None
    failed_trials: tuple[str, ...]
    metric: str = SELECTION_METRIC

    def metrics(self) -> dict[str, float]:
        out = {"trials/total": float(self.total), "trials/finished": float(self.finished),
               "trials/failed": float(self.failed)}
        if self.best is not None:
            for key in dict.fromkeys((self.metric, SELECTION_METRIC, "report/miou")):
                if key in self.best.data.metrics:
                    out[f"best/{key}"] = self.best.data.metrics[key]
        return out

    def tags(self) -> dict[str, str]:
        out = {"simtune.failed_trials": ", ".join(self.failed_trials) or "none",
               "simtune.best_selection": f"{self.metric} at each trial's last evaluation"}
        if self.best is not None:
            out["simtune.best_trial_id"] = self.best.data.tags.get(TAG_TRIAL, "")
            out["simtune.best_run_id"] = self.best.info.run_id
        return out


def sweep_outcome(children: list[Run], metric: str = SELECTION_METRIC, mode: str = "max") -> SweepOutcome:
    """Summarise a sweep's child runs (see ``SweepOutcome``)."""
    children = sorted(children, key=lambda r: r.data.tags.get(TAG_TRIAL, ""))  # ties go to the first trial
    finished = [r for r in children if r.info.status == "FINISHED" and metric in r.data.metrics]
    failed = [r for r in children if r.info.status == "FAILED"]
    sign = 1.0 if mode == "max" else -1.0

    def rank(run: Run) -> tuple[bool, float]:  # trials trained to the end first, as the sweep ranks
        return run.data.tags.get(TAG_STOPPED) != "true", sign * run.data.metrics[metric]

    best = max(finished, key=rank) if finished else None
    return SweepOutcome(len(children), len(finished), len(failed), best,
                        tuple(sorted(r.data.tags.get(TAG_TRIAL, r.info.run_id) for r in failed)), metric)
