"""The paired ablation (paper Table 2): every row of a seed starts from that seed's stage-0
model and sees the same data order, so rows are compared seed by seed.

Per seed s (``seed=s`` in every run): stage 0 (``init.source_pretrain``) is trained once and
shared through ``<out>/stage0_cache``; then source only (continued on the source), + AA,
+ AA + SIM at each lambda_ci of ``lambdas`` (the paper's grid), + AA + SIM + SSL (at the
experiment's lambda_ci, its stage 1 shared with that + SIM run through ``<out>/stage1_cache``),
source only and + AA trained in one stage as long as + SSL's stage 1 and stage 2 together
(the equal-length controls) and target only. Stage 2 re-initialises from stage 0 and trains
as long as stage 1 (``stage2.iters`` and ``stage2.schedule_iters`` are set to stage 1's).
Scores are the last evaluation of the last stage, never the best checkpoint.

Rerunning with the same ``out`` reuses every finished run, so more lambda_ci values can be
added to a finished table. The folder's record and tables (``simtune.workflows.ablation.record``)
are written at the end; ``pool_ablations`` combines finished folders over disjoint seeds.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simtune.keys import REPORT_METRIC, SELECTION_METRIC
from simtune import config, preflight
from simtune.errors import ConfigError
from simtune.labels import CLASS_NAMES, STUFF_IDS, THING_IDS
from simtune import schema
from simtune.schema import Config
from simtune.workflows.ablation.record import (LONG_AA, LONG_SOURCE, SSL, AblationDir, AblationRecord,
                                               first_difference, pool_records, read_record, recorded_config, sim_row,
                                               write_record)

PAPER_LAMBDAS = (0.1, 0.05, 0.01, 0.005, 0.001)  # the paper's lambda_ci grid (Tables 3-4)
MODES: tuple[str, ...] = tuple(schema.MODES)  # every row's mode, in the paper's order
RowSpec = tuple[str, list[str]]  # (mode, extra --set overrides)
Say = Callable[[str], None]


@dataclass(frozen=True)
class AblationSettings:
    """What ``simtune ablation EXPERIMENT`` runs.

    Attributes:
        experiment: experiment YAML every row starts from.
        out: the ablation folder (``runs/``, the stage caches, ``ablation.json``, ``ablation.md``).
        seeds: how many seeds: ``first_seed .. first_seed + seeds - 1``.
        modes: only the rows of these modes (comparisons need both of their rows).
        lambdas: lambda_ci of the + SIM rows, in the paper's units (``sim.l1: channel_mean``).
        overrides: ``--set key=value`` applied to every row.
        jobs: runs at a time, each in its own process (1: in this process).
    """

    experiment: Path
    out: Path
    seeds: int = 5
    first_seed: int = 0
    modes: tuple[str, ...] = MODES
    lambdas: tuple[float, ...] = PAPER_LAMBDAS
    overrides: tuple[str, ...] = ()
    jobs: int = 2

    @property
    def seed_range(self) -> range:
        return range(self.first_seed, self.first_seed + self.seeds)

    def command(self) -> str:
        """The command line that reproduces this ablation (written into its tables)."""
        parts = ["simtune ablation", str(self.experiment), f"--seeds {self.seeds}", f"--out {self.out}",
                 *(f"--set {o}" for o in self.overrides)]
        if self.first_seed:
            parts.append(f"--first-seed {self.first_seed}")
        if self.modes != MODES:
            parts.append("--modes " + " ".join(self.modes))
        if self.lambdas != PAPER_LAMBDAS:
            parts.append("--lambdas " + " ".join(f"{v:g}" for v in self.lambdas))
        return " ".join(parts)


@dataclass(frozen=True)
class Job:
    """One (row, seed) run of the ablation."""

    experiment: Path
    seed: int
    row: str
    mode: str
    out: Path
    overrides: tuple[str, ...]


def check_settings(settings: AblationSettings) -> None:
    """Refuse options that cannot run, naming the bad value.

    Raises:
        ConfigError: one line.
    """
    unknown = [m for m in settings.modes if m not in MODES]
    if unknown:
        raise ConfigError(f"--modes: unknown mode {unknown[0]!r}; expected some of {', '.join(MODES)}")
    if not settings.modes:
        raise ConfigError(f"--modes: give at least one of {', '.join(MODES)}")
    if settings.seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, but got --seeds {settings.seeds}")
    if settings.first_seed < 0:
        raise ConfigError(f"--first-seed must be >= 0, but got --first-seed {settings.first_seed}")
    if settings.jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, but got --jobs {settings.jobs}")
    bad = [v for v in settings.lambdas if not (math.isfinite(v) and v > 0)]
    if bad:
        raise ConfigError(f"--lambdas: every lambda_ci must be finite and > 0, but got {bad[0]:g}")
    if "aa_sim" in settings.modes and not settings.lambdas:
        raise ConfigError("--lambdas: mode aa_sim needs at least one lambda_ci value")
    if settings.out.exists() and not settings.out.is_dir():
        raise ConfigError(f"--out {settings.out}: exists and is not a folder")


def base_config(settings: AblationSettings) -> tuple[Config, list[str]]:
    """The experiment with ``--set`` and stage 2 as long as stage 1; and the overrides that give it."""
    first = config.load(settings.experiment, settings.overrides)
    overrides = [*settings.overrides, f"stage2.iters={first.stage1.iters}",
                 f"stage2.schedule_iters={first.stage1.schedule_iters}"]
    return config.load(settings.experiment, overrides), overrides


def rows(cfg: Config, lambdas: Sequence[float], modes: Sequence[str] = MODES) -> dict[str, RowSpec]:
    """Row name -> (mode, extra overrides), in table order, for the chosen ``modes``.

    The + SSL row's stage 1 is the + SIM run at the experiment's lambda_ci, so that row joins
    the + SIM rows whenever + SSL is run. So do the two equal-length controls: source only
    and + AA trained, in one stage, as many iterations as + SSL's stage 1 and stage 2 together.
    """
    with_ssl = "aa_sim_ssl" in modes
    long = [f"stage1.iters={cfg.stage1.iters + cfg.stage2.iters}",
            f"stage1.schedule_iters={cfg.stage1.schedule_iters + cfg.stage2.schedule_iters}"]
    table: dict[str, RowSpec] = {"source only": ("source_only", []), "+ AA": ("aa", [])}
    for value in sorted(set(lambdas) | ({cfg.stage1.lambda_ci} if with_ssl else set()), reverse=True):
        table[sim_row(value)] = ("aa_sim", [f"stage1.lambda_ci={value}"])
    table[SSL] = ("aa_sim_ssl", [])
    if with_ssl:
        table[LONG_SOURCE] = ("source_only", long)
        table[LONG_AA] = ("aa", long)
    table["target only"] = ("target_only", [])
    return {row: spec for row, spec in table.items() if spec[0] in modes}


def row_configs(settings: AblationSettings, table: dict[str, RowSpec], overrides: list[str]) -> dict[str, Config]:
    """Each row's resolved config at the first seed (the others differ only in ``seed``)."""
    return {row: config.load(settings.experiment, [*overrides, *extra, f"mode={mode}",
                                                   f"seed={settings.first_seed}"])
            for row, (mode, extra) in table.items()}


