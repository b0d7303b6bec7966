"""How correct are the target regions that SIM matches? A diagnostic for the ablation.

    python scripts/region_purity.py RUN_DIR... [--stage stage0] [--part selection]

L_ins pulls each predicted target region of a thing class towards that class's source
bank, and L_stf pulls each predicted stuff class's mean; a region is only helped when it
really is that class. For each run's model (its last stage, or ``--stage``) this takes the
target map the matcher takes (argmax of the logits at feature resolution, the largest
``sim.target_regions`` regions per thing class and image, ``simtune.sim.regions``) on the
labelled target images of one evaluation split (selection by default, never used to choose
anything here), and prints per class:

- ``regions``: predicted thing regions per image the matcher would match;
- ``mostly right``: the share of those regions whose labelled pixels are mostly the class;
- ``precision``: the share of predicted pixels of the class that are the class (stuff too).

With several run dirs (e.g. one per seed) the printed values are means over runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from simtune.labels import CLASS_NAMES, IGNORE, STUFF_IDS, THING_IDS
from simtune.models import load_trained
from simtune.rundir import RunDir
from simtune.sim.regions import label_regions_batch
from simtune.train.builders import build_datasets, build_nets


def _maps(run_dir: Path, stage: str | None, part: str) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """(predicted map, label map, regions kept per class), both ``(h, w)`` at feature resolution."""
    run = RunDir(run_dir)
    cfg = run.config()
    weights = run.model(stage) if stage else run.weights()
    nets, _ = build_nets(cfg, torch.device("cpu"))
    load_trained(nets.segmenter, weights)
    nets.segmenter.eval()
    maps = []
    with torch.no_grad():
        for batch in torch.utils.data.DataLoader(build_datasets(cfg).val[part]):
            logits = nets.segmenter(batch["image"]).logits
            small = F.interpolate(batch["label"][:, None].float(), size=logits.shape[-2:], mode="nearest")[:, 0]
            maps.append((logits.argmax(1)[0].numpy().astype(np.uint8), small[0].numpy().astype(np.uint8),
                         cfg.sim.target_regions))
    return maps


def purity(run_dir: Path, stage: str | None, part: str) -> dict[str, dict[str, float]]:
    """Per class: regions per image, share of regions mostly right, pixel precision (NaN if never predicted)."""
    maps = _maps(run_dir, stage, part)
    counts = {c: [0, 0, 0, 0] for c in range(len(CLASS_NAMES))}  # regions, right regions, predicted, correct
    for pred, label, keep in maps:
        kept = label_regions_batch(pred[None], THING_IDS, keep)
        for r, cls in enumerate(kept.classes):
            truth = label[kept.index_map[0] == r]
            truth = truth[truth != IGNORE]
            counts[int(cls)][0] += 1
            counts[int(cls)][1] += int(truth.size > 0 and np.count_nonzero(truth == cls) * 2 > truth.size)
        for cls in range(len(CLASS_NAMES)):
            predicted = (pred == cls) & (label != IGNORE)
            counts[cls][2] += int(np.count_nonzero(predicted))
            counts[cls][3] += int(np.count_nonzero(predicted & (label == cls)))
    out = {}
    for cls, (regions, right, predicted, correct) in counts.items():
        out[CLASS_NAMES[cls]] = {"regions": regions / len(maps),
                                 "mostly right": right / regions if regions else float("nan"),
                                 "precision": correct / predicted if predicted else float("nan")}
    return out


def _mean(values: list[float]) -> float:
    """Mean of the values that are not NaN (NaN if none is)."""
    kept = [v for v in values if not np.isnan(v)]
    return sum(kept) / len(kept) if kept else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", type=Path, nargs="+")
    parser.add_argument("--stage", help="score this stage's model.pt (e.g. stage0) instead of the last")
    parser.add_argument("--part", choices=("selection", "report"), default="selection")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    runs = [purity(run_dir, args.stage, args.part) for run_dir in args.run_dirs]
    print(f"{len(runs)} runs ({args.stage or 'last stage'}), {args.part} split, mean over runs")
    print(f"{'class':20s} {'regions/img':>11s} {'mostly right':>12s} {'precision':>9s}")
    for cls, name in enumerate(CLASS_NAMES):
        if all(np.isnan(run[name]["precision"]) for run in runs):
            continue  # never predicted on a labelled pixel (e.g. train on the built-in benchmark)
        mean = {k: _mean([run[name][k] for run in runs]) for k in runs[0][name]}
        group = "thing" if cls in THING_IDS else "stuff" if cls in STUFF_IDS else ""
        regions = f"{mean['regions']:11.1f}" if group == "thing" else " " * 11
        right = f"{100 * mean['mostly right']:11.0f}%" if group == "thing" else " " * 12
        print(f"{name + ' (' + group + ')':20s} {regions} {right} {100 * mean['precision']:8.0f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
