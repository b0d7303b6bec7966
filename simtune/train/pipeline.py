"""The whole SIM pipeline: (stage 0 ->) stage 1 -> pseudo-labels -> stage 2, resumable at any point.

``run_pipeline`` is what ``simtune train``, every sweep trial and every retrain call; it
writes a run directory (``simtune.rundir``). Its steps share one ``PipelineContext``; stage 0
and stage 1 go through one shared-cache path (``_shared_stage``). ``evaluate_checkpoint``
scores a run's model.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from simtune.schema import MODES, Config, Mode, StageConfig
from simtune.data.build import DataSets
from simtune.data.loaders import Loading, loading_for
from simtune.errors import ConfigError, NonFiniteLoss, StageWaitTimeout
from simtune.files import LockTimeout
from simtune.models import load_trained
from simtune.preflight import check_combinations
from simtune.provenance import describe
from simtune.rundir import RunDir, locate, read_json, write_config, write_json
from simtune.selection.compute import SelectionSubset
from simtune.selection.run import draw_subset
from simtune.train import checkpoint as ckpt
from simtune.train.builders import (build_datasets, build_matcher, build_nets, build_optimizers, configure_device,
                                    pick_device)
from simtune.train.loop import Callback
from simtune.train.pseudo import PseudoLabelled, PseudoLabelRule, make_pseudo_labels, predict_target, source_prior
from simtune.train.stage import StageParts, StagePlan, eval_metrics, run_stage
from simtune.train.stage_cache import CACHED_HISTORY, CACHED_MODEL, CACHED_PREDICTIONS, STAGE_KEYS, StageCache
from simtune.train.steps import step_weights


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
    return MODES[cfg.mode].self_training


@dataclass(frozen=True, kw_only=True)
class PipelineContext:
    """What every stage of one pipeline run reads: its config, data, device, run dir and hooks."""

    cfg: Config
    data: DataSets
    device: torch.device
    run: RunDir
    callbacks: Sequence[Callback]
    progress: bool  # a progress bar per stage
    selection: SelectionSubset | None  # the target subset the select/* validators score (None = off)
    caches: Mapping[str, StageCache]  # stage name -> the store it is shared through; absent = not shared
    loading: Loading  # loader workers, pinned memory and layout of every pass over a dataset
    until: str | None = None  # the last stage to run ("stage0", "stage1"); None = every stage

    @property
    def autocast(self) -> bool:
        """bf16 autocast for the passes outside training: CUDA with ``runtime.amp``."""
        return self.device.type == "cuda" and self.cfg.runtime.amp


def run_pipeline(cfg: Config, out_dir: Path, *, callbacks: Sequence[Callback] = (), resume: bool = False,
                 progress: bool = False, stage1_cache: Path | None = None,
                 stage0_cache: Path | None = None, check_files: int | None = None,
                 run_info: Mapping[str, Any] | None = None, until: str | None = None) -> PipelineResult:
    """Run (or resume) every stage of ``cfg.mode`` into ``out_dir``.

    With ``init.source_pretrain.iters`` > 0, stage 0 (source only) runs first, or is copied
    from ``stage0_cache`` when a run with the same stage-0 settings already trained it; stage 1
    and stage 2 both start from its weights. Stage 1 is likewise copied from ``stage1_cache``.
    Datasets are listed and checked before anything is written or trained: every file
    (``check_files`` None), or the first ``check_files`` of each where the caller has checked
    them all already (``data.check``: a sweep's trials). ``run.json`` records the device and
    loader workers of this start, and ``run_info`` (a trial's placement). ``until`` ("stage0" or
    "stage1") stops after that stage is trained and published to its cache: a sweep trains the
    stages its trials share first, as jobs of their own (``sweep.jobs.shared``).
    Raises:
        ConfigError / DataError: bad input, before any compute.
        NonFiniteLoss: a loss became NaN/inf.
    """
    check_combinations(cfg)
    data = build_datasets(cfg, check_files=check_files)
    device = pick_device(cfg.runtime.device)
    configure_device(cfg.runtime, device)
    loading = loading_for(cfg.data.num_workers, device, channels_last=cfg.runtime.channels_last)
    run = RunDir(out_dir)
    _prepare_run_dir(cfg, run, resume, {"device": str(device), "num_workers": loading.workers, **(run_info or {})})
    roots = {"stage0": stage0_cache, "stage1": stage1_cache}
    ctx = PipelineContext(cfg=cfg, data=data, device=device, run=run, callbacks=callbacks, progress=progress,
                          selection=draw_subset(cfg.select, data.target, data.source),
                          caches={name: StageCache(root) for name, root in roots.items() if root is not None},
                          loading=loading, until=until)
    try:
        stages, report = _stages(ctx)
    except NonFiniteLoss as exc:
        exc.run_dir = run.root
        write_json(run.failure, {"reason": str(exc), "stage": exc.stage, "iteration": exc.iteration,
                                 "time": time.time()})
        raise
    result = PipelineResult(out_dir, stages, report)
    write_json(run.results, {"stages": stages, "pseudo_labels": report})
    return result


def _stages(ctx: PipelineContext) -> tuple[dict[str, dict[str, float]], dict[str, Any] | None]:
    """Stage 0 where configured, stage 1, then pseudo-labels and stage 2 where the mode has them."""
    init = _stage0(ctx)
    if ctx.until == "stage0":
        return {"stage0": (read_json(ctx.run.done("stage0")) or {}).get("metrics", {})}, None
    stages = {"stage1": _stage1(ctx, init)}
    report = None
    if uses_pseudo_labels(ctx.cfg) and ctx.until != "stage1":
        report = _pseudo_labels(ctx)
        plan = _plan(ctx, "stage2", ctx.cfg.stage2, offset=ctx.cfg.stage1.iters, seg_data=ctx.data.source,
                     trg_data=PseudoLabelled(ctx.data.target, ctx.run.labels), init=init)
        stages["stage2"] = _run_or_skip(ctx, plan)
    return stages, report


def _prepare_run_dir(cfg: Config, run: RunDir, resume: bool, info: Mapping[str, Any]) -> None:
    """Never overwrite an older run: a non-empty run dir needs ``--resume``.

    ``run.json`` keeps the provenance of the first start; ``info`` (where this start runs) is
    the latest start's.
    """
    if run.root.exists() and any(run.root.iterdir()) and not resume:
        raise ConfigError(f"{run.root}: run directory exists and is not empty; pass --resume or choose another --out")
    run.root.mkdir(parents=True, exist_ok=True)
    write_config(cfg, run.config_file)
    write_json(run.run_file, {**(read_json(run.run_file) or describe(cfg.seed)), **info})


def _plan(ctx: PipelineContext, name: str, stage: StageConfig, *, offset: int, seg_data: Any, trg_data: Any,
          init: Path | None, mode: Mode | None = None, eval_every: int | None = None) -> StagePlan:
    """A stage's plan: its loss weights (once, from ``step_weights``) and plain settings.

    ``init``: segmenter weights the stage starts from (stage 0's), else the model's own init;
    ``mode`` and ``eval_every`` replace ``cfg.mode`` and ``cfg.eval.every`` when given.
    """
    cfg = ctx.cfg
    weights = step_weights(stage, mode or cfg.mode, cfg.discriminator.gan)

    def build(device: torch.device) -> StageParts:
        nets, _ = build_nets(cfg, device)
        if init is not None:
            load_trained(nets.segmenter, init)
        matcher = build_matcher(cfg, stage, nets, device) if weights.matching else None
        return StageParts(nets, build_optimizers(nets, stage, cfg), matcher)

    return StagePlan(name=name, weights=weights, offset=offset, seg_data=seg_data, trg_data=trg_data, build=build,
                     iters=stage.iters,
                     schedule_iters=stage.schedule_iters, poly_power=stage.poly_power, seed=cfg.seed,
                     loading=ctx.loading,
                     eval_every=cfg.eval.every if eval_every is None else eval_every,
                     checkpoint_every=cfg.runtime.checkpoint_every, amp=cfg.runtime.amp,
                     source_dataset=cfg.data.source.dataset, selection=ctx.selection)


def stage0_settings(cfg: Config) -> StageConfig:
    """Stage 0's training settings: ``init.source_pretrain`` on top of stage 1's SGD settings."""
    pretrain = cfg.init.source_pretrain
    return dataclasses.replace(cfg.stage1, iters=pretrain.iters, schedule_iters=pretrain.iters, lr=pretrain.lr)


def _stage0(ctx: PipelineContext) -> Path | None:
    """Stage 0's weights (trained here or copied from the shared cache); None when it is off.

    Its steps are numbered -iters .. 0 so that stage 1 still starts at global iteration 0; it is
    evaluated once, at its end.
    """
    iters = ctx.cfg.init.source_pretrain.iters
    if iters <= 0:
        return None
    plan = _plan(ctx, "stage0", stage0_settings(ctx.cfg), offset=-iters, seg_data=ctx.data.source, trg_data=None,
                 init=None, mode="source_only", eval_every=0)  # one evaluation, at its end
    _shared_stage(ctx, plan)
    return ctx.run.model("stage0")


def _stage1_plan(ctx: PipelineContext, init: Path | None) -> StagePlan:
    cfg, data = ctx.cfg, ctx.data
    if MODES[cfg.mode].target_labels:
        assert data.target_labelled is not None
        return _plan(ctx, "stage1", cfg.stage1, offset=0, seg_data=data.target_labelled, trg_data=None, init=init)
    return _plan(ctx, "stage1", cfg.stage1, offset=0, seg_data=data.source,
                 trg_data=data.target if MODES[cfg.mode].target_images else None, init=init)


def _stage1(ctx: PipelineContext, init: Path | None) -> dict[str, float]:
    """Stage 1; where pseudo-labels follow, its shared entry also holds its target predictions."""
    plan = _stage1_plan(ctx, init)
    if not uses_pseudo_labels(ctx.cfg):
        return _shared_stage(ctx, plan)
    return _shared_stage(ctx, plan, extra=lambda: {CACHED_PREDICTIONS: _predict_with_stage1(ctx)})


def _shared_stage(ctx: PipelineContext, plan: StagePlan, *,
                  extra: Callable[[], dict[str, Path]] | None = None) -> dict[str, float]:
    """Run ``plan`` once per cache key: copy a complete entry, or train and publish one.

    The key's lock is held while training, so runs with identical settings wait for the first
    and then copy its entry. Without a cache for the stage, or when this run already finished
    it, the stage runs (or resumes) here.
    Args:
        extra: further files of the entry, made after training (name -> path).
    """
    cache = ctx.caches.get(plan.name)
    if cache is None or ctx.run.done(plan.name).is_file():
        return _run_or_skip(ctx, plan)
    key = STAGE_KEYS[plan.name](ctx.cfg)
    try:
        with cache.lock(key, ctx.cfg.runtime.shared_stage_timeout_h * 3600) as waited:
            entry = cache.entry(key)
            if entry is None:
                metrics = _run_or_skip(ctx, plan, waited_s=waited)
                files = {CACHED_MODEL: ctx.run.model(plan.name), CACHED_HISTORY: ctx.run.history_file(plan.name)}
                cache.publish(key, files | (extra() if extra is not None else {}))
                return metrics
    except LockTimeout as exc:
        raise StageWaitTimeout(f"{plan.name} shared through {cache.root / key}: waited {exc.waited_s / 3600:.3g} h "
                               f"(runtime.shared_stage_timeout_h) for the run training it ({exc.holder}); if that "
                               f"process is gone, delete {exc.path}") from None
    return _adopt_cached_stage(ctx, entry, plan.name, waited)


def _adopt_cached_stage(ctx: PipelineContext, entry: Path, name: str, waited_s: float) -> dict[str, float]:
    """Copy a cached stage into this run and replay its evaluations to the callbacks; ``done.json``
    names the entry and the seconds this run waited for its lock."""
    run = ctx.run
    run.stage(name).mkdir(parents=True, exist_ok=True)
    shutil.copy2(entry / CACHED_MODEL, run.model(name))
    shutil.copy2(entry / CACHED_HISTORY, run.history_file(name))
    if (entry / CACHED_PREDICTIONS).is_dir() and not run.predictions.exists():
        shutil.copytree(entry / CACHED_PREDICTIONS, run.predictions)
    history = run.history(name)
    for record in history:
        metrics = {k: v for k, v in record.items() if k != "step"}
        for cb in ctx.callbacks:
            cb.on_eval(name, record["step"], metrics, None)
    last = {k: v for k, v in history[-1].items() if k != "step"} if history else {}
    for cb in ctx.callbacks:
        cb.on_stage_end(name, history[-1]["step"] if history else 0, last)
    write_json(run.done(name), {"metrics": last, "from_cache": entry.name, "waited_s": round(waited_s, 3)})
    return last


def _run_or_skip(ctx: PipelineContext, plan: StagePlan, waited_s: float | None = None) -> dict[str, float]:
    """Run a stage, resume it from its checkpoint, or return its result if it is done.

    ``waited_s``: seconds this run waited for the stage's shared-cache lock, kept in ``done.json``.
    """
    run = ctx.run
    done = read_json(run.done(plan.name))
    if done is not None:
        return done["metrics"]
    checkpoint = run.checkpoint(plan.name)
    state = ckpt.load(checkpoint, ctx.device) if checkpoint.is_file() else None
    metrics = run_stage(plan, val=ctx.data.val, device=ctx.device, run_dir=run, callbacks=ctx.callbacks,
                        resume_from=state, progress=ctx.progress)
    wait = {} if waited_s is None else {"waited_s": round(waited_s, 3)}
    write_json(run.done(plan.name), {"metrics": metrics, **wait})
    return metrics


def _stage1_segmenter(ctx: PipelineContext) -> torch.nn.Module:
    nets, _ = build_nets(ctx.cfg, ctx.device)
    return load_trained(nets.segmenter, ctx.run.model("stage1"))


def _predict_with_stage1(ctx: PipelineContext) -> Path:
    """The stage-1 model's predictions on the target train set (written once); returns their folder."""
    pred_dir = ctx.run.predictions
    if not ctx.run.histogram.is_file():
        predict_target(_stage1_segmenter(ctx), ctx.data.target, pred_dir, num_classes=ctx.cfg.model.num_classes,
                       bins=ctx.cfg.pseudo_label.bins, device=ctx.device, autocast=ctx.autocast, loading=ctx.loading)
    return pred_dir


def _pseudo_labels(ctx: PipelineContext) -> dict[str, Any]:
    """Pseudo-labels from the stage-1 model (reused when already written)."""
    written = read_json(ctx.run.thresholds)
    if written is not None:
        return written
    cfg = ctx.cfg
    p = cfg.pseudo_label
    rule = PseudoLabelRule(method=p.method, quantile=p.quantile, cap=p.cap, portion=p.portion, bins=p.bins)
    prior = None
    if p.method == "cbst" and p.spatial_prior:
        prior = source_prior(ctx.data.source, cfg.data.target.size, cfg.model.num_classes, ctx.device)
    report = make_pseudo_labels(_stage1_segmenter(ctx), ctx.data.target, rule, ctx.run.predictions, ctx.run,
                                device=ctx.device, autocast=ctx.autocast, prior=prior, loading=ctx.loading)
    for cb in ctx.callbacks:
        cb.on_pseudo_labels(cfg.stage1.iters, report)
    return report


def evaluate_checkpoint(path: Path) -> dict[str, float]:
    """Selection and report mIoU (+ per-class IoU) of a run dir's or weights file's model, with its run's config."""
    run, weights = locate(path)
    cfg = run.config()
    device = pick_device(cfg.runtime.device)
    data = build_datasets(cfg)
    nets, _ = build_nets(cfg, device)
    load_trained(nets.segmenter, weights)
    loading = loading_for(cfg.data.num_workers, device, channels_last=cfg.runtime.channels_last)
    return eval_metrics(nets, data.val, device, device.type == "cuda" and cfg.runtime.amp, cfg.data.source.dataset,
                        loading)
