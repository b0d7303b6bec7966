"""MLflow tracking of sweeps, retrains and reports.

``store`` reaches the store and owns the sweep's parent run (``SweepTracker``);
``tune_callback`` logs each Tune trial as a child run from the Ray driver; ``figures``
draws the run and sweep figures. Ray is imported only by ``tune_callback``.
"""

from simtune.tracking.store import SweepTracker, default_tracking_uri

__all__ = ["SweepTracker", "default_tracking_uri"]
