"""``simtune retrain --best``: retrain a sweep's best configuration over several seeds.

The best trial is the sweep's first by ``simtune.sweep.results.rank`` (the selection
metric, ``val/miou`` on frankfurt, at its *last* evaluation -- not its best-ever one). Its resolved config runs
the full two-stage pipeline for seeds ``base + 0 .. base + N-1``; the held-out report
split (``report/miou``, lindau + munster) gives mean ± std over the seeds, optionally next
to the runner-up's. The seed run with the best selection metric is logged as an MLflow
pytorch model and registered with the alias ``champion``.

MLflow layout: one ``retrain`` parent run tagged with the sweep's parent run id, a child
run per (candidate, seed). Run directories: ``<sweep>/retrain/<trial>-x<scale>/seed<seed>/``;
a finished one is reused, so an interrupted retrain continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from simtune import config
from simtune.config import Config
from simtune.errors import ConfigError, TrackingError
from simtune.rundir import RunDir, load_segmenter_state
from simtune.sweep.report import mean_std
from simtune.sweep.results import TrialOutcome, find_sweep, load_trials, rank_trials, selection_rule
from simtune.tracking.artifacts import RunLogger, log_trial_artifacts
from simtune.tracking.store import (EXPERIMENT, TAG_PARENT, TAG_ROLE, TAG_RUN_DIR, TAG_SWEEP, TAG_SWEEP_DIR,
                                    TAG_TRIAL, connect, default_tracking_uri, ensure_experiment, find_sweep_parent,
                                    log_history, log_metrics, log_params, normalise_uri, one_line, provenance_tags)
from simtune.train.loop import NonFiniteLoss

CHAMPION = "champion"
TAG_SWEEP_PARENT = "simtune.sweep_parent_run_id"


@dataclass(frozen=True)
class SeedRun:
    """One retraining of one configuration with one seed."""

    seed: int
    run_dir: Path
    run_id: str
    final: dict[str, float]  # last evaluation of the last stage; {} if it diverged
    failure: str | None = None


@dataclass
class Candidate:
    """A sweep trial being retrained (``role`` is "best" or "runner_up")."""

    role: str
    trial: TrialOutcome
    runs: list[SeedRun] = field(default_factory=list)

    def spread(self, metric: str) -> tuple[float, float, int]:
        """(mean, sample std, n) of ``metric`` over the seeds that finished."""
        values = [r.final[metric] for r in self.runs if metric in r.final]
        mean, std = mean_std(values)
        return mean, std, len(values)


@dataclass
class RetrainResult:
    """What ``retrain_best`` trained, logged and registered."""

    sweep_dir: Path
    metric: str
    mode: str
    tracking_uri: str
    parent_run_id: str
    sweep_parent_run_id: str | None
    candidates: list[Candidate]
    model_name: str | None = None
    model_version: str | None = None
    champion: SeedRun | None = None
    notes: list[str] = field(default_factory=list)


def scale_iters(cfg: Config, scale: float) -> Config:
    """``cfg`` with both stages' ``iters`` and ``schedule_iters`` and ``eval.every`` times ``scale``."""
    def times(n: int) -> int:
        return max(1, round(n * scale))

    return dataclasses.replace(
        cfg,
        stage1=dataclasses.replace(cfg.stage1, iters=times(cfg.stage1.iters), schedule_iters=times(cfg.stage1.schedule_iters)),
        stage2=dataclasses.replace(cfg.stage2, iters=times(cfg.stage2.iters), schedule_iters=times(cfg.stage2.schedule_iters)),
        eval=dataclasses.replace(cfg.eval, every=times(cfg.eval.every)),
    )


def retrain_best(*, storage: Path, sweep: str | None = None, seeds: int = 3, iters_scale: float = 1.0,
                 compare_runner_up: bool = False, tracking_uri: str | None = None, model_name: str | None = None,
                 progress: bool = False) -> RetrainResult:
    """Retrain the best trial (and the runner-up) of a sweep for ``seeds`` seeds; register the champion.

    Args:
        storage: folder of sweep folders; ``sweep`` None = the most recent sweep there.
        iters_scale: multiplies stage iters, schedule lengths and ``eval.every``.
        tracking_uri: None = the sweep's store (``default_tracking_uri``).
        model_name: registered model name; None = ``simtune-<sweep>``.
    Raises:
        ConfigError: bad arguments, or a sweep without a finished trial.
        TrackingError: the store cannot be reached or written, before any training.
    """
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, but got {seeds}")
    if not iters_scale > 0:
        raise ConfigError(f"--iters-scale must be > 0, but got {iters_scale}")
    result = _plan(find_sweep(storage, sweep), compare_runner_up, tracking_uri)
    client = connect(result.tracking_uri)
    experiment_id = ensure_experiment(client, EXPERIMENT, result.tracking_uri)
    sweep_parent = find_sweep_parent(client, experiment_id, result.sweep_dir.name, result.sweep_dir)
    result.sweep_parent_run_id = sweep_parent.info.run_id if sweep_parent else None
    result.parent_run_id = _create_parent(client, experiment_id, result, seeds, iters_scale)
    try:
        for candidate in result.candidates:
            for index in range(seeds):
                candidate.runs.append(_train_seed(client, experiment_id, result, candidate, index, iters_scale,
                                                  progress))
        _log_spread(client, result)
        _register(client, result, model_name or f"simtune-{result.sweep_dir.name}")
    except KeyboardInterrupt:
        client.set_terminated(result.parent_run_id, "KILLED")
        raise
    except BaseException:
        client.set_terminated(result.parent_run_id, "FAILED")
        raise
    client.set_terminated(result.parent_run_id, "FINISHED")
    return result


