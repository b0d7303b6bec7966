"""Reaching an MLflow store: its URI, a quick check that it answers, a client, a moved folder.

Part of ``simtune.tracking.store`` (see its docstring); import from there.
"""

from __future__ import annotations

import os
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from simtune.errors import TrackingError
from simtune.files import locked
from simtune.results.sweepdir import SweepDir
from simtune.rundir import read_json
from simtune.tracking.naming.tags import TAG_ARTIFACT_ROOT

if TYPE_CHECKING:
    from mlflow import MlflowClient

_PROBE_TIMEOUT_S = 3.0


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


def sweep_store(sweep_dir: Path, given: str | None) -> str:
    """The store of a sweep: the one recorded in its folder (``tracking.json``, written when it
    started), else ``given``, else ``default_tracking_uri`` of its folder of sweeps. Resuming,
    retraining and reporting a sweep thus log where it started, wherever they run.

    Raises:
        TrackingError: ``given`` names another store than the recorded one.
    """
    recorded = (read_json(SweepDir(sweep_dir).tracking) or {}).get("tracking_uri")
    wanted = normalise_uri(given) if given else None
    if recorded and wanted and wanted != recorded:
        raise TrackingError(f"--tracking-uri {given}: sweep {Path(sweep_dir).name} logs to {recorded} (recorded in "
                            f"its tracking.json); leave --tracking-uri out, or give that store")
    return str(recorded or wanted or default_tracking_uri(Path(sweep_dir).parent))


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

def _quote(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("'", "\\'")
