"""The whole SIM pipeline: stage 1 -> pseudo-labels -> stage 2, resumable at any point.

``run_pipeline`` is what ``simtune train``, every sweep trial and every retrain call. A run
directory holds::

    config.yaml  run.json          resolved config; revision, versions, seed
    stage1/  checkpoint.pt  history.json  model.pt  done.json
    pseudo/  predictions/  labels/  thresholds.json
    stage2/  ...                   (mode aa_sim_ssl only)
    results.json                   last evaluation of each stage
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from simtune.config import Config, dump_yaml
from simtune.errors import ConfigError
from simtune.provenance import describe
from simtune.train import checkpoint as ckpt
from simtune.train.builders import DataSets, build_datasets, build_nets, pick_device
from simtune.train.loop import Callback
from simtune.train.pseudo import PseudoLabelled, PseudoLabelRule, make_pseudo_labels, predict_target
from simtune.train.stage import StagePlan, run_stage, step_weights
from simtune.train.stage1_cache import Stage1Cache, stage1_key


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
                 progress: bool = False, stage1_cache: Path | None = None) -> PipelineResult:
    """Run (or resume) every stage of ``cfg.mode`` into ``out_dir``.

    Datasets are listed and checked before anything is written or trained.
    Raises:
        ConfigError / DataError: bad input, before any compute.
        NonFiniteLoss: a loss became NaN/inf.
    """
    if cfg.pseudo_label.spatial_prior:
        raise ConfigError("pseudo_label.spatial_prior: the CBST spatial prior is not available in the pipeline "
                          "yet (simtune.pseudo_label has it); set it to false")
    data = build_datasets(cfg)
    device = pick_device(cfg.runtime.device)
    if cfg.runtime.threads:
        torch.set_num_threads(cfg.runtime.threads)
    _prepare_run_dir(cfg, out_dir, resume)
    cache = Stage1Cache(stage1_cache) if stage1_cache is not None else None
    stages = {"stage1": _stage1(cfg, data, device, out_dir, callbacks, progress, cache)}
    report = None
    if uses_pseudo_labels(cfg):
        report = _pseudo_labels(cfg, data, device, out_dir, callbacks)
        plan = StagePlan("stage2", cfg.stage2, step_weights(cfg.stage2, cfg.mode, cfg.discriminator.gan),
                         offset=cfg.stage1.iters, seg_data=data.source,
                         trg_data=PseudoLabelled(data.target, out_dir / "pseudo" / "labels"))
        stages["stage2"] = _run_or_skip(plan, cfg, data, device, out_dir, callbacks, progress)
    result = PipelineResult(out_dir, stages, report)
    _write_json(out_dir / "results.json", {"stages": stages, "pseudo_labels": report})
    return result


def _prepare_run_dir(cfg: Config, out_dir: Path, resume: bool) -> None:
    """Never overwrite an older run: a non-empty run dir needs ``--resume``."""
    if out_dir.exists() and any(out_dir.iterdir()) and not resume:
        raise ConfigError(f"{out_dir}: run directory exists and is not empty; pass --resume or choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    dump_yaml(cfg, out_dir / "config.yaml")
    if not (out_dir / "run.json").is_file():
        _write_json(out_dir / "run.json", describe(cfg.seed))


def _stage1_plan(cfg: Config, data: DataSets) -> StagePlan:
    weights = step_weights(cfg.stage1, cfg.mode, cfg.discriminator.gan)
    if cfg.mode == "target_only":
        assert data.target_labelled is not None
        return StagePlan("stage1", cfg.stage1, weights, 0, seg_data=data.target_labelled, trg_data=None)
    needs_target = weights.adversarial or weights.matching
    return StagePlan("stage1", cfg.stage1, weights, 0, seg_data=data.source,
                     trg_data=data.target if needs_target else None)


def _stage1(cfg: Config, data: DataSets, device: torch.device, out_dir: Path, callbacks: Sequence[Callback],
            progress: bool, cache: Stage1Cache | None) -> dict[str, float]:
    """Stage 1, taken from the shared cache when an identical stage 1 already finished."""
    plan = _stage1_plan(cfg, data)
    stage_dir = out_dir / "stage1"
    if cache is None or (stage_dir / "done.json").is_file():
        return _run_or_skip(plan, cfg, data, device, out_dir, callbacks, progress)
    key = stage1_key(cfg)
    with cache.lock(key):
        entry = cache.entry(key)
        if entry is None:
            metrics = _run_or_skip(plan, cfg, data, device, out_dir, callbacks, progress)
            files = {"model.pt": stage_dir / "model.pt", "history.json": stage_dir / "history.json"}
            if uses_pseudo_labels(cfg):
                _predict_with_stage1(cfg, data, device, out_dir)
                files["predictions"] = out_dir / "pseudo" / "predictions"
            cache.publish(key, files)
            return metrics
    return _adopt_cached_stage1(entry, stage_dir, plan.name, callbacks)


def _adopt_cached_stage1(entry: Path, stage_dir: Path, name: str, callbacks: Sequence[Callback]) -> dict[str, float]:
    """Copy a cached stage 1 into this run and replay its evaluations to the callbacks."""
    stage_dir.mkdir(parents=True, exist_ok=True)
    for file in ("model.pt", "history.json"):
        shutil.copy2(entry / file, stage_dir / file)
    if (entry / "predictions").is_dir() and not (stage_dir.parent / "pseudo" / "predictions").exists():
        shutil.copytree(entry / "predictions", stage_dir.parent / "pseudo" / "predictions")
    history = json.loads((stage_dir / "history.json").read_text())
    for record in history:
        metrics = {k: v for k, v in record.items() if k != "step"}
        for cb in callbacks:
            cb.on_eval(name, record["step"], metrics, None)
    last = {k: v for k, v in history[-1].items() if k != "step"} if history else {}
    for cb in callbacks:
        cb.on_stage_end(name, history[-1]["step"] if history else 0, last)
    _write_json(stage_dir / "done.json", {"metrics": last, "from_cache": entry.name})
    return last


def _run_or_skip(plan: StagePlan, cfg: Config, data: DataSets, device: torch.device, out_dir: Path,
                 callbacks: Sequence[Callback], progress: bool) -> dict[str, float]:
    """Run a stage, resume it from its checkpoint, or return its result if it is done."""
    stage_dir = out_dir / plan.name
    done = stage_dir / "done.json"
    if done.is_file():
        return json.loads(done.read_text())["metrics"]
    checkpoint = stage_dir / "checkpoint.pt"
    state = ckpt.load(checkpoint, device) if checkpoint.is_file() else None
    metrics = run_stage(plan, cfg, val=data.val, device=device, stage_dir=stage_dir, callbacks=callbacks,
                        resume_from=state, progress=progress)
    _write_json(done, {"metrics": metrics})
    return metrics


def _stage1_segmenter(cfg: Config, device: torch.device, out_dir: Path) -> torch.nn.Module:
    nets, _ = build_nets(cfg, device)
    nets.segmenter.load_state_dict(torch.load(out_dir / "stage1" / "model.pt", map_location=device,
                                              weights_only=True))
    return nets.segmenter


def _predict_with_stage1(cfg: Config, data: DataSets, device: torch.device, out_dir: Path) -> None:
    pred_dir = out_dir / "pseudo" / "predictions"
    if (pred_dir / "histogram.npy").is_file():
        return
    predict_target(_stage1_segmenter(cfg, device, out_dir), data.target, pred_dir,
                   num_classes=cfg.model.num_classes, bins=cfg.pseudo_label.bins, device=device,
                   autocast=device.type == "cuda" and cfg.runtime.amp)


def _pseudo_labels(cfg: Config, data: DataSets, device: torch.device, out_dir: Path,
                   callbacks: Sequence[Callback]) -> dict[str, Any]:
    """Pseudo-labels from the stage-1 model (reused when already written)."""
    pseudo = out_dir / "pseudo"
    thresholds = pseudo / "thresholds.json"
    if thresholds.is_file():
        return json.loads(thresholds.read_text())
    p = cfg.pseudo_label
    rule = PseudoLabelRule(p.method, p.quantile, p.cap, p.portion, p.bins)
    report = make_pseudo_labels(_stage1_segmenter(cfg, device, out_dir), data.target, rule, pseudo / "predictions",
                                pseudo, device=device, autocast=device.type == "cuda" and cfg.runtime.amp)
    for cb in callbacks:
        cb.on_pseudo_labels(cfg.stage1.iters, report)
    return report


def _write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=str))
    tmp.replace(path)
