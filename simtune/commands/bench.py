"""``simtune bench``: time the training-step variants, the matcher and the pseudo-label pass;
``simtune bench --data``: time the training loaders for each worker count (simtune/bench/data/)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from simtune.errors import ConfigError


def _counts(text: str) -> tuple[int, ...]:
    """``"16,64"`` -> (16, 64); ``""`` or ``"0"`` -> () (skip the pass)."""
    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated image counts, e.g. 16,64, but got {text!r}") from None
    return tuple(n for n in counts if n != 0)


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("bench", help="time source-only / AA / AA+SIM steps, ours vs the reference way")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--size", default=None,
                        help="paper (R101, 1280x720 + 1024x512) or small (the built-in benchmark's net); default "
                             "small, or paper with --data (small there writes tiny images, for tests)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per variant and repeat (default 30)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds over the variants (default 3)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per variant first (default 5)")
    parser.add_argument("--variants", type=_names, default=None, metavar="A,B",
                        help="time only these: source_only, aa, aa_sim, aa_sim_fp32 (CUDA), aa_sim_reference "
                             "(default all; the equivalence check and matcher timing need aa_sim_reference)")
    parser.add_argument("--pseudo-images", type=_counts, default=None, metavar="N,M",
                        help="target-set sizes of the pseudo-label pass (default 16,64 small, 32,128 paper; "
                             "0 skips it)")
    parser.add_argument("--profile", type=int, default=0, metavar="STEPS",
                        help="also profile this many AA+SIM steps (top ops by device time)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--clock", default="wall",
                        help="wall (default) or cpu: process CPU time per step, for a CPU shared with other jobs")
    data = parser.add_argument_group("loader throughput (--data)")
    data.add_argument("--data", action="store_true",
                      help="time the training loaders (GTA5 -> Cityscapes, paper-size PNGs written to a temp folder) "
                           "for each worker count instead of the training steps")
    data.add_argument("--workers", default=None, metavar="0,1,2,4",
                      help="data.num_workers values to time (default 0 .. min(available CPUs, 8))")
    data.add_argument("--images", type=int, default=100, metavar="N", help="file names per dataset (default 100)")
    data.add_argument("--distinct", type=int, default=16, metavar="K",
                      help="rendered images per dataset; the other names are hard links to them (default 16)")
    data.add_argument("--iterations", type=int, default=60,
                      help="timed iterations per worker count (default 60)")
    data.add_argument("--step-ms", type=float, default=35.0,
                      help="training step (batch 1) the loader must keep up with, for the cores-per-GPU line "
                           "(default 35)")
    parser.add_argument("--json", action="store_true", help="print the full result as one JSON object")
    parser.add_argument("--out", type=Path, help="also write the JSON result to this file")
    parser.set_defaults(func=run)


def _log(line: str) -> None:
    print(f"bench: {line}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    if args.out is not None and not args.out.parent.is_dir():
        raise ConfigError(f"--out {args.out}: folder {args.out.parent} does not exist")
    if args.data:
        return _run_data(args)
    if args.workers is not None:
        raise ConfigError("--workers times the loaders; it needs --data")
    from simtune.bench import BenchSettings, format_report, run_bench

    settings = BenchSettings(device=args.device, size=args.size or "small", steps=args.steps, repeats=args.repeats,
                             warmup=args.warmup, pseudo_images=args.pseudo_images, profile_steps=args.profile,
                             threads=args.threads, clock=args.clock, variants=args.variants)
    result = run_bench(settings, log=_log)
    _emit(args, result, format_report(result))
    return 0


def _run_data(args: argparse.Namespace) -> int:
    from simtune.bench.data import DataBenchSettings, format_data_report, parse_workers, run_data_bench

    settings = DataBenchSettings(workers=None if args.workers is None else parse_workers(args.workers),
                                 images=args.images, distinct=args.distinct, iterations=args.iterations,
                                 step_ms=args.step_ms, size=args.size or "paper")
    result = run_data_bench(settings, log=_log)
    _emit(args, result, format_data_report(result))
    return 0


def _emit(args: argparse.Namespace, result: dict[str, Any], text_report: str) -> None:
    text = json.dumps(result, indent=1)
    if args.out is not None:
        args.out.write_text(text + "\n")
    print(text if args.json else text_report)
