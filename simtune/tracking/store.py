"""The MLflow store: reaching it, finding runs again by their tags, logging params, metrics and artifacts.

**One store per storage folder.** Unless ``--tracking-uri`` or ``MLFLOW_TRACKING_URI`` says
otherwise, every sweep, retrain and report of a storage folder (``./sweeps``) writes to
``sqlite:///<storage>/mlflow.db``, with artifacts in ``<storage>/mlartifacts/<experiment>/``:
one ``mlflow ui`` shows every sweep, and sweeps of one search space share an experiment
(``simtune.tracking.naming``).

**A storage folder stays where it was created.** MLflow 3 writes every artifact location as
an absolute path and cannot change one, so a moved folder's artifacts are looked for under
the old path and a copy would write into the original. ``connect`` notices
(``check_artifact_root``) and stops with one line: move the folder back, or link the old
path to the new one (docs/mlflow.md). Nothing here writes into MLflow's tables.

**One writer per process.** Within a sweep every write happens in the Ray driver; ``retrain``
and ``report`` write from the CLI process. Several such processes may share one SQLite
store (two sweeps at once): SQLite serialises their writes, MLflow waits up to 20 s for the
lock, and the one step that is not safe to run twice at once -- creating the database
tables -- happens under a file lock (``connect``).

Runs are found again by tags, never by name, so a resumed sweep reuses its parent run and
its trials' child runs instead of duplicating them::

    parent   simtune.role=sweep   simtune.sweep=<name>   simtune.sweep_dir=<dir>
    child    simtune.role=trial   simtune.trial_id=<id>  mlflow.parentRunId=<parent>
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from simtune.errors import TrackingError
from simtune.files import locked
from simtune.provenance import describe

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

EXPERIMENT = "simtune"
CHECKPOINT_POLICIES = ("best", "all", "none")

TAG_ROLE = "simtune.role"  # sweep | trial | configuration | retrain | retrain_seed
TAG_SWEEP = "simtune.sweep"
TAG_SWEEP_DIR = "simtune.sweep_dir"
TAG_TRIAL = "simtune.trial_id"
TAG_RUN_DIR = "simtune.run_dir"
TAG_FAILURE = "simtune.failure_reason"
TAG_STOPPED = "simtune.stopped_early"  # "true" when a scheduler (ASHA) ended the trial early
TAG_REPLICATE = "simtune.replicate"  # k of a trial: it trained with seed = base seed + k
TAG_CONFIG = "simtune.config"  # a configuration run's swept values, "key=value, ..."
TAG_CONFIG_RANK = "simtune.config_rank"  # a configuration run's place in the sweep's ranking
TAG_PARENT = "mlflow.parentRunId"
TAG_PLACEMENT = "simtune.placement."  # + node, gpu_ids, cuda_visible_devices, device, ...: where a trial ran

STEP_KEYS = ("step", "iteration")  # the global iteration: MLflow's step, never a metric of its own
_PROBE_TIMEOUT_S = 3.0
_MAX_PARAMS_PER_BATCH = 100  # MLflow's log_batch limits
_MAX_METRICS_PER_BATCH = 1000
_log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- reaching the store


def default_tracking_uri(storage: Path) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<storage>/mlflow.db`` (absolute).

    Args:
        storage: the folder of sweeps (``./sweeps``), not one sweep's folder.
    """
    env = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if env:
        return normalise_uri(env)
    return "sqlite:///" + str((Path(storage) / "mlflow.db").resolve())


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
            file whose folder cannot be created or written, or a file store (``./mlruns``:
            MLflow 3 still reads it but deprecates it, and it has no model registry aliases).
    """
    if uri.startswith(("http://", "https://")):
        _probe_http(uri)
        return
    path = sqlite_path(uri)
    if path is not None:
        _check_sqlite_folder(uri, path)
        return
    if uri.startswith("file:") or "://" not in uri:
        raise TrackingError(f"tracking URI {uri}: simtune does not write MLflow's deprecated file store; use "
                            "sqlite:///<absolute path>/mlflow.db or http://<host>:<port>")


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
    """A client for ``uri`` (tracking and model registry), after ``check_store``.

    A SQLite store is created under a lock file beside it, because MLflow's table creation
    fails when two processes run it at once.

    Raises:
        TrackingError: ``check_store``'s errors, or a SQLite store whose folder was moved or
            copied away from its artifacts (``check_artifact_root``).
    """
    check_store(uri)
    from mlflow import MlflowClient

    path = sqlite_path(uri)
    if path is None:
        return MlflowClient(tracking_uri=uri, registry_uri=uri)
    with locked(path.with_name(f".{path.name}.lock")):
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        client.search_experiments(max_results=1)  # creates or upgrades the tables
        client.search_registered_models(max_results=1)
    check_artifact_root(client, uri)
    return client


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message, for one-line errors and tags."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:500]


# ----------------------------------------------------------------------------- a moved storage folder


TAG_ARTIFACT_ROOT = "simtune.artifact_root"  # experiment tag: the mlartifacts/ folder it was created under


def artifact_root(uri: str) -> str | None:
    """``file://<folder of the database>/mlartifacts`` for a SQLite store, else None (a server decides)."""
    path = sqlite_path(uri)
    return (path.parent / "mlartifacts").as_uri() if path is not None else None


def check_artifact_root(client: MlflowClient, uri: str) -> None:
    """Stop when this SQLite store's artifacts are recorded under another folder than its own.

    Each experiment simtune creates records its artifact root (``simtune.artifact_root``).
    MLflow keeps every run's and model version's artifact path as written, so when that
    root is not the ``mlartifacts/`` beside this database (nor a link to it), the storage
    folder was moved or copied: its artifacts are read, and new ones would be written,
    under the old folder. Experiments simtune did not create are not looked at.

    Raises:
        TrackingError: one line naming the old folder and how to open the store again.
    """
    root = artifact_root(uri)
    if root is None:
        return
    for experiment in client.search_experiments(max_results=1000,
                                                filter_string=f"tags.`{TAG_ARTIFACT_ROOT}` != '{_quote(root)}'"):
        old = _file_path(experiment.tags[TAG_ARTIFACT_ROOT])
        if not _same_folder(old, _file_path(root)):
            raise TrackingError(_moved_message(uri, old.parent, _file_path(root).parent))


def _moved_message(uri: str, old: Path, new: Path) -> str:
    if old.exists():
        return (f"tracking store {uri} is a copy of {old}: MLflow keeps absolute artifact paths, so the copy would "
                f"read and write its artifacts and models in {old}/mlartifacts; open the original instead")
    return (f"tracking store {uri} was moved from {old}: MLflow keeps absolute artifact paths, so its artifacts "
            f"and models are still looked for in {old}/mlartifacts; move the folder back, or link the old path "
            f"to it (ln -s {new} {old})")


def _file_path(uri: str) -> Path:
    return Path(urllib.request.url2pathname(urllib.parse.urlparse(uri).path))


def _same_folder(a: Path, b: Path) -> bool:
    """The same folder by its real path (a link to it counts), or by the file system (a bind mount)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet: mlartifacts/ appears with the first artifact)
        return False


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
              if key not in STEP_KEYS and _is_number(value) and int(record["step"]) not in logged.get(key, ())]
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