def run_ablation(settings: AblationSettings, *, say: Say = print) -> AblationRecord:
    """Check everything, run every row for every seed, write and return the folder's record.

    Raises:
        ConfigError / DataError: bad input, before any compute or any file is written.
    """
    check_settings(settings)
    base, overrides = base_config(settings)
    table = rows(base, settings.lambdas, settings.modes)
    out = settings.out.resolve()
    check_out(AblationDir(out), _shared_config(base))
    preflight.check(row_configs(settings, table, overrides).values(), say=say)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    work = [Job(settings.experiment.resolve(), seed, row, mode, out, (*overrides, *extra))
            for row, (mode, extra) in table.items() for seed in settings.seed_range]
    results: dict[str, list[dict[str, float]]] = {row: [] for row in table}
    for job, final in zip(work, _run_jobs(work, settings.jobs), strict=True):
        results[job.row].append(final)  # in seed order: the runners keep the order of ``work``
    record = AblationRecord(results=results, config=_shared_config(base), default_sim=sim_row(base.stage1.lambda_ci),
                            command=settings.command(), wall_seconds=time.perf_counter() - start)
    write_record(AblationDir(out), record)
    return record


def _run_jobs(work: list[Job], jobs: int) -> list[dict[str, float]]:
    """Every job's final metrics, ``jobs`` processes at a time; seeds interleave so stage 0s train
    in parallel."""
    if jobs == 1:
        return [run_one(job) for job in work]
    with multiprocessing.get_context("spawn").Pool(jobs) as pool:
        return pool.map(run_one, work, chunksize=1)


