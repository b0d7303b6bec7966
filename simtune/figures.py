"""Figures of one run and of a sweep, drawn with matplotlib's Agg backend (no display).

Run figures come from a run directory alone (``stage*/history.json``, ``model.pt``,
``config.yaml``): mIoU over iterations per stage, per-class IoU bars of the last
evaluation, and prediction samples laid out like the paper's Figure 4 (image, ground
truth, prediction of each stage). Sweep figures (``report``) take plain rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from simtune.labels import CLASS_NAMES, PALETTE, colorize  # noqa: E402
from simtune.rundir import STAGES  # noqa: E402
from simtune.keys import REPORT_METRIC, SELECTION_METRIC

SPLITS = (("val", "selection (frankfurt)"), ("report", "report (lindau + munster)"))


def save_figure(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- one run


def miou_curve(histories: Mapping[str, list[dict[str, Any]]], title: str = "", stage1_end: int | None = None) -> Figure:
    """mIoU (%) against the global iteration: a line per split and stage, the stages' border marked.

    Stage 2 starts again from the initial weights (eq. 13), so its line starts afresh
    rather than continuing stage 1's.

    Args:
        stage1_end: the global iteration at which stage 1 ends (``stage1.iters``); None =
            the step of its last evaluation (a stage always evaluates at its end).
    """
    fig, ax = plt.subplots(figsize=(7, 4))
    colours = {"val": "tab:blue", "report": "tab:orange"}
    markers = {"stage0": "^", "stage1": "o", "stage2": "s"}
    for stage in (s for s in STAGES if s in histories):
        records = histories[stage]
        steps = [r["step"] for r in records]
        for prefix, label in SPLITS:
            values = [r.get(f"{prefix}/miou", np.nan) for r in records]
            ax.plot(steps, values, marker=markers[stage], color=colours[prefix], linestyle="-",
                    alpha=1.0 if stage == "stage1" else 0.75, label=f"{label}, {stage.replace('stage', 'stage ')}")
    if "stage1" in histories and "stage2" in histories:
        border = stage1_end if stage1_end is not None else histories["stage1"][-1]["step"]
        ax.axvline(border, color="grey", linewidth=0.8, linestyle=":")
        ax.annotate(f"end of stage 1 ({border})", (border, 1.0), xycoords=("data", "axes fraction"),
                    xytext=(3, -12), textcoords="offset points", fontsize=7, color="grey")
    ax.set_xlabel("iteration (global, both stages)")
    ax.set_ylabel("mIoU (%)")
    ax.set_title(title or "mIoU over iterations")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def class_iou_bars(record: Mapping[str, Any], title: str = "") -> Figure:
    """Per-class IoU (%) of one evaluation, selection and report side by side."""
    names = [n for n in CLASS_NAMES if f"val/iou/{n}" in record or f"report/iou/{n}" in record]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(10, 4))
    for offset, (prefix, label) in zip((-0.2, 0.2), SPLITS):
        values = [record.get(f"{prefix}/iou/{n}", np.nan) for n in names]
        ax.bar(x + offset, values, width=0.4, label=f"{label}: mIoU {record.get(f'{prefix}/miou', np.nan):.1f}")
    ax.set_xticks(x, names, rotation=45, ha="right")
    ax.set_ylabel("IoU (%)")
    ax.set_title(title or "per-class IoU, last evaluation")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return fig


def prediction_samples(run_dir: Path, count: int = 3) -> Figure | None:
    """Figure 4 of the paper for one run: selection images, ground truth, each stage's prediction.

    Runs the run's final ``model.pt`` of each finished stage on CPU over the first
    ``count`` selection (frankfurt) images. Returns None when no stage has a model.
    """
    rows = sample_predictions(run_dir, count)
    if not rows:
        return None
    columns = ["image", "ground truth", *rows[0][2]]
    fig, axes = plt.subplots(len(rows), len(columns), figsize=(3.2 * len(columns), 1.9 * len(rows) + 0.8),
                             squeeze=False)
    shown: set[int] = set()
    for row, (rgb, truth, predictions) in zip(axes, rows):
        panels = [rgb, colorize(truth), *(colorize(p) for p in predictions.values())]
        present = np.unique(np.concatenate([truth.ravel(), *(p.ravel() for p in predictions.values())]))
        shown.update(int(c) for c in present if c < len(CLASS_NAMES))
        for ax, panel, name in zip(row, panels, columns):
            ax.imshow(panel)
            ax.set_axis_off()
            ax.set_title(name, fontsize=9)
    handles = [plt.Rectangle((0, 0), 1, 1, color=np.asarray(PALETTE[c]) / 255) for c in sorted(shown)]
    fig.legend(handles, [CLASS_NAMES[c] for c in sorted(shown)], loc="lower center", ncol=min(10, len(handles) or 1),
               fontsize=7, frameon=False)
    fig.subplots_adjust(bottom=0.12)
    return fig


def sample_predictions(run_dir: Path, count: int) -> list[tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]]:
    """``(rgb (H, W, 3) uint8, ground truth (H, W), {"stage N": prediction (H, W)})`` per image.

    Everything is at the label's resolution; predictions are the argmax of logits
    upsampled bilinearly, as in evaluation.
    """
    import torch
    import torch.nn.functional as F

    from simtune.rundir import RunDir
    from simtune.data.datasets import SegmentationDataset, read_image
    from simtune.data.splits import split_samples
    from simtune.data.build import domain_samples
    from simtune.models import load_trained, segmenter_from_config

    run = RunDir(run_dir)
    weights = {f"stage {stage[-1]}": path for stage, path in run.final_models().items()}
    if not weights or not run.has_config():
        return []
    cfg = run.config()
    trg = cfg.data.target
    samples = split_samples(domain_samples(trg, split=cfg.data.val_split), "selection")[:count]
    dataset = SegmentationDataset(trg.dataset, samples, size=trg.size, label_size="original")
    items = [dataset[i] for i in range(len(dataset))]
    predictions: dict[str, list[np.ndarray]] = {}
    for name, path in weights.items():
        net = load_trained(segmenter_from_config(cfg.model), path)
        net.eval()
        with torch.no_grad():
            for item in items:
                logits = net(item["image"].unsqueeze(0)).logits  # (1, K, h, w)
                logits = F.interpolate(logits, size=item["label"].shape[-2:], mode="bilinear", align_corners=False)
                predictions.setdefault(name, []).append(logits.argmax(1)[0].numpy().astype(np.uint8))
    rows = []
    for index, (sample, item) in enumerate(zip(samples, items)):
        truth = item["label"].numpy().astype(np.uint8)
        rgb = read_image(sample.image_path, (truth.shape[1], truth.shape[0]))
        rows.append((rgb, truth, {name: preds[index] for name, preds in predictions.items()}))
    return rows


# ----------------------------------------------------------------------------- a sweep


def param_effect(rows: Sequence[Mapping[str, Any]], *, param: str, fixed: str, log_x: bool, title: str) -> Figure:
    """The paper's Tables 3-4 as a plot: mIoU (mean ± std over seeds/repeats) against ``param``.

    Args:
        rows: ``{"value", "metric", "mean", "std", "n"}`` per (metric, value) group.
        fixed: what is held fixed, e.g. ``"w = 50"``, shown in the title.
    """
    fig, ax = plt.subplots(figsize=(6, 4))
    for metric, label in ((SELECTION_METRIC, "selection (frankfurt)"), (REPORT_METRIC, "report (lindau + munster)")):
        group = sorted((r for r in rows if r["metric"] == metric), key=lambda r: r["value"])
        if not group:
            continue
        x = [r["value"] for r in group]
        ax.errorbar(x, [r["mean"] for r in group], yerr=[r["std"] or 0.0 for r in group], marker="o", capsize=4,
                    label=label)
        for r in group:
            if r["n"] > 1:
                ax.annotate(f"n={r['n']}", (r["value"], r["mean"]), textcoords="offset points", xytext=(4, 4),
                            fontsize=7)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(param)
    ax.set_ylabel("mIoU (%), last evaluation")
    ax.set_title(f"{title} ({fixed})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def importance_bars(importances: Mapping[str, float], title: str) -> Figure:
    """Horizontal bars of parameter importances (they sum to 1)."""
    names = list(importances)[::-1]
    fig, ax = plt.subplots(figsize=(6, 0.5 * len(names) + 1.2))
    ax.barh(names, [importances[n] for n in names], color="tab:green")
    ax.set_xlabel("importance")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return fig


# ----------------------------------------------------------------------------- label-free validators


def validator_scatter(points: Mapping[str, Sequence[tuple[float, float, bool]]], title: str = "") -> Figure:
    """One panel per metric: its value (x) against report mIoU (y).

    Args:
        points: metric -> ``(value, report mIoU, is_last)`` per evaluation; a trial's last
            evaluation (``is_last``) is drawn filled, earlier ones as faint rings.
    """
    names = list(points)
    cols = min(3, len(names)) or 1
    rows = -(-len(names) // cols) or 1
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        earlier = [(x, y) for x, y, last in points[name] if not last]
        final = [(x, y) for x, y, last in points[name] if last]
        if earlier:
            ax.scatter(*zip(*earlier), s=14, facecolors="none", edgecolors="tab:grey", alpha=0.6,
                       label="earlier evaluations")
        if final:
            ax.scatter(*zip(*final), s=22, color="tab:blue", label="last evaluation of a trial")
        ax.set_xlabel(name)
        ax.set_ylabel("report mIoU (%)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(title or "label-free validators against report mIoU")
    fig.tight_layout()
    return fig
