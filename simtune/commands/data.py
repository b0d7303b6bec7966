"""``simtune data synth``: write the built-in synthetic benchmark; ``simtune data stats``: measure it."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

STATS_HELP = """\
Measure the built-in benchmark (docs/benchmark.md):
  sizes BENCH_DIR                  median thing-region size in feature pixels (training size / stride 8),
                                   source and target val, and the pixel-weighted median
  heldout RUN_DIR...               IoU of runs' last (or --stage) models on held-out source images the
                                   benchmark never wrote (same seed and distribution); with several runs,
                                   each class's lowest and mean
  table SOURCE_ONLY TARGET_ONLY    per-class in-domain / source-only / target-only IoU (markdown)"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("data", help="dataset tools")
    data_sub = parser.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    synth = data_sub.add_parser("synth", help="write the built-in benchmark (GTA5 + Cityscapes layouts)")
    synth.add_argument("--out", type=Path, required=True, help="output folder (gta5/ and cityscapes/ inside)")
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(func=run_synth)
    _register_stats(data_sub)


def _register_stats(data_sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    stats = data_sub.add_parser("stats", help="measure the built-in benchmark: region sizes, held-out source IoU",
                                description=STATS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    stats_sub = stats.add_subparsers(dest="stats_command", required=True, metavar="MEASURE")
    p = stats_sub.add_parser("sizes", help="median thing-region size in feature pixels")
    p.add_argument("bench", type=Path, help="benchmark folder (gta5/ and cityscapes/ inside)")
    p.add_argument("--experiment", type=Path, default=Path("experiments/synthetic.yaml"),
                   help="its data.*.size are the training sizes (default experiments/synthetic.yaml)")
    p.set_defaults(func=run_sizes)
    p = stats_sub.add_parser("heldout", help="IoU of runs' last (or --stage) models on held-out source images")
    p.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    p.add_argument("--stage", help="score this stage's model.pt (e.g. stage0) instead of the last")
    p.add_argument("--count", type=int, default=80, help="held-out source images (default 80)")
    p.set_defaults(func=run_heldout)
    p = stats_sub.add_parser("table", help="per-class in-domain / source-only / target-only IoU (markdown)")
    p.add_argument("source_only", type=Path, help="run directory of a source-only run")
    p.add_argument("target_only", type=Path, help="run directory of a target-only run")
    p.add_argument("--part", default="val", help="target val part: val = selection split (default), or report")
    p.add_argument("--count", type=int, default=80, help="held-out source images (default 80)")
    p.set_defaults(func=run_table)


def run_synth(args: argparse.Namespace) -> int:
    from simtune.data.synth import generate_benchmark

    start = time.perf_counter()
    paths = generate_benchmark(args.out.resolve(), seed=args.seed)
    print(f"source (gta5 layout):       {paths.source_root}")
    print(f"target (cityscapes layout): {paths.target_root}")
    print(f"ready in {time.perf_counter() - start:.1f} s")
    return 0


def run_sizes(args: argparse.Namespace) -> int:
    from simtune.data.stats import region_sizes, sizes_text

    print(sizes_text(region_sizes(args.bench, args.experiment)))
    return 0


def run_heldout(args: argparse.Namespace) -> int:
    from simtune.heldout import heldout_text, score_runs

    scores = score_runs(args.run_dirs, args.count, args.stage)
    print(json.dumps(scores[0], indent=1) if len(scores) == 1 else heldout_text(scores, args.stage))
    return 0


def run_table(args: argparse.Namespace) -> int:
    from simtune.heldout import iou_table

    print("\n".join(iou_table(args.source_only, args.target_only, args.part, args.count)))
    return 0
