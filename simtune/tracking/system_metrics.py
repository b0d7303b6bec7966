"""System metrics (``system/*``: CPU, memory, disk, network) of a sweep or retrain parent run.

Switched on through MLflow's public ``log_system_metrics`` switch, never its internal classes.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import threading
from collections.abc import Iterator

from simtune.tracking.store import one_line

_log = logging.getLogger(__name__)


def start_system_metrics(uri: str, run_id: str) -> SystemMetrics | None:
    """Start MLflow's sampler of this machine as ``system/*`` metrics of ``run_id``; returns its handle.

    It samples CPU, memory, disk and network with psutil every 10 s (MLflow's default;
    ``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`` changes it), NVIDIA GPUs too where ``pynvml``
    is installed (simtune does not require it), in a thread of this process, until
    ``finish()`` or until the run ends. A resumed run continues its earlier steps. None when
    psutil is missing or MLflow cannot resume the run.
    """
    if importlib.util.find_spec("psutil") is None:
        return None
    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)
    handle = SystemMetrics(uri, run_id)
    return handle if handle.start() else None


class SystemMetrics:
    """MLflow's system-metrics sampler of one run, switched on through MLflow's public API.

    MLflow starts its sampler with a fluent run (``mlflow.start_run(log_system_metrics=True)``)
    and stops it at ``mlflow.end_run``. Both happen in a thread that belongs to this handle:
    MLflow's active run is per thread, so the threads that log through ``MlflowClient`` with
    explicit run ids (the sweep's Ray driver; ``retrain``, whose model logging starts a fluent
    run of its own) never see an active run, and none is left behind after ``finish()``.
    """

    def __init__(self, uri: str, run_id: str) -> None:
        self.uri, self.run_id = uri, run_id
        self._started, self._stop = threading.Event(), threading.Event()
        self._running = False
        self._thread = threading.Thread(target=self._hold, name=f"system-metrics-{run_id[:8]}", daemon=True)

    def start(self) -> bool:
        """Start sampling; False when MLflow refused (the reason is logged as a warning)."""
        self._thread.start()
        self._started.wait()
        return self._running

    def finish(self) -> None:
        """Stop sampling and log the last samples; the run keeps its status (simtune ends it)."""
        self._stop.set()
        self._thread.join()

    def _hold(self) -> None:
        import mlflow

        try:
            with _fluent_tracking_uri(self.uri):
                mlflow.start_run(run_id=self.run_id, log_system_metrics=True)
            self._running = True
        except Exception as exc:  # a deleted run, an experiment set elsewhere in this process, ...
            _log.warning("simtune tracking: no system metrics for run %s (%s)", self.run_id, one_line(exc))
        finally:
            self._started.set()
        if not self._running:
            return
        self._stop.wait()
        try:
            with _fluent_tracking_uri(self.uri):  # end_run sets a status: the one the run has now
                mlflow.end_run(mlflow.MlflowClient(self.uri).get_run(self.run_id).info.status)
        except Exception as exc:
            _log.warning("simtune tracking: stopping the system metrics of run %s failed (%s)", self.run_id,
                         one_line(exc))


@contextlib.contextmanager
def _fluent_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API at ``uri`` for one call, then restore what was set before (or nothing).

    ``mlflow.set_tracking_uri`` also exports ``MLFLOW_TRACKING_URI``, which would become the
    store of every later simtune command in this process (``default_tracking_uri``). The
    thread that asked waits meanwhile (``start``, ``finish``); simtune's other writers name
    their store each time (``MlflowClient(uri)``, or ``set_tracking_uri`` right before a
    fluent call), so none of them depends on what is set between calls.
    """
    import mlflow

    before = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)  # type: ignore[arg-type]  # None unsets it, as before