def _plan(sweep_dir: Path, compare_runner_up: bool, tracking_uri: str | None) -> RetrainResult:
    """The candidates (best, runner-up) by the sweep's selection rule, and the store to log to."""
    metric, mode = selection_rule(sweep_dir)
    ranked = rank_trials(load_trials(sweep_dir), metric, mode)
    if not ranked:
        raise ConfigError(f"{sweep_dir}: no finished trial with {metric}; nothing to retrain")
    roles = ["best", "runner_up"][: 2 if compare_runner_up else 1]
    uri = normalise_uri(tracking_uri) if tracking_uri else default_tracking_uri(sweep_dir)
    result = RetrainResult(sweep_dir, metric, mode, uri, "", None,
                           [Candidate(role, trial) for role, trial in zip(roles, ranked)])
    if compare_runner_up and len(ranked) < 2:
        result.notes.append("no runner-up to compare: the sweep has a single finished trial")
    return result


def _create_parent(client: Any, experiment_id: str, result: RetrainResult, seeds: int, scale: float) -> str:
    best = result.candidates[0].trial
    tags = {TAG_ROLE: "retrain", TAG_SWEEP: result.sweep_dir.name, TAG_SWEEP_DIR: str(result.sweep_dir),
            TAG_SWEEP_PARENT: result.sweep_parent_run_id or "none", TAG_TRIAL: best.trial_id,
            "simtune.selection": f"{result.metric} ({result.mode}) at each trial's last evaluation, not best-ever",
            **provenance_tags(best.params.get("seed", 0))}
    if len(result.candidates) > 1:
        tags["simtune.runner_up_trial_id"] = result.candidates[1].trial.trial_id
    run = client.create_run(experiment_id, run_name=f"retrain-{result.sweep_dir.name}-{best.trial_id}", tags=tags)
    log_params(client, run.info.run_id, {"seeds": seeds, "iters_scale": scale, "best_trial": best.trial_id})
    return str(run.info.run_id)


def _train_seed(client: Any, experiment_id: str, result: RetrainResult, candidate: Candidate, index: int,
                scale: float, progress: bool) -> SeedRun:
    """Run (or reuse) the pipeline for one seed and log it as a child of the retrain run."""
    from simtune.train.pipeline import run_pipeline

    trial = candidate.trial
    base = RunDir(trial.run_dir).config()
    cfg = dataclasses.replace(scale_iters(base, scale), seed=base.seed + index)
    out = result.sweep_dir / "retrain" / f"{trial.trial_id}-x{scale:g}" / f"seed{cfg.seed}"
    resume = _reusable(out, cfg)
    tags = {TAG_PARENT: result.parent_run_id, TAG_ROLE: "retrain_seed", TAG_SWEEP: result.sweep_dir.name,
            TAG_TRIAL: trial.trial_id, TAG_RUN_DIR: str(out), "simtune.candidate": candidate.role,
            "simtune.seed": str(cfg.seed)}
    run_id = str(client.create_run(experiment_id, run_name=f"{candidate.role}-{trial.trial_id}-seed{cfg.seed}",
                                   tags=tags).info.run_id)
    log_params(client, run_id, config.flatten(cfg))
    logger = RunLogger(client, run_id)
    try:
        pipeline = run_pipeline(cfg, out, callbacks=[logger], resume=resume, progress=progress)
    except NonFiniteLoss as exc:  # a diverged seed counts as a failure; the others still run
        client.set_tag(run_id, "simtune.failure_reason", str(exc))
        client.set_terminated(run_id, "FAILED")
        return SeedRun(cfg.seed, out, run_id, {}, str(exc))
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    log_history(client, run_id, RunDir(out).records(), logger.logged)
    log_trial_artifacts(client, run_id, out)
    client.set_terminated(run_id, "FINISHED")
    return SeedRun(cfg.seed, out, run_id, dict(pipeline.final))


def _reusable(out: Path, cfg: Config) -> bool:
    """True when ``out`` holds an earlier retrain of the same config (continue it)."""
    if not out.is_dir() or not any(out.iterdir()):
        return False
    existing = RunDir(out)
    if existing.has_config() and config.read_yaml(existing.config_file) == config.to_dict(cfg):
        return True
    raise ConfigError(f"{out}: holds a different run; delete it to retrain this configuration again")


