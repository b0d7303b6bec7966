"""Search algorithms and trial schedulers by name: what each accepts, and its Tune object.

Adding a search algorithm is one ``Algorithm`` entry in ``ALGORITHMS``; adding a
scheduler, one ``SchedulerKind`` in ``SCHEDULERS``. ``space`` validates search-space files
against these entries (no Ray import); ``runner`` calls ``build``, which imports Ray.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

PARAM_KINDS = ("grid", "choice", "uniform", "loguniform", "randint")


@dataclass(frozen=True)
class Algorithm:
    """A way of proposing trials' parameters."""

    kinds: tuple[str, ...]  # parameter kinds it can sample
    refusal: str  # the error for another kind, formatted with {kind}
    starting_points: bool  # accepts search.points_to_evaluate
    default_num_samples: int
    searcher: bool  # a Tune Searcher, limited by Tune's max_concurrent_trials (else it limits itself)
    # (seed, points, max_concurrent, replicates); replicates as in ``simtune.sweep.replicates``
    build: Callable[[int | None, list[dict[str, Any]] | None, int | None, int], Any]


def _variant_generator(seed: int | None, points: list[dict[str, Any]] | None, max_concurrent: int | None,
                       replicates: int) -> Any:
    from ray.tune.search import BasicVariantGenerator

    # With replicates, random values are drawn once per sample and held over the replicate grid.
    return BasicVariantGenerator(points_to_evaluate=points, random_state=seed, max_concurrent=max_concurrent or 0,
                                 constant_grid_search=replicates > 1)


def _optuna_tpe(seed: int | None, points: list[dict[str, Any]] | None, max_concurrent: int | None,
                replicates: int) -> Any:
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    from simtune.sweep.replicates import repeated

    return repeated(OptunaSearch(points_to_evaluate=points, sampler=optuna.samplers.TPESampler(seed=seed)),
                    replicates)


ALGORITHMS: dict[str, Algorithm] = {
    "grid": Algorithm(("grid",), "search.algorithm grid needs every parameter as {{grid: [...]}}, got '{kind}'; "
                      "use algorithm random or optuna", starting_points=False, default_num_samples=1,
                      searcher=False, build=_variant_generator),
    "random": Algorithm(PARAM_KINDS, "", starting_points=True, default_num_samples=10, searcher=False,
                        build=_variant_generator),
    "optuna": Algorithm(("choice", "uniform", "loguniform", "randint"),
                        "'{kind}' cannot be used with search.algorithm optuna; use 'choice'",
                        starting_points=True, default_num_samples=10, searcher=True, build=_optuna_tpe),
}


@dataclass(frozen=True)
class SchedulerKind:
    """A way of running (and possibly stopping) trials."""

    stops_early: bool  # may end trials before max_t (then max_t must be known when iterations are swept)
    build: Callable[[int, int, float, int], Any]  # (max_t, grace_period, reduction_factor, replicates)


def _fifo(max_t: int, grace_period: int, reduction_factor: float, replicates: int) -> Any:
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()


def _asha(max_t: int, grace_period: int, reduction_factor: float, replicates: int) -> Any:
    from simtune.sweep.replicates import paired_asha

    return paired_asha(replicates, time_attr="iteration", max_t=max_t, grace_period=grace_period,
                       reduction_factor=reduction_factor)


SCHEDULERS: dict[str, SchedulerKind] = {
    "fifo": SchedulerKind(stops_early=False, build=_fifo),
    "asha": SchedulerKind(stops_early=True, build=_asha),
}


def with_starting_points() -> list[str]:
    """Names of the algorithms that accept ``search.points_to_evaluate``."""
    return [name for name, algorithm in ALGORITHMS.items() if algorithm.starting_points]
