"""``simtune report``: the paper's Tables 3-4, parameter importance, per-class IoU and the trust table of a sweep."""

from __future__ import annotations

import argparse
from pathlib import Path

from simtune.keys import REPORT_METRIC, SELECTION_METRIC
from simtune.commands.common import storage_folder


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("report", help="figures and a markdown summary of a finished sweep")
    parser.add_argument("--sweep", "--name", dest="sweep", default=None,
                        help="sweep name, as simtune sweep --name (default: the most recent sweep in --storage)")
    parser.add_argument("--storage", default=None, help="folder of sweeps (default ./sweeps)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default <storage>/<sweep>/report)")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow store to attach to (default: the one the sweep recorded; another one is refused)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from simtune.workflows.report import build_report
    from simtune.results.sweepdir import find_sweep
    from simtune.tracking import naming
    from simtune.workflows.selection_report import text_lines

    report = build_report(find_sweep(storage_folder(args.storage), args.sweep), args.out,
                          tracking_uri=args.tracking_uri)
    from simtune.tracking.naming import config_label

    best = report.best_config
    if best is not None:
        sel, rep = best.spread(SELECTION_METRIC), best.spread(REPORT_METRIC)
        print(f"best configuration {config_label(best.params)} (mean of its last evaluations over {best.n} "
              f"replicate(s)): val/miou {sel.mean if sel else float('nan'):.2f}, "
              f"report/miou {rep.mean if rep else float('nan'):.2f}")
        print(report.verdict)
        print(report.noise)
    if report.trust is not None:
        print("\n".join(text_lines(report.trust)))
    for path in report.files:
        print(f"wrote {path}")
    if report.parent_run_id:
        print(f"attached to MLflow run {report.parent_run_id} under report/")
    for note in report.notes:
        print(f"note: {note}")
    if report.tracking_uri:
        print("\n".join(naming.ui_lines(report.tracking_uri, report.experiment_id, report.parent_run_id,
                                         sweep=report.sweep_dir.name, storage=report.sweep_dir.parent)))
    return 0
