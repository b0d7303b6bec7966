"""The function every Tune trial runs: one ``run_pipeline`` call, reported to Tune as it goes.

A trial's run directory is ``<sweep>/runs/<trial_id>/`` (absolute: trials run in their own
working directory). At every evaluation the trial reports the metrics with the global
``iteration`` (monotonic over both stages, so ASHA can stop a trial in either stage) and
``stage`` (1 or 2), with a ``tune.Checkpoint`` of the stage in progress. A retried trial
copies that checkpoint back into its run directory, unless the run directory is already
further along, and resumes mid-stage.

Failures come in two kinds. A crash (any exception) is retried by Tune from the last
checkpoint, up to ``max_failures`` times. A non-finite loss, or a user error (a
``SimtuneError`` such as a ConfigError or DataError), would only happen again, so the
trial writes ``failure.json``, reports ``failed=1`` with ``failure_reason`` and the worst
possible value of the sweep's metric (−inf when higher is better), so a searcher such as
Optuna learns the configuration failed instead of seeing its last good evaluation, and returns
normally: Tune never retries a trial that returned, and the sweep summary and the MLflow
child run mark it failed from ``failure.json``.

Extra callbacks come from the caller: ``run_trial`` runs the ones its ``callbacks`` factories make
for the trial, after the reporter. The callers take them from ``options.trial_callbacks``: the
``module:function`` hooks that ``SIMTUNE_TRIAL_CALLBACKS`` names (none when it is unset), which is
how the test suite plugs in ``simtune.testing.fault_hook`` to crash or fail a chosen trial.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ray import tune

from simtune.keys import REPORT_METRIC, SELECTION_METRIC
from simtune.data.check import FILES_OPENED
from simtune.rundir import RunDir, read_json, write_json
from simtune.schema import Config, direction_sign
from simtune.results.sweepdir import SweepDir
from simtune.search.space import SearchSpace, final_iteration
from simtune.errors import NonFiniteLoss, SimtuneError
from simtune.search.replicates import config_values
from simtune.sweep.options import CallbackFactory
from simtune.train.loop import Callback

STAGE_NUMBER = {"stage0": 0, "stage1": 1, "stage2": 2}
POSITION = "position.json"  # in a Tune checkpoint: which stage and iteration it holds


@dataclass(frozen=True)
class TrialJob:
    """What one trial trains: its resolved config, run directory and shared-stage stores."""

    cfg: Config
    run_dir: Path  # absolute: trials run in their own working directory
    stage0_cache: Path | None = None
    stage1_cache: Path | None = None
    metric: str = SELECTION_METRIC  # the selection metric and whether higher is better (a failure's value)
    mode: str = "max"
    swept: dict[str, Any] = dataclasses.field(default_factory=dict)  # the values the fault hook matches
    until: str | None = None  # a shared stage trained on its own: "stage0" or "stage1" (run_pipeline's until)

    @property
    def final_step(self) -> int:
        """The global iteration of the job's last evaluation."""
        return {"stage0": 0, "stage1": self.cfg.stage1.iters}.get(self.until or "", final_iteration(self.cfg))


@dataclass(frozen=True)
class TrialContext:
    """What every trial of a sweep shares: the space and the sweep folder (absolute)."""

    space: SearchSpace
    sweep_dir: Path
    share_stage1: bool = True
    share_stage0: bool = True

    def run_dir(self, trial_id: str) -> Path:
        return SweepDir(self.sweep_dir).run(trial_id).root

    def job(self, params: dict[str, Any], trial_id: str) -> TrialJob:
        """The trial with sampled ``params`` (dotted keys) and Tune's ``trial_id``."""
        return TrialJob(self.space.config_for(params), self.run_dir(trial_id), stage0_cache=self.stage0_cache,
                        stage1_cache=self.stage1_cache, metric=self.space.metric, mode=self.space.mode,
                        swept=config_values(params))

    @property
    def stage1_cache(self) -> Path | None:
        return SweepDir(self.sweep_dir).stage1_cache if self.share_stage1 else None

    @property
    def stage0_cache(self) -> Path | None:
        return SweepDir(self.sweep_dir).stage0_cache if self.share_stage0 else None


class JobSource(Protocol):
    def job(self, params: dict[str, Any], trial_id: str) -> TrialJob: ...


