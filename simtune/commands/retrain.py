"""``simtune retrain --best``: retrain a sweep's best config over seeds and register the champion."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from simtune.errors import EXIT_TRIALS_FAILED


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "retrain", help="retrain the best trial of a sweep for several seeds; register it as @champion",
        description="Picks the best trial by the selection metric (val/miou) at its LAST evaluation, not its "
                    "best-ever one, retrains the full two-stage pipeline on N fresh seeds (none of them used by the "
                    "sweep) and reports mean ± std of report/miou (held-out lindau + munster) next to the "
                    "sweep's own estimate.")
    parser.add_argument("--best", action="store_true", required=True,
                        help="retrain the best trial (by its last evaluation of the selection metric)")
    parser.add_argument("--sweep", default=None, help="sweep name (default: the most recent sweep in --storage)")
    parser.add_argument("--storage", type=Path, default=Path("sweeps"), help="folder of sweeps (default ./sweeps)")
    parser.add_argument("--seeds", type=int, default=3,
                        help="fresh seeds to train: one past the sweep's largest seed, and on (default 3)")
    parser.add_argument("--seeds-from", type=int, default=None, metavar="N",
                        help="first fresh seed (default: one past the sweep's largest); a sweep seed is refused")
    parser.add_argument("--iters-scale", type=float, default=1.0,
                        help="multiply stage iters, schedule_iters and eval.every by X (default 1)")
    parser.add_argument("--compare-runner-up", action="store_true", help="also retrain the second-best trial")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow store (default: MLFLOW_TRACKING_URI or sqlite:///<storage>/mlflow.db)")
    parser.add_argument("--model-name", default=None, help="registered model name (default simtune-<search space>)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from simtune.workflows.retrain import format_result, retrain_best

    result = retrain_best(storage=args.storage, sweep=args.sweep, seeds=args.seeds, iters_scale=args.iters_scale,
                          compare_runner_up=args.compare_runner_up, tracking_uri=args.tracking_uri,
                          model_name=args.model_name, progress=sys.stderr.isatty(),
                          seeds_from=args.seeds_from)
    print(format_result(result))
    failed = [run for candidate in result.candidates for run in candidate.runs if run.failure]
    if failed:
        total = sum(len(candidate.runs) for candidate in result.candidates)
        print(f"{len(failed)} of {total} seed runs failed; first: seed {failed[0].seed}: {failed[0].failure}")
        return EXIT_TRIALS_FAILED
    return 0
