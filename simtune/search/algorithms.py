"""Search algorithms and trial schedulers by name: what each accepts.

Adding a search algorithm is one ``Algorithm`` entry in ``ALGORITHMS`` and its Tune object in
``simtune.sweep.tuner.SEARCHERS``; adding a scheduler, one ``SchedulerKind`` in ``SCHEDULERS``
and its builder in ``simtune.sweep.tuner.SCHEDULER_BUILDERS``. ``space`` validates search-space
files against these entries; nothing here imports Ray.
"""

from __future__ import annotations

from dataclasses import dataclass

PARAM_KINDS = ("grid", "choice", "uniform", "loguniform", "randint")


@dataclass(frozen=True)
class Algorithm:
    """A way of proposing trials' parameters."""

    kinds: tuple[str, ...]  # parameter kinds it can sample
    refusal: str  # the error for another kind, formatted with {kind}
    starting_points: bool  # accepts search.points_to_evaluate
    default_num_samples: int
    searcher: bool  # a Tune Searcher, limited by Tune's max_concurrent_trials (else it limits itself)


ALGORITHMS: dict[str, Algorithm] = {
    "grid": Algorithm(("grid",), "search.algorithm grid needs every parameter as {{grid: [...]}}, got '{kind}'; "
                      "use algorithm random or optuna", starting_points=False, default_num_samples=1,
                      searcher=False),
    "random": Algorithm(PARAM_KINDS, "", starting_points=True, default_num_samples=10, searcher=False),
    "optuna": Algorithm(("choice", "uniform", "loguniform", "randint"),
                        "'{kind}' cannot be used with search.algorithm optuna; use 'choice'",
                        starting_points=True, default_num_samples=10, searcher=True),
}


@dataclass(frozen=True)
class SchedulerKind:
    """A way of running (and possibly stopping) trials."""

    stops_early: bool  # may end trials before max_t (then max_t must be known when iterations are swept)


SCHEDULERS: dict[str, SchedulerKind] = {
    "fifo": SchedulerKind(stops_early=False),
    "asha": SchedulerKind(stops_early=True),
}


def with_starting_points() -> list[str]:
    """Names of the algorithms that accept ``search.points_to_evaluate``."""
    return [name for name, algorithm in ALGORITHMS.items() if algorithm.starting_points]