def run_one(job: Job) -> dict[str, float]:
    """One (row, seed) run; resumes a run directory a previous call left unfinished."""
    from simtune.train.pipeline import run_pipeline  # pooling needs no training code

    cfg = config.load(job.experiment, [*job.overrides, f"mode={job.mode}", f"seed={job.seed}"])
    run_dir = AblationDir(job.out).run(job.row, job.seed)
    start = time.perf_counter()
    result = run_pipeline(cfg, run_dir, resume=run_dir.exists(), stage1_cache=AblationDir(job.out).stage1_cache,
                          stage0_cache=AblationDir(job.out).stage0_cache)
    final: dict[str, float] = {"seed": job.seed}
    final |= {k: v for k, v in result.final.items() if k in (REPORT_METRIC, SELECTION_METRIC)}
    final |= {"report/things": group_mean(result.final, THING_IDS), "report/stuff": group_mean(result.final, STUFF_IDS)}
    final["seconds"] = time.perf_counter() - start
    print(f"{job.row:<32} seed {job.seed}: report {final[REPORT_METRIC]:.2f} val {final[SELECTION_METRIC]:.2f} "
          f"({final['seconds']:.0f} s)", flush=True)
    return final


def group_mean(metrics: dict[str, float], class_ids: Sequence[int]) -> float:
    """Mean report IoU over the given classes among those the report split scores."""
    values = [metrics[key] for key in (f"report/iou/{CLASS_NAMES[c]}" for c in class_ids) if key in metrics]
    return sum(values) / len(values)


def _shared_config(cfg: Config) -> dict[str, Any]:
    """The settings every row shares, as flat keys (the seed and the row's mode left out), as
    ``ablation.json`` stores them."""
    return json.loads(json.dumps({k: v for k, v in config.flatten(cfg).items() if k not in ("seed", "mode")}))


def check_out(folder: AblationDir, shared: dict[str, Any]) -> None:
    """Refuse an ``out`` whose finished runs were trained with other settings (they would be reused).

    Raises:
        ConfigError: one line naming the first setting that differs.
    """
    found = recorded_config(folder)
    difference = None if found is None else first_difference(found, shared)
    if difference:
        raise ConfigError(f"--out {folder.root}: holds an ablation run with other settings ({difference}); "
                          f"its finished runs would be reused; choose another --out")


def pool_ablations(folders: Sequence[Path], out: Path) -> AblationRecord:
    """Combine finished ablation folders over disjoint seeds into one record in ``out``.

    Keeps the rows every folder has, each with the seeds of all folders (paired by seed).

    Raises:
        ConfigError: fewer than two folders, a folder without a finished record, seeds shared
            between folders, different settings, no row in common, or ``out`` is a run folder.
    """
    if len(folders) < 2:
        raise ConfigError(f"--pool needs two or more ablation folders, but got {len(folders)}")
    twice = next((f for i, f in enumerate(folders) if f.resolve() in {g.resolve() for g in folders[:i]}), None)
    if twice is not None:
        raise ConfigError(f"--pool: {twice} is given twice; each folder's seeds count once")
    target = AblationDir(out.resolve())
    if target.runs.is_dir() or any(folder.resolve() == target.root for folder in folders):
        raise ConfigError(f"--out {out}: is an ablation folder with its own runs; pool into another folder")
    if target.root.exists() and not target.root.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder")
    records = {folder: read_record(AblationDir(folder.resolve()), label=str(folder)) for folder in folders}
    record = pool_records(records, command=" ".join(["simtune ablation --pool", *map(str, folders), f"--out {out}"]))
    target.root.mkdir(parents=True, exist_ok=True)
    write_record(target, record)
    return record