def _log_spread(client: Any, result: RetrainResult) -> None:
    """Mean and std over seeds of each candidate, on the retrain parent run."""
    points = []
    for candidate in result.candidates:
        for metric in ("report/miou", result.metric):
            mean, std, n = candidate.spread(metric)
            points += [(f"{candidate.role}/{metric}_mean", mean, 0), (f"{candidate.role}/{metric}_std", std, 0)]
        points.append((f"{candidate.role}/seeds_finished", float(candidate.spread("report/miou")[2]), 0))
    log_metrics(client, result.parent_run_id, points)


# ----------------------------------------------------------------------------- the model registry


class LogitsOnly(nn.Module):
    """The segmenter as a plain tensor -> tensor model, for MLflow's pytorch flavor.

    Input: (N, 3, H, W) float32, BGR minus the ImageNet mean (``image_to_tensor``).
    Output: (N, K, h, w) logits at the network's output stride.
    """

    def __init__(self, segmenter: nn.Module) -> None:
        super().__init__()
        self.segmenter = segmenter

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.segmenter(image).logits


def _register(client: Any, result: RetrainResult, name: str) -> None:
    """Log the best candidate's best seed (by the selection metric) as a model; alias it ``champion``."""
    sign = 1.0 if result.mode == "max" else -1.0
    done = [r for r in result.candidates[0].runs if result.metric in r.final]
    if not done:
        return
    champion = max(done, key=lambda r: sign * r.final[result.metric])
    mean, std, n = result.candidates[0].spread("report/miou")
    model_uri = _log_model(result.tracking_uri, champion)
    import mlflow

    version = mlflow.register_model(model_uri, name, tags={
        "sweep": result.sweep_dir.name, "trial_id": result.candidates[0].trial.trial_id, "seed": str(champion.seed),
        "report_miou": f"{mean:.2f} ± {std:.2f} over {n} seeds", "selection": result.metric})
    client.set_registered_model_alias(name, CHAMPION, version.version)
    client.set_tag(result.parent_run_id, "simtune.registered_model", f"{name}@{CHAMPION} (version {version.version})")
    result.model_name, result.model_version, result.champion = name, str(version.version), champion


def _log_model(uri: str, run: SeedRun) -> str:
    """Log ``run``'s final segmenter into its MLflow run as a pytorch model; returns its model URI."""
    import mlflow
    import mlflow.pytorch
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    from simtune.models import build_segmenter

    cfg = RunDir(run.run_dir).config()
    m = cfg.model
    net = build_segmenter(m.backbone, m.num_classes, aspp_all_branches=m.aspp_all_branches,
                          multi_level=m.multi_level, width=m.width)
    net.load_state_dict(load_segmenter_state(RunDir(run.run_dir).weights()))
    signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 3, -1, -1))]),
                               outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, m.num_classes, -1, -1))]))
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)  # the pickle-format notice is expected
    try:
        with mlflow.start_run(run_id=run.run_id):
            # pickle, not pt2: pt2 needs a full-size input example stored with the model.
            info = mlflow.pytorch.log_model(LogitsOnly(net.eval()), name="segmenter", signature=signature,
                                            serialization_format="pickle",
                                            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
    except Exception as exc:
        raise TrackingError(f"could not log the champion model to {uri}: {one_line(exc)}") from exc
    return str(info.model_uri)


def format_result(result: RetrainResult) -> str:
    """The retrain outcome as terminal text."""
    lines = [f"sweep {result.sweep_dir.name} ({result.sweep_dir})",
             f"selection: {result.metric} ({result.mode}) at each trial's LAST evaluation (not its best-ever)",
             "mean ± sample std over seeds on the held-out report split (report/miou: lindau + munster)", ""]
    rows = [("candidate", "trial", "seeds", "report/miou", result.metric, "per seed report/miou")]
    for c in result.candidates:
        rep, sel = c.spread("report/miou"), c.spread(result.metric)
        per_seed = ", ".join(f"{r.seed}: {r.final['report/miou']:.2f}" if "report/miou" in r.final
                             else f"{r.seed}: failed" for r in c.runs)
        rows.append((c.role, c.trial.trial_id, f"{rep[2]}/{len(c.runs)}", f"{rep[0]:.2f} ± {rep[1]:.2f}",
                     f"{sel[0]:.2f} ± {sel[1]:.2f}", per_seed))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.append("")
    if result.model_version is not None and result.champion is not None:
        lines.append(f"registered model '{result.model_name}' version {result.model_version} as @{CHAMPION} "
                     f"(best trial, seed {result.champion.seed}, MLflow run {result.champion.run_id})")
    else:
        lines.append("no model registered: every seed of the best configuration failed")
    lines.append(f"MLflow: retrain run {result.parent_run_id} in {result.tracking_uri} "
                 f"(sweep run {result.sweep_parent_run_id or 'not found'})")
    lines += [f"note: {note}" for note in result.notes]
    return "\n".join(lines)
