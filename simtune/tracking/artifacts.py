"""What a run directory sends to MLflow: its records, histories, figures, final model; and
``RunLogger``, the training callback that logs a pipeline's numbers as they happen."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simtune.rundir import RUN_FILES, STAGES, RunDir, last_evaluation
from simtune import figures
from simtune.tracking.naming.tags import TAG_CHECKPOINT
from simtune.tracking.store import STEP_KEYS, find_sweep_parent, log_metrics, one_line
from simtune.train.loop import Callback

if TYPE_CHECKING:
    from mlflow.entities import Run

log = logging.getLogger(__name__)

PREDICTION_SAMPLES = 3  # selection images drawn per trial (Figure 4 layout)


def log_trial_artifacts(client: Any, run_id: str, run_dir: Path, *, samples: int = PREDICTION_SAMPLES) -> None:
    """Config, provenance, thresholds, histories and figures of a run directory, as artifacts."""
    run = RunDir(run_dir)
    for name in RUN_FILES:
        if (run.root / name).is_file():
            client.log_artifact(run_id, str(run.root / name), "run")
    if run.thresholds.is_file():
        client.log_artifact(run_id, str(run.thresholds), "pseudo")
    for stage in STAGES:
        if run.history_file(stage).is_file():
            client.log_artifact(run_id, str(run.history_file(stage)), f"history/{stage}")
    log_figures(client, run_id, run_dir, samples=samples)


def log_figures(client: Any, run_id: str, run_dir: Path, *, samples: int = PREDICTION_SAMPLES) -> list[str]:
    """Draw and log the run's figures; a figure that fails is skipped with a warning.

    Returns:
        the artifact names logged, e.g. ``["figures/miou_curve.png", ...]``.
    """
    run = RunDir(run_dir)
    histories = run.histories()
    last = last_evaluation(histories)
    stage1_end = run.config().stage1.iters if run.has_config() else None
    makers = {
        "miou_curve.png": lambda: figures.miou_curve(histories, f"{run_dir.name}: mIoU over iterations",
                                                     stage1_end) if histories else None,
        "class_iou.png": lambda: figures.class_iou_bars(last[1], f"{run_dir.name}: per-class IoU, {last[0]} "
                                                       f"iteration {last[1]['step']}") if last else None,
        "predictions.png": lambda: figures.prediction_samples(run_dir, samples) if samples else None,
    }
    logged = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in makers.items():
            try:
                fig = make()
            except Exception as exc:  # a figure is a convenience; the metrics are already logged
                log.warning("simtune tracking: figure %s of %s skipped: %s", name, run_dir, one_line(exc))
                continue
            if fig is not None:
                client.log_artifact(run_id, str(figures.save_figure(fig, Path(tmp) / name)), "figures")
                logged.append(f"figures/{name}")
    return logged


def log_checkpoint(client: Any, run_id: str, run_dir: Path) -> str | None:
    """Log the final segmenter weights as ``checkpoint/<stage>/model.pt`` with ``checkpoint/config.yaml``.

    The ``checkpoint/`` folder, once downloaded, is a run directory ``simtune eval`` reads.
    Returns:
        the stage whose model was logged, or None when the run has no final model.
    """
    run = RunDir(run_dir)
    for stage in reversed(STAGES):
        model = run.model(stage)
        if model.is_file():
            client.log_artifact(run_id, str(model), f"checkpoint/{stage}")
            if run.has_config():
                client.log_artifact(run_id, str(run.config_file), "checkpoint")
            client.set_tag(run_id, TAG_CHECKPOINT, f"checkpoint/{stage}/model.pt")
            return stage
    return None


def log_to_sweep_parent(client: Any, experiment: str, sweep_dir: Path, folder: Path, path: str) -> Run | None:
    """Log ``folder`` as ``path/`` of the sweep's parent run in ``experiment``; that run, or None (nothing
    logged) when the store holds no such experiment or run."""
    found = client.get_experiment_by_name(experiment)
    parent = find_sweep_parent(client, found.experiment_id, sweep_dir.name, sweep_dir) if found else None
    if parent is not None:
        client.log_artifacts(parent.info.run_id, str(folder), path)
    return parent


class RunLogger(Callback):
    """Logs a pipeline's losses and evaluations to one MLflow run as they happen."""

    def __init__(self, client: Any, run_id: str) -> None:
        self.client = client
        self.run_id = run_id
        self.logged: dict[str, set[int]] = {}

    def on_log(self, stage: str, step: int, values: dict[str, float]) -> None:
        self._log(step, values)

    def on_eval(self, stage: str, step: int, metrics: dict[str, float], checkpoint: Path | None) -> None:
        self._log(step, {**metrics, "stage": float(stage[-1])})

    def _log(self, step: int, values: dict[str, float]) -> None:
        values = {k: v for k, v in values.items() if k not in STEP_KEYS}  # the iteration is the step
        log_metrics(self.client, self.run_id, [(k, v, step) for k, v in values.items()])
        for key in values:
            self.logged.setdefault(key, set()).add(step)


