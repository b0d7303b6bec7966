"""``simtune validate``: check an experiment or search-space file without running anything.

It runs the same pre-flight as ``train``, ``sweep`` and ``retrain`` (``simtune.preflight``):
whatever they would refuse, ``validate`` refuses first.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from simtune import config, preflight


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("validate", help="check an experiment or search-space YAML, run nothing")
    parser.add_argument("file", type=Path)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--data", action="store_true", help="also print how many images each dataset holds")
    parser.add_argument("--cost", action="store_true", help="search space: also print what the sweep will cost "
                        "(trials, shared stages, iterations, GPU-hours)")
    parser.add_argument("--ms-per-iter", type=float, default=None, help="with --cost: training step time in ms "
                        "for the GPU-hours (default: the paper-size step time in docs/benchmarks.md, if measured)")
    parser.add_argument("--config-only", action="store_true",
                        help="check keys, types and combinations only, not the datasets and weights files")
    parser.set_defaults(func=run)


def is_search_space(path: Path) -> bool:
    """A search space names ``params``; an experiment never does."""
    return "params" in config.read_yaml(path)


def run(args: argparse.Namespace) -> int:
    if is_search_space(args.file):
        from simtune.search.parse import load_space

        space = load_space(args.file, args.overrides)
        configs = space.trial_configs()
        preflight.check(configs, inputs=not args.config_only, write_builtin=False)
        print(f"{args.file}: {len(configs) - 1} trial configs checked (combinations of grid/choice values and "
              f"range ends): runnable")
        seeds = (f"racing: {space.racing.first_test} to {space.racing.max_replicates} seeds" if space.racing
                 else f"{space.replicates} replicate(s)")
        print(f"{args.file}: valid search space ({len(space.params)} parameters, {seeds} per configuration, "
              f"base {space.base})")
        if args.cost:
            from simtune.search.plan.cost import estimate

            print(estimate(space).line(args.ms_per_iter))
        return 0
    cfg = config.load(args.file, args.overrides)
    preflight.check([cfg], inputs=not args.config_only, write_builtin=False)
    if args.data and not args.config_only and not preflight.builtin_pending(cfg):
        from simtune.data.build import datasets_from_config

        sets = datasets_from_config(cfg)
        print(f"data: {len(sets.source)} source, {len(sets.target)} target train, "
              f"{len(sets.val['selection'])} selection + {len(sets.val['report'])} report val images")
    print(f"{args.file}: valid experiment (mode {cfg.mode}, backbone {cfg.model.backbone})")
    return 0
