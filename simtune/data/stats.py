"""Measure the built-in benchmark: how large its thing regions are at the training resolution,
and how well a trained run segments held-out *source* images (in-domain IoU).

- ``region_sizes``: per thing class, the median area of a connected region (8-connected, per
  class) in *feature pixels* -- pixels at the experiment's training size divided by the output
  stride squared (8 x 8) -- for the source images and the target val images; beside it the
  pixel-weighted median (half of the class's pixels lie in regions at least this large),
  which small occlusion slivers do not drag down.
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

from simtune import config
from simtune.data.datasets import SegmentationDataset, list_samples
from simtune.data.synth.measure import pixel_median, thing_region_areas
from simtune.data.synth.write import write_source_images
from simtune.errors import ConfigError
from simtune.evaluation import evaluate_model
from simtune.labels import CLASS_NAMES, THING_IDS
from simtune.models import load_module_state, segmenter_from_config
from simtune.rundir import RunDir, load_segmenter_state
from simtune.schema import Config
from simtune.tables import text_table

HELDOUT = "heldout_src"  # metric prefix of the held-out source scores
SOURCE, TARGET, SPEC = "gta5", "cityscapes", "benchmark.json"  # a benchmark folder's parts (data.synth.write)
SIZE_COLUMNS = {"median_fpx": "median", "pixel_median_fpx": "pixel median", "regions": "regions"}


def region_sizes(bench: Path, experiment: Path) -> dict[str, dict[str, float]]:
    """Thing class -> ``<domain>_median_fpx``, ``<domain>_pixel_median_fpx``, ``<domain>_regions``
    for the domains ``source`` and ``target_val``.

    Raises:
        ConfigError / DataError: a bad experiment file or benchmark folder.
    """
    cfg = config.load(experiment)
    domains = {
        "source": ([s.label_path for s in list_samples(SOURCE, bench / SOURCE)], cfg.data.source.size),
        "target_val": ([s.label_path for s in list_samples(TARGET, bench / TARGET, "val")], cfg.data.target.size),
    }
    table: dict[str, dict[str, float]] = {}
    for domain, (paths, size) in domains.items():
        labels = [p for p in paths if p is not None]
        for c, areas in thing_region_areas(labels, (size[0], size[1])).items():
            row = table.setdefault(CLASS_NAMES[c], {})
            row[f"{domain}_median_fpx"] = float(np.median(areas)) if areas else float("nan")
            row[f"{domain}_pixel_median_fpx"] = pixel_median(areas)
            row[f"{domain}_regions"] = float(len(areas))
    return table


def sizes_text(table: dict[str, dict[str, float]]) -> str:
    """``region_sizes`` as a terminal table, one line per thing class."""
    keys = [f"{domain}_{key}" for domain in ("source", "target_val") for key in SIZE_COLUMNS]
    header = [f"{domain.replace('_', ' ')} {label}" for domain in ("source", "target val")
              for label in SIZE_COLUMNS.values()]
    rows = [["class", *header]]
    rows += [[name, *(f"{values[k]:.0f}" if k.endswith("regions") else f"{values[k]:.1f}" for k in keys)]
             for name, values in table.items()]
    return text_table(rows, right=range(1, len(rows[0])))


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
    spec = Path(cfg.data.source.root).parent / SPEC
    if not spec.is_file():
        raise ConfigError(f"{run_dir}: its source {cfg.data.source.root} is not a built-in benchmark "
                          f"(no {SPEC} beside it); held-out images need the benchmark's seed")
    return HeldoutRun(cfg, weights, json.loads(spec.read_text()))


def heldout_scores(run: HeldoutRun, count: int) -> dict[str, float]:
    """``heldout_src/miou`` and ``heldout_src/iou/<class>`` of ``run``'s model on ``count``
    held-out source images, on the CPU with one thread."""
    torch.set_num_threads(1)
    segmenter = segmenter_from_config(run.cfg.model)
    load_module_state(segmenter, load_segmenter_state(run.weights), run.weights)
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
