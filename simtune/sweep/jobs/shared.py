"""Shared stages first: a sweep trains the stage-0 and stage-1 runs its trials share as jobs of
their own, before the trials that reuse them, so no trial holds Ray resources while it waits.

Trials whose stage-0 (stage-1) settings and seed are identical share one result through the
sweep's stage caches (``train.stage_cache``): a thresholds sweep trains stage 1 once per seed.
Left to the trials, the first trains it while the others wait on its lock, each holding its
CPUs and GPU. Here every shared key that is not in the cache yet is trained first, one Tune
trial per key (``run_pipeline(..., until=stage)``, run directory ``<sweep>/shared/<stage>-<key>``),
stage 0 before stage 1 (a stage 1 starts from its stage 0), with the sweep's resources; the
trials then find every shared stage complete and copy it.

It applies where the trials are known before they run: a grid, a search over stage-2 keys only
(``search.plan.cost.planned_trials``), and each racing round. Where values are drawn as the sweep
runs (TPE or random search over stage-1 keys), trials still share through the cache's lock,
which waits at most ``runtime.shared_stage_timeout_h`` and then names the run holding it.
"""

from __future__ import annotations

import hashlib
import sys
from collections import defaultdict
from collections.abc import Callable

from simtune.results.sweepdir import SweepDir
from simtune.schema import Config
from simtune.search.space import SearchSpace
from simtune.sweep.options import SweepOptions
from simtune.sweep.jobs.seeds import run_jobs
from simtune.sweep.trainable import TrialJob
from simtune.sweep.tuner import reservation
from simtune.train.stage_cache import STAGE_KEYS, StageCache


def shared_jobs(trials: list[Config], stage: str, folder: SweepDir, share_stage0: bool) -> dict[str, TrialJob]:
    """One job per ``stage`` key that two or more of ``trials`` share and the sweep's cache lacks.

    A job reads stage 0 through the stage-0 cache (when shared) and publishes its stage there.
    """
    caches = {"stage0": folder.stage0_cache, "stage1": folder.stage1_cache}
    groups: dict[str, list[Config]] = defaultdict(list)
    for cfg in trials:
        if stage != "stage0" or cfg.init.source_pretrain.iters > 0:
            groups[STAGE_KEYS[stage](cfg)].append(cfg)
    cache = StageCache(caches[stage])
    stage0 = caches["stage0"] if share_stage0 else None
    return {f"{stage}-{key}": TrialJob(cfgs[0], folder.shared / f"{stage}-{key}", stage0_cache=stage0,
                                       stage1_cache=caches["stage1"] if stage == "stage1" else None, until=stage)
            for key, cfgs in groups.items() if len(cfgs) >= 2 and cache.entry(key) is None}


def train_shared_stages(trials: list[Config], options: SweepOptions, resources: dict[str, float],
                        max_concurrent: int, max_failures: int, say: Callable[[str], None]) -> None:
    """Train the shared stage-0, then stage-1 runs of ``trials`` that the caches lack (on the joined Ray).

    A job that fails leaves its key out of the cache: the trials that need it train it themselves
    (and fail the same way, each with its own reason).
    """
    folder = SweepDir(options.sweep_dir)
    for stage, enabled in (("stage0", options.share_stage0), ("stage1", options.share_stage1)):
        jobs = shared_jobs(trials, stage, folder, options.share_stage0) if enabled else {}
        if not jobs:
            continue
        say(f"shared stages: training {len(jobs)} {stage} run(s) that several trials share, before the trials")
        digest = hashlib.sha256("\n".join(sorted(jobs)).encode()).hexdigest()[:12]
        run_jobs(jobs, folder.shared / f"tune-{stage}-{digest}", resources, max_concurrent, max_failures, [])


def share_first(space: SearchSpace, options: SweepOptions, trials: list[Config] | None) -> None:
    """``train_shared_stages`` for the trials of a sweep fitted to its cluster (nothing when unknown)."""
    if not trials:
        return
    resources, limit = reservation(space)
    train_shared_stages(trials, options, resources, limit, space.max_failures,
                        say=lambda line: print(f"simtune sweep: {line}", file=sys.stderr, flush=True))
