"""What a sweep will cost, before it starts: trials, shared stages, iterations, GPU-hours.

At a GPU-day per run the price is the first question. ``estimate`` counts, from the space
alone (no Ray, no data):

- configurations and seeds per configuration (racing: from ``first_test`` to
  ``max_replicates``, so trials are a range);
- distinct stage-0 and stage-1 runs after sharing: trials whose stage-0 (stage-1) settings
  and seed are identical train it once (``train.stage_cache``). Exact for a grid; for random
  and Optuna search, whose values are drawn as the sweep runs, stage 1 is counted shared only
  when every swept key is a stage-2 key, else once per trial (an upper bound);
- training iterations: stage 0 + stage 1 per distinct run, stage 2 per trial. Evaluations and
  the pseudo-label pass are not counted; ASHA may stop trials early, so it is an upper bound.

GPU-hours = iterations x the step time. ``PAPER_STEP_MS`` is the paper-size step time measured
on a GPU (docs/benchmarks.md); it is None until one has been measured, and then the user gives
``--ms-per-iter``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from simtune.schema import Config
from simtune.search.replicates import TRIAL_INDEX
from simtune.search.space import STAGE2_ONLY, SearchSpace, final_iteration
from simtune.train.stage_cache import stage0_key, stage1_key

PAPER_STEP_MS: float | None = None  # R101, 1280x720 + 1024x512, AA + SIM, one GPU: not measured yet
PAPER_STEP_SOURCE = "docs/benchmarks.md has no paper-size GPU step time yet"


@dataclass(frozen=True)
class Span:
    """A count that racing makes a range: ``low`` when every race ends at its first test."""

    low: int
    high: int

    def __str__(self) -> str:
        return f"{self.low:,}" if self.low == self.high else f"{self.low:,} to {self.high:,}"


@dataclass(frozen=True)
class Cost:
    """The price of a sweep (``estimate``)."""

    configurations: int
    seeds: Span  # per configuration
    trials: Span
    stage0_runs: Span  # distinct stage-0 warm starts (0 when init.source_pretrain is off)
    stage1_runs: Span  # distinct stage-1 runs after sharing
    iterations: Span  # training iterations, every stage, after sharing
    exact_sharing: bool  # False: stage-1 sharing is an upper bound (values drawn as the sweep runs)

    def line(self, ms_per_iter: float | None = None) -> str:
        """One line: ``cost: 9 configurations x 2 seeds = 18 trials; ...; 1.3 GPU-hours at 35 ms/iteration``."""
        ms, source = (ms_per_iter, "given") if ms_per_iter is not None else (PAPER_STEP_MS, PAPER_STEP_SOURCE)
        if ms is None:
            hours = f"GPU-hours: give --ms-per-iter ({source})"
        else:
            low, high = _hours(self.iterations.low, ms), _hours(self.iterations.high, ms)
            hours = f"{low if low == high else low + ' to ' + high} GPU-hours at {ms:g} ms/iteration ({source})"
        bound = "" if self.exact_sharing else " at most"
        return (f"cost: {_n(self.configurations, 'configuration')} x {self.seeds} seed"
                f"{'' if self.seeds.high == 1 else 's'} = {self.trials} trials; "
                f"stage 0: {self.stage0_runs} run{_s(self.stage0_runs)}, stage 1:{bound} {self.stage1_runs} "
                f"run{_s(self.stage1_runs)} after sharing; "
                f"{self.iterations} training iterations; {hours}")


def estimate(space: SearchSpace, *, share_stage1: bool = True, share_stage0: bool = True) -> Cost:
    """The cost of running ``space`` (see the module docstring)."""
    points = _configurations(space)
    seeds = Span(space.racing.first_test, space.racing.max_replicates) if space.racing \
        else Span(space.replicates, space.replicates)
    exact = stage_keys_known(space)
    spans = [_count(space, points, k, share_stage1, share_stage0, exact) for k in (seeds.low, seeds.high)]
    return Cost(configurations=len(points), seeds=seeds, trials=Span(len(points) * seeds.low, len(points) * seeds.high),
                stage0_runs=Span(spans[0][0], spans[1][0]), stage1_runs=Span(spans[0][1], spans[1][1]),
                iterations=Span(spans[0][2], spans[1][2]), exact_sharing=exact)


def _count(space: SearchSpace, points: list[dict[str, Any]], seeds: int, share1: bool, share0: bool,
           exact: bool) -> tuple[int, int, int]:
    """(distinct stage-0 runs, distinct stage-1 runs, iterations) with ``seeds`` seeds per configuration."""
    trials = [space.config_for({**point, TRIAL_INDEX: k}) for point in points for k in range(seeds)]
    stage0 = {stage0_key(c) if share0 else str(i): c for i, c in enumerate(trials) if c.init.source_pretrain.iters > 0}
    stage1 = {stage1_key(c) if exact and share1 else str(i): c for i, c in enumerate(trials)}
    iterations = (sum(c.init.source_pretrain.iters for c in stage0.values())
                  + sum(c.stage1.iters for c in stage1.values()) + sum(_stage2_iters(c) for c in trials))
    return len(stage0), len(stage1), iterations


def _configurations(space: SearchSpace) -> list[dict[str, Any]]:
    """The configurations the sweep will run: the grid (times its passes without racing), or
    ``num_samples`` draws (the sweep's own draws differ, their number does not)."""
    points = space.configurations()
    return points * space.num_samples if space.search.algorithm == "grid" and space.racing is None else points


def stage_keys_known(space: SearchSpace) -> bool:
    """Whether the stage-1 settings of the sweep's trials are known before it runs: a grid, or a search
    over stage-2 keys only (drawn values then never change a trial's stage 1)."""
    return space.search.algorithm == "grid" or all(key.startswith(STAGE2_ONLY) for key in space.params)


def planned_trials(space: SearchSpace) -> list[Config] | None:
    """The config of every trial a sweep without racing will run, when ``stage_keys_known``; else None."""
    if space.racing is not None or not stage_keys_known(space):
        return None
    return [space.config_for({**point, TRIAL_INDEX: k}) for point in _configurations(space)
            for k in range(space.replicates)]


def _stage2_iters(cfg: Config) -> int:
    return final_iteration(cfg) - cfg.stage1.iters


def _s(span: Span) -> str:
    return "" if span.high == 1 else "s"


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _hours(iterations: int, ms: float) -> str:
    hours = iterations * ms / 3.6e6
    return f"{hours:,.1f}" if hours >= 1 else f"{hours:.2g}"

