"""``simtune sweep``: a hyperparameter study of the SIM pipeline on Ray Tune + Optuna."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from simtune.keys import REPORT_METRIC, SELECTION_METRIC
from simtune.commands.common import storage_folder
from simtune.errors import EXIT_INTERRUPTED, EXIT_TRIALS_FAILED, EXIT_USER_ERROR, ConfigError
from simtune.results.summary import ConfigSummary, Summary
from simtune.results.sweepdir import SweepDir
from simtune.stats import Spread, format_estimate, format_spread
from simtune.tables import text_table

TOP = 5  # configurations shown in the final table


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "sweep", help="run a search space as a Ray Tune sweep (CPU or GPU, local or cluster)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit codes:\n"
               f"  0    every trial finished (trials a scheduler stopped early count as finished)\n"
               f"  {EXIT_TRIALS_FAILED}    some trials failed or did not finish; the last line says how many and "
               "the first reason\n"
               f"  {EXIT_USER_ERROR}    bad input (space, config, data, weights, storage, tracking) or another sweep "
               "of this name is running: refused before Ray starts\n"
               f"  {EXIT_INTERRUPTED}  interrupted (Ctrl-C); continue with --resume")
    parser.add_argument("space", type=Path, help="search-space YAML (see docs/sweeps.md)")
    parser.add_argument("--name", help="sweep name (default <space>-<time>; with --resume: the latest <space>-*)")
    parser.add_argument("--resume", action="store_true", help="continue a stopped or killed sweep; finished "
                        "trials are not re-run")
    parser.add_argument("--storage", default=None,
                        help="folder of sweeps (default ./sweeps); on a multi-node cluster: a shared filesystem")
    parser.add_argument("--address", default=None, help="existing Ray cluster, e.g. HEAD:6379 (default: "
                        "RAY_ADDRESS, else a local Ray)")
    parser.add_argument("--num-samples", type=int, help="trials (grid: passes over the grid)")
    parser.add_argument("--search-seed", type=int, help="seed of the search algorithm (replaces search.seed)")
    parser.add_argument("--replicates", type=int, help="seeds per configuration, base seed + 0 .. K-1, the same for "
                        "every configuration (replaces the space's replicates)")
    parser.add_argument("--cpus-per-trial", type=_number_or_auto, help="CPUs one trial reserves, or auto "
                        "(GPU trials: an even share of their node's CPUs; CPU trials: 1)")
    parser.add_argument("--gpus-per-trial", type=_number_or_auto, help="GPUs one trial reserves (fractions share "
                        "a GPU), or auto (1 where the cluster has GPUs, else 0)")
    parser.add_argument("--max-concurrent", type=_int_or_auto, help="most trials running at once, or auto (as many "
                        "as the cluster holds)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a value of the base experiment (repeatable)")
    parser.add_argument("--no-stage1-cache", action="store_true",
                        help="train stage 1 in every trial, even where another trial's stage 1 is identical")
    parser.add_argument("--no-stage0-cache", action="store_true",
                        help="train stage 0 (init.source_pretrain) in every trial instead of once per setting")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow store (default: MLFLOW_TRACKING_URI or sqlite:///<storage>/mlflow.db)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from simtune.rundir import read_json
    from simtune.sweep.runner import SweepOptions, run_sweep
    from simtune.tracking import naming
    from simtune.search.plan.cost import estimate
    from simtune.search.parse import load_space, override_settings

    space = override_settings(load_space(args.space, args.overrides), num_samples=args.num_samples,
                              cpus=args.cpus_per_trial, gpus=args.gpus_per_trial,
                              max_concurrent=args.max_concurrent, search_seed=args.search_seed,
                              replicates=args.replicates)
    storage = storage_folder(args.storage)
    name = args.name or _default_name(args.space, storage, args.resume)
    options = SweepOptions(name=name, storage=storage, storage_explicit=args.storage is not None,
                           resume=args.resume, address=args.address, tracking_uri=args.tracking_uri,
                           share_stage1=not args.no_stage1_cache, share_stage0=not args.no_stage0_cache)
    print(estimate(space, share_stage1=options.share_stage1, share_stage0=options.share_stage0).line(), flush=True)
    summary = run_sweep(space, options, list(args.overrides))
    print(format_summary(summary))
    tracked = read_json(SweepDir(options.sweep_dir).tracking)
    if tracked:
        print("\n".join(naming.ui_lines(tracked["tracking_uri"], tracked["experiment_id"], tracked["parent_run_id"],
                                         sweep=name, storage=options.sweep_dir.parent)))
    # On failure the count and the first reason come last, after the MLflow lines.
    failures = failure_line(summary)
    if failures is None:
        return 0
    print(failures)
    return EXIT_TRIALS_FAILED


def failure_line(summary: Summary) -> str | None:
    """``"2 of 9 trials failed; first: <trial>: <reason>"``, or None when every trial finished."""
    counts, failed = summary.counts, summary.failed
    if not failed and not counts.unfinished:
        return None
    parts = [f"{len(failed)} of {counts.total} trials failed"] if failed else []
    if counts.unfinished:
        parts.append(f"{counts.unfinished} of {counts.total} did not finish")
    first = f"; first: {failed[0].trial_id}: {failed[0].failure_reason}" if failed else ""
    return ", ".join(parts) + first


def _default_name(space: Path, storage: Path, resume: bool) -> str:
    if not resume:
        return f"{space.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    earlier = sorted(p.name for p in storage.glob(f"{space.stem}-*") if SweepDir(p).record.is_file())
    if not earlier:
        raise ConfigError(f"{storage}: no sweep of {space.name} to resume; give --name")
    return earlier[-1]


def format_summary(summary: Summary) -> str:
    """The top configurations (mean ± std over replicates), the verdict, the counts and the best config."""
    counts = summary.counts
    lines = _config_table(summary)
    lines.append(summary.verdict.line)
    if summary.replicates > 1:
        lines.append(summary.reproducibility.line)
    lines.append(f"{counts.total} trials: {counts.finished} finished ({counts.stopped_early} stopped "
                 f"early, marked *), {counts.failed} failed, {counts.retried} recovered after a crash")
    if counts.unfinished:
        lines.append(f"interrupted with {counts.unfinished} trials unfinished; continue with --resume --name "
                     f"{summary.sweep} --storage {Path(summary.sweep_dir).parent}")
    lines += [f"  failed {trial.trial_id}: {trial.failure_reason}" for trial in summary.failed]
    folder = SweepDir(Path(summary.sweep_dir))
    if summary.best is not None:
        lines.append(f"best config: {folder.best_config}")
    lines.append(f"summary:     {folder.summary}")
    return "\n".join(lines)


def _config_table(summary: Summary) -> list[str]:
    """Ranked configurations: ``mean ± std`` over replicates of the selection metric, the oracle
    val/miou when selection is label-free (labelled), report/miou; n and the trials."""
    metric, ranked = summary.metric, summary.ranked
    params = list(ranked[0].params) if ranked else []
    scores = list(dict.fromkeys([metric, SELECTION_METRIC, REPORT_METRIC]))
    racing = SweepDir(Path(summary.sweep_dir)).race.is_file()
    rungs = any(c.stopped_at is not None for c in ranked[:TOP])
    unlike = len({tuple(c.seeds) for c in ranked}) > 1  # raw means over different seeds: show the adjusted one
    rows = [["rank", *params, *(f"{m} (oracle)" if m == SELECTION_METRIC and m != metric else m for m in scores),
             *([f"{metric} seed-adjusted"] if unlike else []), "n", *(["race"] if racing else []),
             *(["stopped at"] if rungs else []), "trials"]]
    for c in ranked[:TOP]:
        cells = [format_spread(_selection_spread(c) if m == metric else c.spreads.get(m)) for m in scores]
        cells += [format_estimate(c.estimate, c.estimate_se)] if unlike else []
        race = [_race_cell(c)] if racing else []
        stopped = [f"{c.stopped_at:g}" if c.stopped_at is not None else ""] if rungs else []
        mark = "" if c.trained_to_end or c.eliminated_after is not None else "*"
        rows.append([str(c.rank) + mark, *(_num(c.params[p]) for p in params), *cells, str(c.n), *race, *stopped,
                     ", ".join(c.trial_ids)])
    lines = [text_table(rows, rule=False), "(mean ± std over each configuration's replicates, n of them)"]
    if unlike:
        lines.append("(configurations ran different seeds: they rank by the seed-adjusted estimate ± its standard "
                     "error, the mean with each seed's effect removed; docs/sweeps.md, \"Seed-adjusted estimates\")")
    if racing:
        spent = sum(len(c.trial_ids) for c in summary.configs)  # failed trials cost too
        full = len(summary.configs) * summary.replicates
        lines.append(f"racing: {spent} of the {full} trials that {summary.replicates} seeds for every "
                     f"configuration would cost ({spent / full:.0%}); eliminated configurations rank after "
                     f"those still racing at the end")
    if len(ranked) > TOP:
        lines.append(f"({len(ranked) - TOP} more configurations in summary.json)")
    return lines


def _race_cell(c: ConfigSummary) -> str:
    if c.eliminated_after is None:
        return "in the final round"
    return f"{c.eliminated_reason} after {c.eliminated_after}"


def _selection_spread(c: ConfigSummary) -> Spread | None:
    """The selection metric's mean and std over the configuration's n counted replicates."""
    return None if c.mean is None else Spread(c.n, c.mean, c.std)


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def _number_or_auto(text: str) -> float | str:
    return text if text == "auto" else float(text)


def _int_or_auto(text: str) -> int | str:
    return text if text == "auto" else int(text)
