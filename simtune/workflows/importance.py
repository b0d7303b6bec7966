"""Parameter importances of a sweep and whether its configurations differ at all, like with like.

Both use the configurations judged at the end of training (``like_with_like``): the ones ASHA
stopped at a rung hold values at another iteration and are named, not mixed in. Importances are
Optuna's over the configurations' seed-adjusted estimates (configurations a race eliminated ran
fewer seeds); the noise test is Friedman's over the configurations that share every seed tested
(``stats.surface_test``), naming those it leaves out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from simtune.errors import SimtuneError
from simtune.results.ranking import ConfigResult
from simtune.stats import NOISE_HINT, SurfaceTest, surface_line, surface_test
from simtune.tracking import naming


def param_importances(configs: Sequence[ConfigResult], params: Sequence[str], metric: str,
                      mode: str) -> dict[str, float]:
    """Optuna's importances (its default evaluator) over a study of the configurations' seed-adjusted
    estimates (``ConfigResult.standing``: the raw mean when every configuration ran the same seeds).

    Raises:
        SimtuneError: fewer than two ranked configurations or no swept parameter.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    distributions = {p: d for p in params if (d := _distribution([c.params[p] for c in configs])) is not None}
    if len(configs) < 2 or not distributions:
        raise SimtuneError(f"needs at least two ranked configurations and one swept parameter "
                           f"(have {len(configs)} configurations, {len(distributions)} parameters)")
    study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
    for c in configs:
        study.add_trial(optuna.trial.create_trial(params={p: c.params[p] for p in distributions},
                                                  distributions=distributions, value=c.standing(metric).value))
    return optuna.importance.get_param_importances(study)


def surface_noise(ranked: Sequence[ConfigResult], metric: str) -> tuple[SurfaceTest | None, str]:
    """Whether the configurations differ at all beyond the seed noise, and a line saying so.

    One test over every configuration, blocked by seed (``simtune.stats.surface_test``: Friedman's
    test, the paired t-test for two): best against worst would be beyond noise far too often on
    identical configurations, because picking the extremes inflates their difference.
    """
    if len(ranked) < 2:
        return None, ""
    if max(c.n for c in ranked) < 2:
        return None, (f"the configuration means span {_span(ranked, metric):.2f}; with one replicate the noise "
                      f"is unknown, so the importances may rank noise ({NOISE_HINT})")
    seeds = sorted({s for c in ranked for s in c.by_seed(metric)})
    labels = {naming.config_label(c.params) or str(i): c for i, c in enumerate(ranked)}
    result = surface_test({label: [c.by_seed(metric).get(s) for s in seeds] for label, c in labels.items()})
    line = surface_line(result)
    if result.left_out:
        line += "; left out (not on every seed tested): " + ", ".join(
            f"{label} ({labels[label].n} seed(s))" for label in result.left_out)
    return result, (line if result.beyond_noise else f"**{line}**, so the importances may rank noise")


def like_with_like(configs: Sequence[ConfigResult]) -> tuple[list[ConfigResult], list[str]]:
    """The configurations judged at the end of training, and a note naming those left out: the ones
    ASHA stopped at a rung hold values at another iteration, which no test or importance mixes in."""
    at_end = [c for c in configs if c.stop is None]
    stopped = [f"{naming.config_label(c.params)} (stopped at iteration {c.stop.iteration:g})"
               for c in configs if c.stop is not None]
    return at_end, stopped


def _span(ranked: Sequence[ConfigResult], metric: str) -> float:
    means = [s.mean for c in ranked if (s := c.spread(metric)) is not None]
    return max(means) - min(means) if means else math.nan


def _distribution(values: list[Any]) -> Any:
    """An Optuna distribution covering the observed values (None for a constant)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if len({json.dumps(v) for v in values}) < 2:
        return None
    if all(isinstance(v, (bool, str)) for v in values):
        return CategoricalDistribution(sorted(set(values), key=str))
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return IntDistribution(min(values), max(values))
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        low, high = float(min(values)), float(max(values))
        return FloatDistribution(low, high, log=low > 0 and high / low >= 100)
    return None
