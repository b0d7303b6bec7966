"""How well trained runs segment the built-in benchmark (``simtune data stats heldout`` and ``table``).

- ``heldout_scores``: a run's last model (or one stage's) on source images the benchmark never
  wrote: indices ``num_source .. num_source + count - 1`` of the same seed, drawn from the
  same distribution as the training images (``simtune.data.synth.write_source_images``).
- ``iou_table``: per class, held-out source IoU of a source-only run beside the target IoU of
  that run and of a target-only run (docs/benchmark.md).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from simtune.data.datasets import SegmentationDataset, list_samples
from simtune.data.stats import SOURCE
from simtune.data.synth.write import SPEC_FILE, write_source_images
from simtune.errors import ConfigError
from simtune.evaluation import evaluate_model
from simtune.labels import CLASS_NAMES, THING_IDS
from simtune.models import load_trained, segmenter_from_config
from simtune.rundir import RunDir
from simtune.schema import Config
from simtune.tables import text_table

HELDOUT = "heldout_src"  # metric prefix of the held-out source scores


@dataclass(frozen=True)
class HeldoutRun:
    """What scoring one run on held-out source images needs, checked before any compute."""

    cfg: Config
    weights: Path
    benchmark: dict[str, Any]  # the run's benchmark.json: seed, num_source, source_size


def heldout_run(run_dir: Path, stage: str | None = None) -> HeldoutRun:
    """The run's config, its last (or ``stage``'s) model file and its benchmark's spec.

    Raises:
        ConfigError: no run directory, no such model, or a run not trained on a built-in benchmark.
    """
    run = RunDir(run_dir)
    cfg = run.config()
    weights = run.model(stage) if stage else run.weights()
    if not weights.is_file():
        raise ConfigError(f"{run_dir}: no {stage} model in this run directory")
    spec = Path(cfg.data.source.root).parent / SPEC_FILE
    if not spec.is_file():
        raise ConfigError(f"{run_dir}: its source {cfg.data.source.root} is not a built-in benchmark "
                          f"(no {SPEC_FILE} beside it); held-out images need the benchmark's seed")
    return HeldoutRun(cfg, weights, json.loads(spec.read_text()))


def heldout_scores(run: HeldoutRun, count: int) -> dict[str, float]:
    """``heldout_src/miou`` and ``heldout_src/iou/<class>`` of ``run``'s model on ``count``
    held-out source images, on the CPU with one thread."""
    torch.set_num_threads(1)
    segmenter = load_trained(segmenter_from_config(run.cfg.model), run.weights)
    segmenter.eval()
    spec = run.benchmark
    with tempfile.TemporaryDirectory() as tmp:
        root = write_source_images(Path(tmp), seed=spec["seed"], first=spec["num_source"], count=count,
                                   size=(spec["source_size"][0], spec["source_size"][1]))
        data = SegmentationDataset(SOURCE, list_samples(SOURCE, root), size=run.cfg.data.source.size,
                                   label_size="original")
        with torch.no_grad():
            result = evaluate_model(lambda x: segmenter(x).logits, torch.utils.data.DataLoader(data), device="cpu")
    return result.to_metrics(HELDOUT)


def score_runs(run_dirs: Sequence[Path], count: int, stage: str | None = None) -> list[dict[str, Any]]:
    """``heldout_scores`` of every run with its ``weights`` file; all runs are checked before
    the first is scored.

    Raises:
        ConfigError: ``count`` < 1 or a bad run directory (see ``heldout_run``).
    """
    if count < 1:
        raise ConfigError(f"--count must be >= 1, but got --count {count}")
    runs = [heldout_run(run_dir, stage) for run_dir in run_dirs]
    return [{"weights": str(run.weights), **heldout_scores(run, count)} for run in runs]


def heldout_text(scores: list[dict[str, Any]], stage: str | None) -> str:
    """Each class's lowest and mean held-out source IoU over runs, as a terminal table."""
    rows = [["class", "lowest", "mean"]]
    for name in [*CLASS_NAMES, "miou"]:
        key = f"{HELDOUT}/{name}" if name == "miou" else f"{HELDOUT}/iou/{name}"
        values = [run[key] for run in scores if key in run]
        if values:
            thing = " (thing)" if name in CLASS_NAMES and CLASS_NAMES.index(name) in THING_IDS else ""
            rows.append([name + thing, f"{min(values):.1f}", f"{sum(values) / len(values):.1f}"])
    title = f"{len(scores)} runs ({stage or 'last stage'}): lowest and mean held-out source IoU"
    return title + "\n" + text_table(rows, right=(1, 2))


def last_metrics(run_dir: Path) -> dict[str, Any]:
    """The last evaluation of the run's last stage.

    Raises:
        ConfigError: the run never evaluated.
    """
    found = RunDir(run_dir).last_evaluation()
    if found is None:
        raise ConfigError(f"{run_dir}: no evaluation in this run directory")
    return found[1]


def iou_table(source_only: Path, target_only: Path, part: str, count: int) -> list[str]:
    """Markdown rows: per class, held-out source IoU of ``source_only`` and the target IoU
    (val part ``part``: ``val`` = selection split, or ``report``) of both runs."""
    if part not in ("val", "report"):
        raise ConfigError(f"--part must be val or report, but got --part {part}")
    src, trg = last_metrics(source_only), last_metrics(target_only)
    inside = score_runs([source_only], count)[0]
    rows = [f"| class | in-domain (held-out source) | source only on target ({part}) | target only ({part}) |",
            "|---|---|---|---|"]
    for name in CLASS_NAMES:
        values = [inside.get(f"{HELDOUT}/iou/{name}", float("nan")),
                  src.get(f"{part}/iou/{name}", float("nan")), trg.get(f"{part}/iou/{name}", float("nan"))]
        if not all(np.isnan(v) for v in values):
            thing = "**" if CLASS_NAMES.index(name) in THING_IDS else ""
            rows.append(f"| {thing}{name}{thing} | " + " | ".join(f"{v:.1f}" for v in values) + " |")
    rows.append(f"| mIoU | {inside[f'{HELDOUT}/miou']:.1f} | {src[f'{part}/miou']:.1f} | {trg[f'{part}/miou']:.1f} |")
    return rows