def run_trial(params: dict[str, Any], context: JobSource, callbacks: Sequence[CallbackFactory] = ()) -> None:
    """Tune function trainable: the job ``context`` makes of ``params`` (a sweep's sampled keys, a
    retrain's seed), trained by ``run_pipeline`` with the callbacks that ``callbacks`` make for it
    (after the reporter), and reported to Tune.

    A diverged run (non-finite loss) or a user error (``SimtuneError``: a bad config or
    dataset that the pre-flight could not see) reports ``failed=1`` and returns: it would
    fail the same way again, so it is not retried.
    Raises:
        Exception: anything else; Tune retries from the last checkpoint.
    """
    from simtune.train.pipeline import run_pipeline

    job = context.job(params, tune.get_context().get_trial_id())
    run_dir = job.run_dir
    placement = trial_placement(job.cfg)
    cfg = dataclasses.replace(job.cfg, data=dataclasses.replace(job.cfg.data, num_workers=placement["num_workers"]))
    reporter = TuneReporter(run_dir, final_step=job.final_step, metric=job.metric, mode=job.mode)
    extra = [callback for factory in callbacks for callback in factory(run_dir, job.swept)]
    previous = RunDir(run_dir).failure_reason()
    if previous is not None:  # a diverged trial restarted by a --resume: it would only diverge again
        reporter.report_failure(previous)
        return
    _log_attempt(run_dir, _restore(run_dir), placement)
    try:
        # resume=True: the run dir of a retried or resumed trial is not empty, and that is expected.
        # The command's pre-flight decoded every file once (data.check): a trial opens a few.
        run_pipeline(cfg, run_dir, callbacks=[reporter, *extra], resume=True, stage1_cache=job.stage1_cache,
                     stage0_cache=job.stage0_cache, check_files=FILES_OPENED,
                     run_info={"placement": placement}, until=job.until)
        reporter.report_final()
    except (NonFiniteLoss, SimtuneError) as exc:  # would only happen again: never retried
        reporter.report_failure(f"{type(exc).__name__}: {exc}")
    finally:
        _release_gpu_memory()


class TuneReporter(Callback):
    """Reports every evaluation to Tune with a checkpoint of the stage in progress.

    The run's last evaluation (``final_step``) is held back until ``report_final``, after
    the pipeline has written the run directory: a scheduler may stop the trial at that
    report (ASHA at ``max_t``), and a trial stopped there must still be complete on disk.
    """

    def __init__(self, run_dir: Path, final_step: int | None = None, metric: str = SELECTION_METRIC,
                 mode: str = "max") -> None:
        self.run_dir = run_dir
        self.final_step = final_step
        self.metric = metric  # the sweep's selection metric, and whether higher is better
        self.mode = mode
        self.last: dict[str, Any] = {}
        self.losses: dict[str, float] = {}
        self.pending: dict[str, Any] | None = None

    def on_log(self, stage: str, step: int, values: dict[str, float]) -> None:
        """Keep the latest averaged losses and lr; they ride along with the next evaluation."""
        self.losses = dict(values)

    def on_eval(self, stage: str, step: int, metrics: dict[str, float], checkpoint: Path | None) -> None:
        self.last = {**self.losses, **_result(metrics, step, stage)}
        if step == self.final_step and stage != "stage0":
            self.pending = self.last
        elif checkpoint is None or stage == "stage0":  # replayed from a shared cache, or the warm start
            tune.report(self.last)
        else:
            with self._checkpoint_dir(stage, step, checkpoint) as folder:
                tune.report(self.last, checkpoint=tune.Checkpoint.from_directory(str(folder)))

    def report_final(self) -> None:
        """Report the run's last evaluation, once the run directory is complete.

        An attempt that found the run already complete (a driver killed after the run was
        written but before Tune heard of its end) reports the last evaluation from disk.
        """
        if self.pending is None:
            last = RunDir(self.run_dir).last_evaluation()
            if last is None:
                return
            stage, record = last
            self.pending = _result({k: v for k, v in record.items() if k != "step"}, int(record["step"]), stage)
        tune.report(self.pending)
        self.pending = None

    def report_failure(self, reason: str) -> None:
        """Record a failure that must not be retried in the run dir and in Tune's results.

        The sweep's metric is reported as its worst value (−inf, or +inf when lower is better):
        the searcher ranks a failed configuration last, not at its last good evaluation. MLflow
        and the summary drop the non-finite value; the run dir keeps every evaluation.
        """
        failure = RunDir(self.run_dir).failure
        write_json(failure, {**(read_json(failure) or {}), "reason": reason, "time": time.time()})
        worst = -direction_sign(self.mode) * math.inf
        tune.report({**(self.last or {"iteration": 0, "stage": 0}), self.metric: worst, "failed": 1,
                     "failure_reason": reason})

    @contextlib.contextmanager
    def _checkpoint_dir(self, stage: str, step: int, checkpoint: Path) -> Iterator[Path]:
        """A temporary folder: ``position.json``, ``<stage>/checkpoint.pt``, ``<stage>/history.json``,
        and the run's ``config.yaml`` / ``run.json``. Tune copies it before ``report`` returns."""
        run = RunDir(self.run_dir)
        with tempfile.TemporaryDirectory(dir=self.run_dir, prefix=".tune-checkpoint-") as tmp:
            copy = RunDir(Path(tmp))
            copy.stage(stage).mkdir()
            _link_or_copy(checkpoint, copy.checkpoint(stage))
            for source, target in ((run.history_file(stage), copy.history_file(stage)),
                                   (run.config_file, copy.config_file), (run.run_file, copy.run_file)):
                if source.is_file():
                    _link_or_copy(source, target)
            write_json(copy.root / POSITION, {"stage": stage, "iteration": step})
            yield copy.root


