"""The whole SIM pipeline: stage 1 -> pseudo-labels -> stage 2, resumable at any point.

``run_pipeline`` is what ``simtune train``, every sweep trial and every retrain call; it
writes a run directory (``simtune.rundir``). ``evaluate_checkpoint`` scores a run's model.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from simtune.schema import Config, StageConfig
from simtune.errors import ConfigError, NonFiniteLoss
from simtune.models import load_module_state
from simtune.preflight import check_combinations
from simtune.provenance import describe
from simtune.rundir import RunDir, load_segmenter_state, locate, read_json, write_config, write_json
from simtune.selection.compute import SelectionSubset
from simtune.selection.run import draw_subset
from simtune.train import checkpoint as ckpt
from simtune.train.builders import DataSets, build_datasets, build_matcher, build_nets, build_optimizers, pick_device
from simtune.train.loop import Callback
from simtune.train.pseudo import PseudoLabelled, PseudoLabelRule, make_pseudo_labels, predict_target, source_prior
from simtune.train.stage import StageParts, StagePlan, eval_metrics, run_stage
from simtune.train.stage_cache import (CACHED_HISTORY, CACHED_MODEL, CACHED_PREDICTIONS, StageCache, stage0_key,
                                       stage1_key)
from simtune.train.steps import MODE_SWITCHES, step_weights


@dataclass(frozen=True)
class PipelineResult:
    """Last evaluation of each stage that ran; ``final`` is the last stage's."""

    out_dir: Path
    stages: dict[str, dict[str, float]]
    pseudo_labels: dict[str, Any] | None

    @property
    def final(self) -> dict[str, float]:
        return self.stages[list(self.stages)[-1]]


def uses_pseudo_labels(cfg: Config) -> bool:
    return cfg.mode == "aa_sim_ssl"


def run_pipeline(cfg: Config, out_dir: Path, *, callbacks: Sequence[Callback] = (), resume: bool = False,
                 progress: bool = False, stage1_cache: Path | None = None,
                 stage0_cache: Path | None = None) -> PipelineResult:
    """Run (or resume) every stage of ``cfg.mode`` into ``out_dir``.

    With ``init.source_pretrain.iters`` > 0, stage 0 (source only) runs first, or is copied
    from ``stage0_cache`` when a run with the same stage-0 settings already trained it; stage 1
    and stage 2 both start from its weights. Datasets are listed and checked before anything
    is written or trained.
    Raises:
        ConfigError / DataError: bad input, before any compute.
        NonFiniteLoss: a loss became NaN/inf.
    """
    check_combinations(cfg)
    data = build_datasets(cfg)
    device = pick_device(cfg.runtime.device)
    if cfg.runtime.threads:
        torch.set_num_threads(cfg.runtime.threads)
    run = RunDir(out_dir)
    _prepare_run_dir(cfg, run, resume)
    cache = StageCache(stage1_cache) if stage1_cache is not None else None
    selection = draw_subset(cfg.select, data.target, data.source)
    try:
        stages, report = _stages(cfg, data, device, run, callbacks, progress, cache, selection,
                                 StageCache(stage0_cache) if stage0_cache is not None else None)
    except NonFiniteLoss as exc:
        exc.run_dir = run.root
        write_json(run.failure, {"reason": str(exc), "stage": exc.stage, "iteration": exc.iteration,
                                 "time": time.time()})
        raise
    result = PipelineResult(out_dir, stages, report)
    write_json(run.results, {"stages": stages, "pseudo_labels": report})
    return result


def _stages(cfg: Config, data: DataSets, device: torch.device, run: RunDir, callbacks: Sequence[Callback],
            progress: bool, cache: StageCache | None, selection: SelectionSubset | None,
            stage0_cache: StageCache | None) -> tuple[dict[str, dict[str, float]], dict[str, Any] | None]:
    """Stage 0 where configured, stage 1, then pseudo-labels and stage 2 where the mode has them."""
    init = _stage0(cfg, data, device, run, callbacks, progress, stage0_cache, selection)
    stages = {"stage1": _stage1(cfg, data, device, run, callbacks, progress, cache, selection, init)}
    report = None
    if uses_pseudo_labels(cfg):
        report = _pseudo_labels(cfg, data, device, run, callbacks)
        plan = _plan(cfg, "stage2", cfg.stage2, offset=cfg.stage1.iters, seg_data=data.source,
                     trg_data=PseudoLabelled(data.target, run.labels), selection=selection, init=init)
        stages["stage2"] = _run_or_skip(plan, data, device, run, callbacks, progress)
    return stages, report


