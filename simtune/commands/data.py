"""``simtune data synth``: write the built-in synthetic benchmark."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("data", help="dataset tools")
    data_sub = parser.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    synth = data_sub.add_parser("synth", help="write the built-in benchmark (GTA5 + Cityscapes layouts)")
    synth.add_argument("--out", type=Path, required=True, help="output folder (gta5/ and cityscapes/ inside)")
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(func=run_synth)


def run_synth(args: argparse.Namespace) -> int:
    from simtune.data.synth import generate_benchmark

    start = time.perf_counter()
    paths = generate_benchmark(args.out.resolve(), seed=args.seed)
    print(f"source (gta5 layout):       {paths.source_root}")
    print(f"target (cityscapes layout): {paths.target_root}")
    print(f"ready in {time.perf_counter() - start:.1f} s")
    return 0
