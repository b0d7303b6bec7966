"""The MLflow store: reaching it (``connection``), finding runs again by their tags and logging params,
metrics and artifacts (``runs``); everything is imported from here.

**One store per storage folder.** Unless ``--tracking-uri`` or ``MLFLOW_TRACKING_URI`` says
otherwise, every sweep, retrain and report of a storage folder (``./sweeps``) writes to
``sqlite:///<storage>/mlflow.db``, with artifacts in ``<storage>/mlartifacts/<experiment>/``:
one ``mlflow ui`` shows every sweep, and sweeps of one search space share an experiment
(``simtune.tracking.naming``). **One store per sweep**: the store a sweep started with is
recorded in its folder (``tracking.json``), and ``--resume``, ``retrain`` and ``report`` log
there wherever they run (``sweep_store``); another ``--tracking-uri`` for that sweep is refused.

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

from simtune.tracking.store.connection import (
    artifact_root, check_artifact_root, check_store, connect, default_tracking_uri, normalise_uri, one_line,
    sqlite_path, sweep_store,
)
from simtune.tracking.store.runs import (
    CHECKPOINT_POLICIES, EXPERIMENT, STEP_KEYS, create_run, end_run, find_sweep_parent, log_history,
    log_json_artifact, log_metrics, log_params, param_text, provenance_tags, resume_run, search, set_tags,
)

__all__ = [
    "artifact_root", "check_artifact_root", "check_store", "connect", "default_tracking_uri", "normalise_uri",
    "one_line", "sqlite_path", "sweep_store", "CHECKPOINT_POLICIES", "EXPERIMENT", "STEP_KEYS", "create_run",
    "end_run", "find_sweep_parent", "log_history", "log_json_artifact", "log_metrics", "log_params", "param_text",
    "provenance_tags", "resume_run", "search", "set_tags",
]
