"""Search-space files: which config keys a sweep varies, how they are searched and scheduled.

A search space is checked completely against the config schema before Ray starts; every
problem is one ``SearchSpaceError`` line that names the file and the key. Layout::

    base: ../experiments/synthetic.yaml   # experiment file, relative to this file
    set: {stage1.iters: 200}              # dotted overrides of the base (optional)
    metric: val/miou                      # selection split (the oracle) or select/<validator>; never report/
    mode: max
    search: {algorithm: optuna, seed: 0, points_to_evaluate: [{stage1.lambda_ci: 0.01}]}
    scheduler: {type: asha, grace_period: 300, reduction_factor: 2, max_t: 900}
    num_samples: 16
    replicates: 3                         # seeds per configuration: base seed + 0, 1, 2 (default 1)
    resources: {cpus: auto, gpus: auto}  # 1 GPU + its node's CPU share per trial where there are GPUs
    max_concurrent: auto                  # auto: as many trials as the cluster holds (search.plan.resources)
    max_failures: 2
    params:
      stage1.lambda_ci: {loguniform: [0.001, 0.1]}
      stage1.bank_size: {choice: [10, 50, 200]}

Parameter kinds: ``grid``/``choice`` (a list of values), ``uniform``/``loguniform``
(``[low, high]``, floats) and ``randint`` (``[low, high]``, both ends included).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simtune import config
from simtune.schema import MODES, Config
from simtune.search.racing import Racing
from simtune.search.replicates import config_values, replicate_index, replicate_seed
from simtune.keys import SELECTION_METRIC

TOP_LEVEL_KEYS = ("base", "set", "metric", "mode", "search", "scheduler", "num_samples", "replicates",
                  "resources", "max_concurrent", "max_failures", "params", "racing")
STAGE2_ONLY = ("stage2.", "pseudo_label.")  # keys that matter only when stage 2 runs (mode aa_sim_ssl)


@dataclass(frozen=True)
class Param:
    """One swept config key: ``values`` are the grid/choice list or ``(low, high)``."""

    path: str
    kind: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Search:
    """How trials' parameters are proposed."""

    algorithm: str = "grid"
    seed: int | None = None
    points_to_evaluate: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Scheduler:
    """Trial scheduling over the global ``iteration`` counter (both stages)."""

    type: str = "fifo"
    grace_period: int = 0  # iterations; 0 = one evaluation period of the base config
    reduction_factor: float = 2.0
    max_t: int = 0  # iterations; 0 = stage1.iters + stage2.iters of the base config


@dataclass(frozen=True)
class Resources:
    """What one trial reserves on a Ray node; fractional GPUs share a device."""

    cpus: float | str = "auto"  # a number, or "auto" (search.plan.resources.fit: a GPU trial's share of its node)
    gpus: float | str = "auto"  # a number, or "auto" (search.plan.resources.fit: 1 where the cluster has GPUs)


@dataclass(frozen=True)
class SearchSpace:
    """A validated search-space file; ``changes`` is the base experiment with ``set`` and ``--set`` applied."""

    file: Path
    base: Path
    changes: dict[str, Any]
    params: dict[str, Param]
    metric: str = SELECTION_METRIC
    mode: str = "max"
    search: Search = field(default_factory=Search)
    scheduler: Scheduler = field(default_factory=Scheduler)
    num_samples: int = 1
    resources: Resources = field(default_factory=Resources)
    max_concurrent: int | str = "auto"  # an integer, or "auto" (as many as the cluster holds)
    max_failures: int = 2
    replicates: int = 1  # K: every configuration trains with seeds base + 0 .. K-1 (simtune.search.replicates)
    racing: Racing | None = None  # seeds only for contenders (simtune.search.racing); replaces replicates

    @property
    def base_config(self) -> Config:
        return config.build(self.changes, source=str(self.base))

    def config_for(self, values: Mapping[str, Any]) -> Config:
        """The resolved config of one trial: ``values`` (dotted key -> value) over the base.

        A replicate index k among ``values`` (``replicates.TRIAL_INDEX``) sets ``seed`` to the
        base seed + k.
        """
        changes = self.changes
        for path, value in config_values(values).items():
            changes = config.deep_merge(changes, config.nest(path, plain_value(value)))
        cfg = config.build(changes, source=f"{self.file} trial")
        return dataclasses.replace(cfg, seed=replicate_seed(cfg.seed, replicate_index(values)))

    def trial_configs(self, limit: int = 512) -> list[Config]:
        """Configs to check before a sweep starts: every combination of grid/choice values and
        range ends, or (more than ``limit`` combinations) each value over the base config."""
        options = {key: values_to_check(param) for key, param in self.params.items()}
        combos = math.prod(len(values) for values in options.values())
        if combos <= limit:
            points = [dict(zip(options, values)) for values in itertools.product(*options.values())]
        else:
            points = [{key: value} for key, values in options.items() for value in values]
        return [self.base_config, *(self.config_for(point) for point in points)]

    def configurations(self) -> list[dict[str, Any]]:
        """The fixed set of configurations a race runs (grid or random search), in a stable order.

        Grid: every combination of the grid values. Random: ``num_samples`` draws of the
        ranged and choice keys (``search.seed``), each crossed with every grid combination.
        """
        grid = {k: p.values for k, p in self.params.items() if p.kind == "grid"}
        combos = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
        drawn = [k for k, p in self.params.items() if p.kind != "grid"]
        if not drawn:
            return combos
        rng = random.Random(self.search.seed)
        samples = [{k: draw(self.params[k], rng) for k in drawn} for _ in range(self.num_samples)]
        return [{k: {**sample, **combo}[k] for k in self.params} for sample in samples for combo in combos]

    def total_iters(self) -> int:
        """Iterations of a full trial of the base config, over both stages."""
        return final_iteration(self.base_config)


def final_iteration(cfg: Config) -> int:
    """The global iteration of a run's last evaluation: stage 1, plus stage 2 where it runs."""
    return cfg.stage1.iters + (cfg.stage2.iters if MODES[cfg.mode].self_training else 0)


def values_to_check(param: Param) -> list[Any]:
    """A parameter's values, or its range's two ends."""
    if param.kind in ("grid", "choice"):
        return list(param.values)
    return range_samples(param.kind, param.values)


def range_samples(kind: str, bounds: tuple[Any, ...]) -> list[Any]:
    """Values a range can produce, to type-check: ints for randint, floats otherwise."""
    return list(bounds) if kind == "randint" else [float(v) for v in bounds]


def plain_value(value: Any) -> Any:
    """Numpy scalars from samplers -> Python numbers, which the schema's type checks expect."""
    item = getattr(value, "item", None)
    return item() if callable(item) and not isinstance(value, (list, tuple, dict)) else value


def draw(param: Param, rng: random.Random) -> Any:
    """One value of a choice or ranged parameter (``randint``'s high is included)."""
    if param.kind in ("grid", "choice"):
        return rng.choice(list(param.values))
    low, high = param.values
    if param.kind == "uniform":
        return rng.uniform(low, high)
    if param.kind == "loguniform":
        return math.exp(rng.uniform(math.log(low), math.log(high)))
    return rng.randint(low, high)
