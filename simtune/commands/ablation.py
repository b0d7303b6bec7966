"""``simtune ablation``: the paired ablation of the paper's Table 2, and pooling finished ones."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simtune.errors import ConfigError

if TYPE_CHECKING:
    from simtune.workflows.ablation.record import AblationRecord

DEFAULT_OUT = Path("runs/ablation")
MODES = "source_only, aa, aa_sim, aa_sim_ssl, target_only"
RUN_ONLY = {"overrides": "--set", "seeds": "--seeds", "first_seed": "--first-seed", "modes": "--modes",
            "lambdas": "--lambdas", "jobs": "--jobs"}  # options of a run; --pool trains nothing

DESCRIPTION = """\
The paired ablation (paper Table 2). For each seed s every row runs with seed=s: the same
stage-0 model (trained once per seed, shared through OUT/stage0_cache) and the same data
order, so rows are compared seed by seed. Rows: source only, + AA, + AA + SIM at each
lambda_ci of --lambdas, + AA + SIM + SSL (at the experiment's lambda_ci; stage 2 re-initialises
from stage 0 and trains as long as stage 1), source only and + AA trained in one stage as long
as + SSL's two stages together (the equal-length controls), target only. Prints and writes
(OUT/ablation.md, OUT/ablation.json) each row's mean ± std over seeds and the paired
differences with 95% intervals and verdicts. Rerunning with the same --out reuses every
finished run, so --lambdas can add rows to a finished table.

--pool DIR DIR ... --out NEW combines finished ablation folders over disjoint seeds (e.g.
seeds 0-4 and a confirmation on seeds 5-9) into one table in NEW, trains nothing: the rows
every folder has, each over the seeds of all folders, with the paired intervals over all of
them. The folders must have run the same settings (experiment and --set); seeds, --modes and
--lambdas may differ."""

EPILOG = """\
examples:
  simtune ablation experiments/synthetic.yaml --seeds 5 --out runs/ablation --set select.enabled=false
  simtune ablation experiments/synthetic.yaml --first-seed 5 --seeds 5 --modes aa aa_sim --lambdas 0.1 \\
      --set select.enabled=false --out runs/ablation-confirm
  simtune ablation --pool runs/ablation runs/ablation-confirm --out runs/ablation-pooled"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("ablation", help="the paired Table 2 ablation over seeds; --pool combines finished ones",
                            description=DESCRIPTION, epilog=EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", type=Path, nargs="?", help="experiment YAML every row starts from")
    parser.add_argument("--set", dest="overrides", action="append", default=None, metavar="KEY=VALUE",
                        help="override a config value in every row (repeatable)")
    parser.add_argument("--seeds", type=int, default=None, help="how many seeds: first-seed, first-seed + 1, ... "
                                                                "(default 5)")
    parser.add_argument("--first-seed", type=int, default=None,
                        help="first seed (default 0); e.g. 5 with --seeds 5: fresh seeds to confirm a lambda_ci "
                             "chosen on seeds 0-4")
    parser.add_argument("--modes", nargs="+", default=None, metavar="MODE",
                        help=f"only the rows of these modes (default all: {MODES}); comparisons need both rows")
    parser.add_argument("--lambdas", type=float, nargs="*", default=None, metavar="LAMBDA_CI",
                        help="lambda_ci of the + SIM rows (default the paper's grid 0.1 0.05 0.01 0.005 0.001)")
    parser.add_argument("--jobs", type=int, default=None, help="runs at a time, one process each (default 2)")
    parser.add_argument("--out", type=Path, default=None,
                        help="the ablation folder (default runs/ablation); with --pool, a new folder for the "
                             "pooled tables (required)")
    parser.add_argument("--pool", type=Path, nargs="+", default=None, metavar="DIR",
                        help="combine these finished ablation folders (disjoint seeds) into one table in --out")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from simtune.workflows.ablation.record import AblationDir, text

    record = _pool(args) if args.pool is not None else _run(args)
    folder = AblationDir((args.out or DEFAULT_OUT).resolve())
    print(text(record))
    print(f"wrote {folder.table} and {folder.record}")
    return 0


def _run(args: argparse.Namespace) -> AblationRecord:
    from simtune.workflows.ablation import AblationSettings, run_ablation

    if args.experiment is None:
        raise ConfigError("give an EXPERIMENT yaml to run, or --pool DIR DIR ... --out DIR to combine finished ones")
    given = {name: getattr(args, name) for name in RUN_ONLY if getattr(args, name) is not None}
    options: dict[str, Any] = {name: tuple(v) if isinstance(v, list) else v for name, v in given.items()}
    settings = AblationSettings(experiment=args.experiment, out=args.out or DEFAULT_OUT, **options)
    return run_ablation(settings)


def _pool(args: argparse.Namespace) -> AblationRecord:
    from simtune.workflows.ablation import pool_ablations

    if args.experiment is not None:
        raise ConfigError(f"--pool combines finished ablation folders; give no EXPERIMENT ({args.experiment}) with it")
    given = [flag for name, flag in RUN_ONLY.items() if getattr(args, name) is not None]
    if given:
        raise ConfigError(f"--pool combines finished ablation folders and trains nothing; {given[0]} does not apply")
    if args.out is None:
        raise ConfigError("--pool needs --out DIR, a new folder for the pooled tables")
    return pool_ablations(args.pool, args.out)
