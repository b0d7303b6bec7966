"""One training stage: networks, optimizers, banks, streams and hooks around ``run_loop``."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from simtune.config import Config, StageConfig
from simtune.evaluation import REPORTED_CLASSES, evaluate_model
from simtune.train import checkpoint as ckpt
from simtune.train.builders import Nets, build_matcher, build_nets, build_optimizers
from simtune.train.loop import Callback, LoopState, LossMonitor, Periodic, PolyLR, Progress, run_loop
from simtune.train.steps import StepWeights, adaptation_step
from simtune.train.streams import stream


@dataclass(frozen=True)
class StagePlan:
    """What one stage trains on and with which losses."""

    name: str  # "stage1" | "stage2"
    settings: StageConfig
    weights: StepWeights
    offset: int  # global iteration of the stage's first step
    seg_data: Dataset[Any]  # labelled images for L_seg (source, or target in target_only)
    trg_data: Dataset[Any] | None  # unlabelled target images (with pseudo-labels in stage 2)


def step_weights(stage: StageConfig, mode: str, gan: str) -> StepWeights:
    """The loss switches of an ablation row (paper Table 2) for one stage."""
    adversarial = mode not in ("source_only", "target_only")
    matching = mode in ("aa_sim", "aa_sim_ssl")
    return StepWeights(lambda_seg=stage.lambda_seg, lambda_adv=stage.lambda_adv, lambda_d=stage.lambda_d,
                       lambda_ci=stage.lambda_ci, lambda_seg_aux=stage.lambda_seg_aux,
                       lambda_adv_aux=stage.lambda_adv_aux, adversarial=adversarial, matching=matching, gan=gan)


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
            module.load_state_dict(state["nets"][name])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        if self.matcher is not None and state["matcher"] is not None:
            self.matcher.load_state_dict(state["matcher"])
        ckpt.set_rng_state(state["rng"])
        self.state.iteration = state["iteration"]


def eval_metrics(nets: Nets, val: Mapping[str, Dataset[Any]], device: torch.device, autocast: bool,
                 source_dataset: str = "gta5") -> dict[str, float]:
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
        loader = torch.utils.data.DataLoader(val[part], batch_size=1)
        result = evaluate_model(predict, loader, classes=classes, device=device, subsets=subsets)
        metrics.update(result.to_metrics(prefix))
    nets.segmenter.train()
    return metrics


def run_stage(plan: StagePlan, cfg: Config, *, val: Mapping[str, Dataset[Any]], device: torch.device,
              stage_dir: Path, callbacks: Sequence[Callback], resume_from: dict[str, Any] | None,
              progress: bool) -> dict[str, float]:
    """Train one stage from fresh initial weights (or a mid-stage checkpoint).

    Writes ``stage_dir/model.pt`` (segmenter weights) and ``stage_dir/history.json`` (every
    evaluation); the resumable checkpoint lives at ``stage_dir/checkpoint.pt``.
    Returns:
        the stage's last evaluation metrics.
    """
    nets, _ = build_nets(cfg, device)
    optimizers = build_optimizers(nets, plan.settings, cfg)
    matcher = build_matcher(cfg, plan.settings, nets, device) if plan.weights.matching else None
    run = StageRun(plan, nets, optimizers, matcher, LoopState(plan.name, plan.settings.iters, plan.offset))
    if resume_from is not None:
        run.load_state_dict(resume_from)
    history = _read_history(stage_dir) if resume_from is not None else []
    history = [h for h in history if h["step"] <= run.state.global_iteration]
    autocast = device.type == "cuda" and cfg.runtime.amp

    def save(state: LoopState) -> Path:
        path = stage_dir / "checkpoint.pt"
        ckpt.atomic_save(run.state_dict(), path)
        return path

    def save_between_evals(state: LoopState) -> None:
        if cfg.eval.every <= 0 or state.iteration % cfg.eval.every:  # an evaluation saves anyway
            save(state)

    def evaluate(state: LoopState) -> None:
        metrics = eval_metrics(nets, val, device, autocast, cfg.data.source.dataset)
        metrics["iteration"] = float(state.global_iteration)
        history.append({"step": state.global_iteration, **metrics})
        _write_history(stage_dir, history)
        path = save(state)
        for cb in callbacks:
            cb.on_eval(plan.name, state.global_iteration, metrics, path)

    monitor = LossMonitor(every=10, callbacks=callbacks, lr_of=lambda: optimizers["segmenter"].param_groups[0]["lr"])
    hooks = [
        PolyLR(list(optimizers.values()), plan.settings.schedule_iters, plan.settings.poly_power),
        monitor,
        Periodic(cfg.eval.every, evaluate),
        Periodic(cfg.runtime.checkpoint_every, save_between_evals, at_end=False),  # the final eval saves
        Progress(monitor, progress),
    ]
    nets.segmenter.train()
    run_loop(run.state, _batches(plan, cfg, device, run.state.iteration),
             lambda batch: _step(run, batch, autocast), hooks)
    ckpt.atomic_save(nets.segmenter.state_dict(), stage_dir / "model.pt")
    last = {k: v for k, v in history[-1].items() if k != "step"} if history else {}
    for cb in callbacks:
        cb.on_stage_end(plan.name, run.state.global_iteration, last)
    return last


def _batches(plan: StagePlan, cfg: Config, device: torch.device, start: int):  # type: ignore[no-untyped-def]
    count = plan.settings.iters - start
    workers = cfg.data.num_workers
    seg = stream(plan.seg_data, seed=cfg.seed, start=start, count=count, num_workers=workers, device=device)
    if plan.trg_data is None:
        return ((b, None) for b in seg)
    trg = stream(plan.trg_data, seed=cfg.seed + 1, start=start, count=count, num_workers=workers, device=device)
    return zip(seg, trg)


def _step(run: StageRun, batch: tuple[dict[str, Any], dict[str, Any] | None], autocast: bool) -> dict[str, torch.Tensor]:
    seg, trg = batch
    return adaptation_step(
        run.nets, run.optimizers, run.plan.weights,
        src_image=seg["image"], src_label=seg["label"],
        trg_image=trg["image"] if trg is not None else None,
        trg_pseudo=trg.get("pseudo") if trg is not None else None,
        matcher=run.matcher, autocast=autocast,
    )


def _read_history(stage_dir: Path) -> list[dict[str, Any]]:
    path = stage_dir / "history.json"
    return json.loads(path.read_text()) if path.is_file() else []


def _write_history(stage_dir: Path, history: list[dict[str, Any]]) -> None:
    stage_dir.mkdir(parents=True, exist_ok=True)
    tmp = stage_dir / ".history.json.tmp"
    tmp.write_text(json.dumps(history, indent=1))
    tmp.replace(stage_dir / "history.json")