def _prepare_run_dir(cfg: Config, run: RunDir, resume: bool) -> None:
    """Never overwrite an older run: a non-empty run dir needs ``--resume``."""
    if run.root.exists() and any(run.root.iterdir()) and not resume:
        raise ConfigError(f"{run.root}: run directory exists and is not empty; pass --resume or choose another --out")
    run.root.mkdir(parents=True, exist_ok=True)
    write_config(cfg, run.config_file)
    if not run.run_file.is_file():
        write_json(run.run_file, describe(cfg.seed))


def _plan(cfg: Config, name: str, stage: StageConfig, *, offset: int, seg_data: Any, trg_data: Any,
          selection: SelectionSubset | None, init: Path | None, mode: str | None = None,
          eval_every: int | None = None) -> StagePlan:
    """A stage's plan: its loss weights (once, from ``step_weights``) and plain settings.

    ``init``: segmenter weights the stage starts from (stage 0's), else the model's own init;
    ``mode`` and ``eval_every`` replace ``cfg.mode`` and ``cfg.eval.every`` when given.
    """
    weights = step_weights(stage, mode or cfg.mode, cfg.discriminator.gan)

    def build(device: torch.device) -> StageParts:
        nets, _ = build_nets(cfg, device)
        if init is not None:
            nets.segmenter.load_state_dict(torch.load(init, map_location=device, weights_only=True))
        matcher = build_matcher(cfg, stage, nets, device) if weights.matching else None
        return StageParts(nets, build_optimizers(nets, stage, cfg), matcher)

    return StagePlan(name, weights, offset, seg_data, trg_data, build, iters=stage.iters,
                     schedule_iters=stage.schedule_iters, poly_power=stage.poly_power, seed=cfg.seed,
                     num_workers=cfg.data.num_workers,
                     eval_every=cfg.eval.every if eval_every is None else eval_every,
                     checkpoint_every=cfg.runtime.checkpoint_every, amp=cfg.runtime.amp,
                     source_dataset=cfg.data.source.dataset, selection=selection)


def stage0_settings(cfg: Config) -> StageConfig:
    """Stage 0's training settings: ``init.source_pretrain`` on top of stage 1's SGD settings."""
    pretrain = cfg.init.source_pretrain
    return dataclasses.replace(cfg.stage1, iters=pretrain.iters, schedule_iters=pretrain.iters, lr=pretrain.lr)


def _stage0(cfg: Config, data: DataSets, device: torch.device, run: RunDir, callbacks: Sequence[Callback],
            progress: bool, cache: StageCache | None, selection: SelectionSubset | None) -> Path | None:
    """Stage 0's weights (trained here or copied from the shared cache); None when it is off.

    Its steps are numbered -iters .. 0 so that stage 1 still starts at global iteration 0; it is
    evaluated once, at its end.
    """
    iters = cfg.init.source_pretrain.iters
    if iters <= 0:
        return None
    plan = _plan(cfg, "stage0", stage0_settings(cfg), offset=-iters, seg_data=data.source, trg_data=None,
                 selection=selection, init=None, mode="source_only", eval_every=0)  # one evaluation, at its end
    if cache is None or run.done("stage0").is_file():
        _run_or_skip(plan, data, device, run, callbacks, progress)
        return run.model("stage0")
    key = stage0_key(cfg)
    with cache.lock(key):
        entry = cache.entry(key)
        if entry is None:
            _run_or_skip(plan, data, device, run, callbacks, progress)
            cache.publish(key, {CACHED_MODEL: run.model("stage0"), CACHED_HISTORY: run.history_file("stage0")})
            return run.model("stage0")
    _adopt_cached_stage(entry, run, "stage0", callbacks)
    return run.model("stage0")


def _stage1_plan(cfg: Config, data: DataSets, selection: SelectionSubset | None, init: Path | None) -> StagePlan:
    if cfg.mode == "target_only":
        assert data.target_labelled is not None
        return _plan(cfg, "stage1", cfg.stage1, offset=0, seg_data=data.target_labelled, trg_data=None,
                     selection=selection, init=init)
    needs_target = any(MODE_SWITCHES[cfg.mode])  # a target-side loss (adversarial or matching) is on
    return _plan(cfg, "stage1", cfg.stage1, offset=0, seg_data=data.source,
                 trg_data=data.target if needs_target else None, selection=selection, init=init)


