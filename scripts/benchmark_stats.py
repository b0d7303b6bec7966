"""Measure the built-in benchmark: how large its thing regions are at the training
resolution, and how well a trained run segments held-out *source* images (in-domain IoU).

Usage:
    python scripts/benchmark_stats.py sizes BENCH_DIR [--experiment EXP.yaml]
    python scripts/benchmark_stats.py heldout RUN_DIR... [--stage stage0] [--count 80]
    python scripts/benchmark_stats.py table SOURCE_ONLY_RUN TARGET_ONLY_RUN [--part val|report]

``sizes`` prints, per thing class, the median area of a connected region (8-connected, per
class) in *feature pixels*: pixels at the experiment's training size divided by the
output stride squared (8 x 8), for the source images and the target val images; beside
it the pixel-weighted median (half of the class's pixels lie in regions at least this
large), which small occlusion slivers do not drag down.

``heldout`` scores each ``RUN_DIR``'s last model (or its ``--stage`` model) on source images
the benchmark never wrote: indices ``num_source .. num_source + count - 1`` of the same seed,
drawn from the same distribution as the training images
(``simtune.data.synth.write_source_images``). With several run dirs (e.g. one per seed) it
prints each class's lowest and mean IoU over them.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from simtune import config
from simtune.data.datasets import SegmentationDataset, list_samples
from simtune.data.synth.measure import pixel_median, thing_region_areas
from simtune.data.synth.write import write_source_images
from simtune.evaluation import evaluate_model
from simtune.labels import CLASS_NAMES, THING_IDS

def sizes(bench: Path, experiment: Path) -> dict[str, dict[str, float]]:
    """Median region size and region count per thing class, per domain."""
    cfg = config.build(config.read_yaml(experiment), source=str(experiment))
    domains = {
        "source": (sorted((bench / "gta5" / "labels").glob("*.png")), cfg.data.source.size),
        "target_val": (sorted((bench / "cityscapes" / "gtFine" / "val").rglob("*_labelIds.png")),
                       cfg.data.target.size),
    }
    table: dict[str, dict[str, float]] = {}
    for domain, (paths, size) in domains.items():
        for c, areas in thing_region_areas(paths, tuple(size)).items():  # type: ignore[arg-type]
            row = table.setdefault(CLASS_NAMES[c], {})
            row[f"{domain}_median_fpx"] = float(np.median(areas)) if areas else float("nan")
            row[f"{domain}_pixel_median_fpx"] = pixel_median(areas)
            row[f"{domain}_regions"] = float(len(areas))
    return table


def heldout(run_dir: Path, count: int, stage: str | None = None) -> dict[str, float]:
    """mIoU and per-class IoU of ``run_dir``'s last (or ``stage``'s) model on held-out source images."""
    from simtune.rundir import RunDir, load_segmenter_state
    from simtune.train.builders import build_nets

    run = RunDir(run_dir)
    cfg = run.config()
    spec = json.loads((Path(cfg.data.source.root).parent / "benchmark.json").read_text())
    weights = run.model(stage) if stage else run.weights()
    nets, _ = build_nets(cfg, torch.device("cpu"))
    nets.segmenter.load_state_dict(load_segmenter_state(weights))
    nets.segmenter.eval()
    with tempfile.TemporaryDirectory() as tmp:
        root = write_source_images(Path(tmp), seed=spec["seed"], first=spec["num_source"], count=count,
                                   size=tuple(spec["source_size"]))
        data = SegmentationDataset("gta5", list_samples("gta5", root), size=cfg.data.source.size,
                                   label_size="original")
        result = evaluate_model(lambda x: nets.segmenter(x).logits, torch.utils.data.DataLoader(data),
                                device="cpu")
    return {"weights": str(weights), **result.to_metrics("heldout_src")}  # type: ignore[dict-item]


def last_metrics(run_dir: Path) -> dict[str, float]:
    """The last stage's metrics in ``run_dir/results.json``."""
    stages = json.loads((run_dir / "results.json").read_text())["stages"]
    return stages[list(stages)[-1]]


def table(source_only: Path, target_only: Path, part: str, count: int) -> list[str]:
    """Markdown rows: per class, held-out source IoU and target IoU of both runs."""
    inside, src, trg = heldout(source_only, count), last_metrics(source_only), last_metrics(target_only)
    rows = [f"| class | in-domain (held-out source) | source only on target ({part}) | target only ({part}) |",
            "|---|---|---|---|"]
    for name in CLASS_NAMES:
        values = [inside.get(f"heldout_src/iou/{name}", float("nan")),
                  src.get(f"{part}/iou/{name}", float("nan")), trg.get(f"{part}/iou/{name}", float("nan"))]
        if not all(np.isnan(v) for v in values):
            thing = "**" if CLASS_NAMES.index(name) in THING_IDS else ""
            rows.append(f"| {thing}{name}{thing} | " + " | ".join(f"{v:.1f}" for v in values) + " |")
    rows.append(f"| mIoU | {inside['heldout_src/miou']:.1f} | {src[f'{part}/miou']:.1f} | "
                f"{trg[f'{part}/miou']:.1f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("sizes", help="median thing-region size in feature pixels")
    p.add_argument("bench", type=Path)
    p.add_argument("--experiment", type=Path, default=Path("experiments/synthetic.yaml"))
    p = sub.add_parser("heldout", help="IoU of runs' last (or --stage) models on held-out source images")
    p.add_argument("run_dirs", type=Path, nargs="+")
    p.add_argument("--stage", help="score this stage's model.pt (e.g. stage0) instead of the last")
    p.add_argument("--count", type=int, default=80)
    p = sub.add_parser("table", help="per-class in-domain / source-only / target-only IoU")
    p.add_argument("source_only", type=Path)
    p.add_argument("target_only", type=Path)
    p.add_argument("--part", choices=("val", "report"), default="val", help="val = selection split")
    p.add_argument("--count", type=int, default=80)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.command == "sizes":
        for name, row in sizes(args.bench, args.experiment).items():
            print(f"{name:12s} " + "  ".join(f"{k} {v:7.1f}" for k, v in row.items()))
    elif args.command == "heldout" and len(args.run_dirs) == 1:
        print(json.dumps(heldout(args.run_dirs[0], args.count, args.stage), indent=1))
    elif args.command == "heldout":
        runs = [heldout(run_dir, args.count, args.stage) for run_dir in args.run_dirs]
        print(f"{len(runs)} runs ({args.stage or 'last stage'}): lowest and mean held-out source IoU")
        for name in [*CLASS_NAMES, "miou"]:
            key = f"heldout_src/{name}" if name == "miou" else f"heldout_src/iou/{name}"
            values = [run[key] for run in runs if key in run]
            if values:
                thing = " (thing)" if name in CLASS_NAMES and CLASS_NAMES.index(name) in THING_IDS else ""
                print(f"{name + thing:20s} lowest {min(values):5.1f}  mean {sum(values) / len(values):5.1f}")
    else:
        print("\n".join(table(args.source_only, args.target_only, args.part, args.count)))


if __name__ == "__main__":
    main()
