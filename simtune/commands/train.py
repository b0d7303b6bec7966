"""``simtune train``: stage 1 -> pseudo-labels -> stage 2 of one experiment."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from simtune import preflight
from simtune.commands.common import add_config_args, load_config


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("train", help="run the two-stage SIM pipeline of one experiment")
    add_config_args(parser)
    parser.add_argument("--out", type=Path, default=None,
                        help="run directory (default runs/<experiment>-<time>); never overwritten")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-stage0-cache", action="store_true",
                        help="train stage 0 (init.source_pretrain) in this run instead of reusing "
                             "<out's parent>/stage0_cache")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from simtune.train.pipeline import run_pipeline
    from simtune.tables import final_table

    cfg = load_config(args)
    preflight.check([cfg])
    out = args.out or Path("runs") / f"{args.experiment.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    out = out.resolve()
    stage0_cache = None if args.no_stage0_cache else out.parent / "stage0_cache"
    result = run_pipeline(cfg, out, resume=args.resume, progress=not args.no_progress, stage0_cache=stage0_cache)
    print(final_table(result))
    print(f"run directory: {result.out_dir}")
    return 0
