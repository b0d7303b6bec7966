"""``simtune train``: stage 1 -> pseudo-labels -> stage 2 of one experiment."""

from __future__ import annotations

from typing import TYPE_CHECKING

import argparse
import time
from pathlib import Path

from simtune.keys import REPORT_METRIC, SELECTION_METRIC
from simtune import preflight
from simtune.tables import text_table

if TYPE_CHECKING:
    from simtune.train.pipeline import PipelineResult
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

    cfg = load_config(args)
    preflight.check([cfg])
    out = args.out or Path("runs") / f"{args.experiment.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    out = out.resolve()
    stage0_cache = None if args.no_stage0_cache else out.parent / "stage0_cache"
    result = run_pipeline(cfg, out, resume=args.resume, progress=not args.no_progress, stage0_cache=stage0_cache)
    print(final_table(result))
    print(f"run directory: {result.out_dir}")
    return 0


def final_table(result: PipelineResult) -> str:
    """mIoU per stage and per val part, as an aligned text table; then the last stage's
    label-free validators, when the run computed them."""
    rows = [("stage", "iteration", "val/miou (selection, oracle)", REPORT_METRIC)]
    for stage, metrics in result.stages.items():
        rows.append((stage, f"{metrics.get('iteration', float('nan')):.0f}",
                     f"{metrics.get(SELECTION_METRIC, float('nan')):.2f}",
                     f"{metrics.get(REPORT_METRIC, float('nan')):.2f}"))
    select = {k.removeprefix("select/"): v for k, v in result.final.items() if k.startswith("select/")}
    text = text_table(rows)
    if select:
        text += "\nlabel-free validators (select/*, higher = better): " + \
            ", ".join(f"{name} {value:.3g}" for name, value in select.items())
    return text
