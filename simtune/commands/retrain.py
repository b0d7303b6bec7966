"""``simtune retrain --best``: retrain a sweep's best config over seeds and register the champion."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from simtune.keys import REPORT_METRIC
from simtune.commands.common import storage_folder
from simtune.errors import EXIT_TRIALS_FAILED
from simtune.stats import format_spread
from simtune.tables import text_table

if TYPE_CHECKING:
    from simtune.workflows.retrain import RetrainResult


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "retrain", help="retrain the best trial of a sweep for several seeds; register it as @champion",
        description="Picks the best trial by the selection metric (val/miou) at its LAST evaluation, not its "
                    "best-ever one, retrains the full two-stage pipeline on N fresh seeds (none of them used by the "
                    "sweep) and reports mean ± std of report/miou (held-out lindau + munster) next to the "
                    "sweep's own estimate.")
    parser.add_argument("--best", action="store_true", required=True,
                        help="retrain the best trial (by its last evaluation of the selection metric)")
    parser.add_argument("--sweep", "--name", dest="sweep", default=None,
                        help="sweep name, as simtune sweep --name (default: the most recent sweep in --storage)")
    parser.add_argument("--storage", default=None, help="folder of sweeps (default ./sweeps)")
    parser.add_argument("--seeds", type=int, default=3,
                        help="fresh seeds to train: one past the sweep's largest seed, and on (default 3)")
    parser.add_argument("--seeds-from", type=int, default=None, metavar="N",
                        help="first fresh seed (default: one past the sweep's largest); a sweep seed is refused")
    parser.add_argument("--iters-scale", type=float, default=1.0,
                        help="multiply stage iters, schedule_iters and eval.every by X (default 1)")
    parser.add_argument("--compare-runner-up", action="store_true", help="also retrain the second-best trial")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow store (default: the one the sweep recorded; another one is refused)")
    parser.add_argument("--model-name", default=None, help="registered model name (default simtune-<search space>)")
    parser.add_argument("--address", default=None, help="Ray cluster the seeds train on at once, e.g. HEAD:6379 "
                        "(default: RAY_ADDRESS, else a local Ray); run the same command again to continue after a kill")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from simtune.workflows.retrain import retrain_best

    result = retrain_best(storage=storage_folder(args.storage), sweep=args.sweep, seeds=args.seeds,
                          iters_scale=args.iters_scale,
                          compare_runner_up=args.compare_runner_up, tracking_uri=args.tracking_uri,
                          model_name=args.model_name, seeds_from=args.seeds_from, address=args.address,
                          say=lambda line: print(f"simtune retrain: {line}", file=sys.stderr, flush=True))
    print(format_result(result))
    failed = [run for candidate in result.candidates for run in candidate.runs if run.failure]
    if failed:
        total = sum(len(candidate.runs) for candidate in result.candidates)
        print(f"{len(failed)} of {total} seed runs failed; first: seed {failed[0].seed}: {failed[0].failure}")
        return EXIT_TRIALS_FAILED
    return 0


def format_result(result: RetrainResult) -> str:
    """The retrain outcome as terminal text."""
    from simtune.tracking import naming
    from simtune.tracking.naming import CHAMPION
    from simtune.workflows.retrain import confirmation, verdicts

    seeds = result.candidates[0].seeds if result.candidates else []
    lines = [f"sweep {result.sweep_dir.name} ({result.sweep_dir})",
             f"confirmation on fresh seeds {', '.join(map(str, seeds))} (no trial of the sweep trained with them)",
             f"selection: {result.metric} ({result.mode}) at each trial's LAST evaluation (not its best-ever)",
             "mean ± sample std over seeds on the held-out report split (report/miou: lindau + munster); "
             "in a verdict ± is the half-width of the paired 95% interval", ""]
    rows = [["candidate", "trial", "fresh seeds", REPORT_METRIC, result.metric, f"{result.metric} (sweep)",
             "per seed report/miou"]]
    for c in result.candidates:
        per_seed = ", ".join(f"{r.seed}: {r.final[REPORT_METRIC]:.2f}" if REPORT_METRIC in r.final
                             else f"{r.seed}: failed" for r in c.runs)
        rows.append([c.role, c.trial.trial_id, f"{len(c.by_seed(REPORT_METRIC))}/{len(c.runs)}",
                     format_spread(c.spread(REPORT_METRIC)), format_spread(c.spread(result.metric)),
                     format_spread(c.sweep.get(result.metric), with_n=True), per_seed])
    lines += [text_table(rows, rule=False)]
    lines += [*confirmation(result)]
    lines += [*verdicts(result), ""]
    if result.model_version is not None and result.champion is not None:
        before = f"; @previous is version {result.previous_version}" if result.previous_version else ""
        lines.append(f"registered model '{result.model_name}' version {result.model_version} as @{CHAMPION} "
                     f"(best trial, seed {result.champion.seed}){before}")
        lines.append(f"  load it: mlflow.pyfunc.load_model('models:/{result.model_name}@{CHAMPION}')")
    else:
        lines.append("no model registered: every seed of the best configuration failed")
    lines += [f"note: {note}" for note in result.notes]
    lines += naming.ui_lines(result.tracking_uri, result.experiment_id, result.parent_run_id,
                            sweep=result.sweep_dir.name, storage=result.sweep_dir.parent)
    return "\n".join(lines)
