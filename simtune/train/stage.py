"""One training stage: networks, optimizers, banks, streams and hooks around ``run_loop``.

``run_stage`` takes a ``StagePlan``: plain settings and the loss weights (built once, by
``steps.step_weights``), plus a function that builds the stage's networks, optimizers and
matcher. It never sees the whole config.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from simtune.data.loaders import Loading, batches
from simtune.evaluation import REPORTED_CLASSES, evaluate_model
from simtune.models import load_module_state
from simtune.rundir import RunDir, torch_save, write_json
from simtune.seeds import derived_seed
from simtune.selection.compute import SelectionSubset
from simtune.selection.run import select_metrics
from simtune.train import checkpoint as ckpt
from simtune.train.builders import Nets
from simtune.train.loop import Callback, LoopState, LossMonitor, Periodic, PolyLR, Progress, run_loop
from simtune.train.steps import StepWeights, adaptation_step
from simtune.train.streams import stream


@dataclass(frozen=True)
class StageParts:
    """The live networks, optimizers and matcher (None without L_stf/L_ins) of a stage."""

    nets: Nets
    optimizers: dict[str, torch.optim.Optimizer]
    matcher: Any


@dataclass(frozen=True, kw_only=True)
class StagePlan:
    """What one stage trains on and with which losses."""

    name: str  # "stage1" | "stage2"
    weights: StepWeights  # the only place the loss weights travel
    offset: int  # global iteration of the stage's first step
    seg_data: Dataset[Any]  # labelled images for L_seg (source, or target in target_only)
    trg_data: Dataset[Any] | None  # unlabelled target images (with pseudo-labels in stage 2)
    build: Callable[[torch.device], StageParts]  # fresh initial networks, optimizers, matcher
    iters: int
    schedule_iters: int  # poly-LR horizon
    poly_power: float
    seed: int  # data order
    loading: Loading  # loader workers and pinned memory, for training and evaluation alike
    eval_every: int  # iterations between evaluations; 0 = only at the end
    checkpoint_every: int
    amp: bool  # bf16 autocast on CUDA
    source_dataset: str  # decides the evaluated classes (SYNTHIA: 16)
    selection: SelectionSubset | None = None  # unlabelled target subset for select/* (None = off)


@dataclass
class StageRun:
    """The live objects of a stage; ``state_dict`` is everything a resume needs."""

    plan: StagePlan
    nets: Nets
    optimizers: dict[str, torch.optim.Optimizer]
    matcher: Any
    state: LoopState

    def state_dict(self) -> dict[str, Any]:
        return {
            "stage": self.plan.name,
            "iteration": self.state.iteration,
            "nets": {k: m.state_dict() for k, m in self.nets.modules().items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "matcher": self.matcher.state_dict() if self.matcher is not None else None,
            "rng": ckpt.rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, module in self.nets.modules().items():
            load_module_state(module, state["nets"][name], f"{self.plan.name} checkpoint ({name})")
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        if self.matcher is not None and state["matcher"] is not None:
            self.matcher.load_state_dict(state["matcher"])
        ckpt.set_rng_state(state["rng"])
        self.state.iteration = state["iteration"]


def eval_metrics(nets: Nets, val: Mapping[str, Dataset[Any]], device: torch.device, autocast: bool,
                 source_dataset: str = "gta5", loading: Loading = Loading()) -> dict[str, float]:
    """mIoU and per-class IoU on each val part: ``val/...`` = selection, ``report/...`` = report.

    SYNTHIA-trained models are scored over its 16 classes, with ``miou_13`` beside.
    """
    classes, subsets = REPORTED_CLASSES.get(source_dataset, REPORTED_CLASSES["gta5"])

    def predict(image: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            return nets.segmenter(image).logits.float()

    nets.segmenter.eval()
    metrics: dict[str, float] = {}
    for part, prefix in (("selection", "val"), ("report", "report")):
        result = evaluate_model(predict, batches(val[part], loading, device), classes=classes, device=device,
                                subsets=subsets)
        metrics.update(result.to_metrics(prefix))
    nets.segmenter.train()
    return metrics


def run_stage(plan: StagePlan, *, val: Mapping[str, Dataset[Any]], device: torch.device, run_dir: RunDir,
              callbacks: Sequence[Callback], resume_from: dict[str, Any] | None,
              progress: bool) -> dict[str, float]:
    """Train one stage from fresh initial weights (or a mid-stage checkpoint).

    Writes the stage's ``model.pt`` (segmenter weights) and ``history.json`` (every
    evaluation) in ``run_dir``; the resumable checkpoint is its ``checkpoint.pt``. With a
    ``plan.selection`` subset, every evaluation adds the label-free ``select/*`` metrics.
    Returns:
        the stage's last evaluation metrics.
    """
    parts = plan.build(device)
    nets, optimizers = parts.nets, parts.optimizers
    run = StageRun(plan, nets, optimizers, parts.matcher, LoopState(plan.name, plan.iters, plan.offset))
    if resume_from is not None:
        run.load_state_dict(resume_from)
    history = run_dir.history(plan.name) if resume_from is not None else []
    history = [h for h in history if h["step"] <= run.state.global_iteration]
    autocast = device.type == "cuda" and plan.amp

    def save(state: LoopState) -> Path:
        path = run_dir.checkpoint(plan.name)
        torch_save(run.state_dict(), path)
        return path

    def save_between_evals(state: LoopState) -> None:
        if plan.eval_every <= 0 or state.iteration % plan.eval_every:  # an evaluation saves anyway
            save(state)

    def evaluate(state: LoopState) -> None:
        metrics = eval_metrics(nets, val, device, autocast, plan.source_dataset, plan.loading)
        if plan.selection is not None:
            metrics.update(select_metrics(nets.segmenter, plan.selection, device, autocast))
        metrics["iteration"] = float(state.global_iteration)
        history.append({"step": state.global_iteration, **metrics})
        write_json(run_dir.history_file(plan.name), history)
        path = save(state)
        for cb in callbacks:
            cb.on_eval(plan.name, state.global_iteration, metrics, path)

    monitor = LossMonitor(every=10, callbacks=callbacks, lr_of=lambda: optimizers["segmenter"].param_groups[0]["lr"])
    hooks = [
        PolyLR(list(optimizers.values()), plan.schedule_iters, plan.poly_power),
        monitor,
        Periodic(plan.eval_every, evaluate),
        Periodic(plan.checkpoint_every, save_between_evals, at_end=False),  # the final eval saves
        Progress(monitor, progress),
    ]
    nets.segmenter.train()
    run_loop(run.state, _batches(plan, device, run.state.iteration),
             lambda batch: _step(run, batch, autocast), hooks)
    torch_save(nets.segmenter.state_dict(), run_dir.model(plan.name))
    last = {k: v for k, v in history[-1].items() if k != "step"} if history else {}
    for cb in callbacks:
        cb.on_stage_end(plan.name, run.state.global_iteration, last)
    return last


def _batches(plan: StagePlan, device: torch.device, start: int):  # type: ignore[no-untyped-def]
    count = plan.iters - start
    seg = stream(plan.seg_data, seed=derived_seed(plan.seed, "seg_stream"), start=start, count=count,
                 loading=plan.loading, device=device)
    if plan.trg_data is None:
        return ((b, None) for b in seg)
    trg = stream(plan.trg_data, seed=derived_seed(plan.seed, "target_stream"), start=start, count=count,
                 loading=plan.loading, device=device)
    return zip(seg, trg)


def _step(run: StageRun, batch: tuple[dict[str, Any], dict[str, Any] | None],
          autocast: bool) -> dict[str, torch.Tensor]:
    seg, trg = batch
    return adaptation_step(
        run.nets, run.optimizers, run.plan.weights,
        src_image=seg["image"], src_label=seg["label"],
        trg_image=trg["image"] if trg is not None else None,
        trg_pseudo=trg.get("pseudo") if trg is not None else None,
        matcher=run.matcher, autocast=autocast,
    )