def _result(metrics: dict[str, float], step: int, stage: str) -> dict[str, Any]:
    """The reported result; Tune's live table shows its first four entries."""
    result: dict[str, Any] = {"iteration": step, "stage": STAGE_NUMBER[stage]}
    result.update({key: metrics[key] for key in (SELECTION_METRIC, REPORT_METRIC) if key in metrics})
    result.update({key: value for key, value in metrics.items() if key not in result})
    return result


# ----------------------------------------------------------------------------- restoring


def _restore(run_dir: Path) -> int | None:
    """Copy Tune's checkpoint into ``run_dir`` unless the run dir is at least as far along.

    Returns:
        the global iteration of the checkpoint that was copied in, or None.
    """
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder_name:
        folder = Path(folder_name)
        position = json.loads((folder / POSITION).read_text())
        if _run_dir_position(RunDir(run_dir), position["stage"]) >= position["iteration"]:
            return None
        for file in folder.rglob("*"):
            if file.is_file() and file.name != POSITION:
                target = run_dir / file.relative_to(folder)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, target)
    return int(position["iteration"])


def _run_dir_position(run: RunDir, stage: str) -> float:
    """How far a stage got on disk: +inf when done, -1 without a checkpoint, else its last evaluation."""
    if run.done(stage).is_file():
        return float("inf")
    if not run.checkpoint(stage).is_file():
        return -1.0
    history = run.history(stage)
    return float(history[-1]["step"]) if history else 0.0


def trial_placement(cfg: Config) -> dict[str, Any]:
    """What this trial was given: Ray's CPUs and GPU ids, the node, ``CUDA_VISIBLE_DEVICES``, the
    torch device it will train on, and the loader workers ``data.num_workers`` comes to.

    A trial given GPUs that torch cannot see (a CPU build of torch, a node that declares GPUs it
    lacks) trains on the CPU with ``runtime.device: auto``: it says so on stderr, and the record
    shows it.
    """
    import ray
    import torch

    from simtune.data.loaders import worker_count
    from simtune.train.builders import device_type

    context = ray.get_runtime_context()
    assigned = context.get_assigned_resources()
    cuda = torch.cuda.is_available()
    gpu_ids = [str(i) for i in context.get_accelerator_ids().get("GPU", [])]
    device = device_type(cfg.runtime.device)
    if gpu_ids and device == "cpu":
        print(f"simtune trial: given GPU(s) {', '.join(gpu_ids)} but torch sees no CUDA device "
              f"(torch {torch.__version__}): training on the CPU", file=sys.stderr)
    return {
        "node": context.get_node_id(), "host": socket.gethostname(), "cpus": assigned.get("CPU", 0.0),
        "gpus": assigned.get("GPU", 0.0), "gpu_ids": gpu_ids,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "device": device, "device_name": torch.cuda.get_device_name() if device == "cuda" and cuda else "cpu",
        "num_workers": worker_count(cfg.data.num_workers, assigned.get("CPU", 1.0)), "start": time.time(),
    }


def _log_attempt(run_dir: Path, restored: int | None, placement: dict[str, Any]) -> None:
    """One line per start of this trial in ``attempts.jsonl``: retries and resumes are visible,
    with where each attempt ran."""
    run_dir.mkdir(parents=True, exist_ok=True)
    attempts = RunDir(run_dir).attempts
    line = {"time": time.time(), "resumed": _has_files(run_dir, ignore=(attempts.name,)),
            "restored_checkpoint_iteration": restored, "placement": placement}
    with open(attempts, "a") as handle:
        handle.write(json.dumps(line) + "\n")


# ----------------------------------------------------------------------------- small helpers


def _has_files(folder: Path, ignore: tuple[str, ...] = ()) -> bool:
    return folder.is_dir() and any(p.name not in ignore for p in folder.iterdir())


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _release_gpu_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