def _stage1(cfg: Config, data: DataSets, device: torch.device, run: RunDir, callbacks: Sequence[Callback],
            progress: bool, cache: StageCache | None, selection: SelectionSubset | None,
            init: Path | None) -> dict[str, float]:
    """Stage 1, taken from the shared cache when an identical stage 1 already finished."""
    plan = _stage1_plan(cfg, data, selection, init)
    if cache is None or run.done("stage1").is_file():
        return _run_or_skip(plan, data, device, run, callbacks, progress)
    key = stage1_key(cfg)
    with cache.lock(key):
        entry = cache.entry(key)
        if entry is None:
            metrics = _run_or_skip(plan, data, device, run, callbacks, progress)
            files = {CACHED_MODEL: run.model("stage1"), CACHED_HISTORY: run.history_file("stage1")}
            if uses_pseudo_labels(cfg):
                _predict_with_stage1(cfg, data, device, run)
                files[CACHED_PREDICTIONS] = run.predictions
            cache.publish(key, files)
            return metrics
    return _adopt_cached_stage(entry, run, plan.name, callbacks)


def _adopt_cached_stage(entry: Path, run: RunDir, name: str, callbacks: Sequence[Callback]) -> dict[str, float]:
    """Copy a cached stage into this run and replay its evaluations to the callbacks."""
    run.stage(name).mkdir(parents=True, exist_ok=True)
    shutil.copy2(entry / CACHED_MODEL, run.model(name))
    shutil.copy2(entry / CACHED_HISTORY, run.history_file(name))
    if (entry / CACHED_PREDICTIONS).is_dir() and not run.predictions.exists():
        shutil.copytree(entry / CACHED_PREDICTIONS, run.predictions)
    history = run.history(name)
    for record in history:
        metrics = {k: v for k, v in record.items() if k != "step"}
        for cb in callbacks:
            cb.on_eval(name, record["step"], metrics, None)
    last = {k: v for k, v in history[-1].items() if k != "step"} if history else {}
    for cb in callbacks:
        cb.on_stage_end(name, history[-1]["step"] if history else 0, last)
    write_json(run.done(name), {"metrics": last, "from_cache": entry.name})
    return last


def _run_or_skip(plan: StagePlan, data: DataSets, device: torch.device, run: RunDir,
                 callbacks: Sequence[Callback], progress: bool) -> dict[str, float]:
    """Run a stage, resume it from its checkpoint, or return its result if it is done."""
    done = read_json(run.done(plan.name))
    if done is not None:
        return done["metrics"]
    checkpoint = run.checkpoint(plan.name)
    state = ckpt.load(checkpoint, device) if checkpoint.is_file() else None
    metrics = run_stage(plan, val=data.val, device=device, run_dir=run, callbacks=callbacks,
                        resume_from=state, progress=progress)
    write_json(run.done(plan.name), {"metrics": metrics})
    return metrics


def _stage1_segmenter(cfg: Config, device: torch.device, run: RunDir) -> torch.nn.Module:
    nets, _ = build_nets(cfg, device)
    load_module_state(nets.segmenter, load_segmenter_state(run.model("stage1")), run.model("stage1"))
    return nets.segmenter


def _predict_with_stage1(cfg: Config, data: DataSets, device: torch.device, run: RunDir) -> None:
    pred_dir = run.predictions
    if (pred_dir / "histogram.npy").is_file():
        return
    predict_target(_stage1_segmenter(cfg, device, run), data.target, pred_dir,
                   num_classes=cfg.model.num_classes, bins=cfg.pseudo_label.bins, device=device,
                   autocast=device.type == "cuda" and cfg.runtime.amp)


def _pseudo_labels(cfg: Config, data: DataSets, device: torch.device, run: RunDir,
                   callbacks: Sequence[Callback]) -> dict[str, Any]:
    """Pseudo-labels from the stage-1 model (reused when already written)."""
    written = read_json(run.thresholds)
    if written is not None:
        return written
    p = cfg.pseudo_label
    rule = PseudoLabelRule(p.method, p.quantile, p.cap, p.portion, p.bins)
    use_prior = p.method == "cbst" and p.spatial_prior
    prior = source_prior(data.source, cfg.data.target.size, cfg.model.num_classes, device) if use_prior else None
    report = make_pseudo_labels(_stage1_segmenter(cfg, device, run), data.target, rule, run.predictions,
                                run, device=device, autocast=device.type == "cuda" and cfg.runtime.amp, prior=prior)
    for cb in callbacks:
        cb.on_pseudo_labels(cfg.stage1.iters, report)
    return report


def evaluate_checkpoint(path: Path) -> dict[str, float]:
    """Selection and report mIoU (+ per-class IoU) of a run dir's or weights file's model, with its run's config."""
    run, weights = locate(path)
    cfg = run.config()
    device = pick_device(cfg.runtime.device)
    data = build_datasets(cfg)
    nets, _ = build_nets(cfg, device)
    load_module_state(nets.segmenter, load_segmenter_state(weights), weights)
    return eval_metrics(nets, data.val, device, device.type == "cuda" and cfg.runtime.amp, cfg.data.source.dataset)
