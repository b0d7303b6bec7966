"""Reading and validating a search-space file into a ``SearchSpace`` (layout: ``search.space``).

Every problem is one ``SearchSpaceError`` line that names the file and the key, raised before
Ray starts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from simtune import config
from simtune.errors import ConfigError, SearchSpaceError
from simtune.keys import SELECTION_METRIC, suggest
from simtune.search.algorithms import ALGORITHMS, PARAM_KINDS, SCHEDULERS, with_starting_points
from simtune.labels import CLASS_NAMES
from simtune.schema import DIRECTIONS, MODES
from simtune.selection import PREFIX as SELECT_PREFIX
from simtune.selection import SELECT_METRICS
from simtune.search.racing import Racing
from simtune.search.plan.resources import AUTO
from simtune.search.space import (STAGE2_ONLY, TOP_LEVEL_KEYS, Param, Resources, Scheduler, Search, SearchSpace,
                                  range_samples)


# ----------------------------------------------------------------------------- loading


def load_space(path: Path, overrides: Sequence[str] = ()) -> SearchSpace:
    """Read and validate a search-space file; ``overrides`` are ``--set`` texts for the base experiment.

    Raises:
        SearchSpaceError: any problem, as one line naming the file and the key.
    """
    try:
        data = config.read_yaml(path)
    except ConfigError as exc:
        raise SearchSpaceError(str(exc)) from None
    _check_keys(path, "", data, TOP_LEVEL_KEYS)
    if "params" not in data or not isinstance(data["params"], dict) or not data["params"]:
        raise SearchSpaceError(f"{path}: 'params' must be a non-empty mapping of dotted config keys")
    base, changes = _base_changes(path, data, overrides)
    search_raw = _mapping(path, "search", data.get("search"))
    search = _search(path, search_raw)
    params = {key: _param(path, key, spec, search.algorithm) for key, spec in data["params"].items()}
    space = SearchSpace(
        file=path, base=base, changes=changes, params=params,
        metric=_metric(path, data.get("metric", SELECTION_METRIC)),
        mode=_one_of(path, "mode", data.get("mode", "max"), DIRECTIONS),
        search=dataclasses.replace(search, points_to_evaluate=_points(path, search_raw, params)),
        num_samples=_int(path, "num_samples",
                         data.get("num_samples", ALGORITHMS[search.algorithm].default_num_samples), 1),
        resources=_resources(path, data.get("resources", {})),
        max_concurrent=_max_concurrent(path, "max_concurrent", data.get("max_concurrent", AUTO)),
        max_failures=_int(path, "max_failures", data.get("max_failures", 2), -1),
        replicates=_replicates(path, "replicates", data.get("replicates", 1), params),
        racing=_racing(path, data),
    )
    _check_overrides_do_not_touch_params(path, overrides, params)
    _check_params_take_effect(space)
    space = _validators_on(space)
    _check_select_metric(space)
    return dataclasses.replace(space, scheduler=_scheduler(space, data.get("scheduler")))


def _base_changes(path: Path, data: dict[str, Any], overrides: Sequence[str]) -> tuple[Path, dict[str, Any]]:
    """The base experiment's changes with the file's ``set`` and then ``--set`` laid over them."""
    name = data.get("base")
    if not isinstance(name, str) or not name:
        raise SearchSpaceError(f"{path}: 'base' must name an experiment file (relative to {path.name})")
    base = (path.parent / name).resolve()
    settings = data.get("set", {}) or {}
    if not isinstance(settings, dict):
        raise SearchSpaceError(f"{path}: 'set' must be a mapping of dotted config keys, got {settings!r}")
    try:
        changes = config.experiment_changes(base)
        for key, value in settings.items():
            config.check_value(str(key), value, source=f"{path}: set")
            changes = config.deep_merge(changes, config.nest(str(key), _absolute(str(key), value, path.parent)))
        for text in overrides:
            key, _, _ = text.partition("=")
            override = config.parse_override(text)
            value = _absolute(key, _leaf(override, key), Path.cwd())
            changes = config.deep_merge(changes, config.nest(key, value))
        config.build(changes, source=str(base))
    except ConfigError as exc:
        raise SearchSpaceError(str(exc)) from None
    return base, changes


def _param(path: Path, key: Any, spec: Any, algorithm: str) -> Param:
    where = f"{path}: params.{key}"
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in PARAM_KINDS:
        raise SearchSpaceError(f"{where}: expected one of {{{' | '.join(k + ': ...' for k in PARAM_KINDS)}}}, "
                               f"got {spec!r}")
    kind, raw = next(iter(spec.items()))
    if kind not in ALGORITHMS[algorithm].kinds:
        raise SearchSpaceError(f"{where}: " + ALGORITHMS[algorithm].refusal.format(kind=kind))
    if isinstance(raw, list) and config.leaf_types().get(str(key)) is float:
        raw = [config.as_number(v) for v in raw]  # YAML 1.1 reads 1e-3 as a string
    values = _list_values(where, kind, raw) if kind in ("grid", "choice") else _range_values(where, kind, raw)
    samples = values if kind in ("grid", "choice") else range_samples(kind, values)
    try:
        for value in samples:
            config.check_value(str(key), value, source=f"{path}: params")
    except ConfigError as exc:
        raise SearchSpaceError(str(exc)) from None
    return Param(str(key), kind, values)


def _list_values(where: str, kind: str, raw: Any) -> tuple[Any, ...]:
    if not isinstance(raw, list) or not raw:
        raise SearchSpaceError(f"{where}: '{kind}' needs a non-empty list of values, got {raw!r}")
    return tuple(raw)


def _range_values(where: str, kind: str, raw: Any) -> tuple[Any, ...]:
    if not isinstance(raw, list) or len(raw) != 2 or not all(_is_number(v) for v in raw):
        raise SearchSpaceError(f"{where}: '{kind}' needs [low, high] numbers, got {raw!r}")
    low, high = raw
    if kind == "randint" and not all(isinstance(v, int) for v in raw):
        raise SearchSpaceError(f"{where}: 'randint' needs integer bounds, got low={low}, high={high}")
    if low > high:
        raise SearchSpaceError(f"{where}: low <= high must hold, but got low={low}, high={high}")
    if kind == "loguniform" and low <= 0:
        raise SearchSpaceError(f"{where}: 'loguniform' needs low > 0, but got low={low}")
    return (low, high)


def _search(path: Path, raw: dict[str, Any]) -> Search:
    _check_keys(path, "search.", raw, ("algorithm", "seed", "points_to_evaluate"))
    algorithm = _one_of(path, "search.algorithm", raw.get("algorithm", "grid"), tuple(ALGORITHMS))
    return Search(algorithm=algorithm, seed=_optional_int(path, "search.seed", raw.get("seed"), 0))


def _points(path: Path, raw: dict[str, Any], params: dict[str, Param]) -> tuple[dict[str, Any], ...]:
    """Starting points: each a mapping over (some of) the swept keys, type-checked."""
    points = raw.get("points_to_evaluate") or []
    if points and raw.get("algorithm", "grid") not in with_starting_points():
        raise SearchSpaceError(f"{path}: 'search.points_to_evaluate' needs algorithm "
                               f"{' or '.join(with_starting_points())}")
    if not isinstance(points, list) or not all(isinstance(p, dict) for p in points):
        raise SearchSpaceError(f"{path}: 'search.points_to_evaluate' must be a list of mappings, got {points!r}")
    for point in points:
        for key, value in point.items():
            if key not in params:
                raise SearchSpaceError(f"{path}: search.points_to_evaluate: '{key}' is not a swept parameter"
                                       f"{suggest(str(key), list(params))}")
            try:
                config.check_value(key, value, source=f"{path}: search.points_to_evaluate")
            except ConfigError as exc:
                raise SearchSpaceError(str(exc)) from None
    return tuple(points)


def _scheduler(space: SearchSpace, raw: Any) -> Scheduler:
    path = space.file
    raw = _mapping(path, "scheduler", raw)
    _check_keys(path, "scheduler.", raw, ("type", "grace_period", "reduction_factor", "max_t"))
    kind = _one_of(path, "scheduler.type", raw.get("type", "fifo"), tuple(SCHEDULERS))
    iters_swept = any(p in space.params for p in ("stage1.iters", "stage2.iters"))
    if SCHEDULERS[kind].stops_early and iters_swept and "max_t" not in raw:
        raise SearchSpaceError(f"{path}: 'scheduler.max_t' must be given when stage iterations are swept")
    max_t = _int(path, "scheduler.max_t", raw.get("max_t", space.total_iters()), 1)
    grace = _int(path, "scheduler.grace_period", raw.get("grace_period", space.base_config.eval.every), 1)
    if grace > max_t:
        raise SearchSpaceError(f"{path}: scheduler: grace_period <= max_t must hold, but got "
                               f"grace_period={grace}, max_t={max_t}")
    factor = raw.get("reduction_factor", 2)
    if not _is_number(factor) or factor <= 1:
        raise SearchSpaceError(f"{path}: 'scheduler.reduction_factor' must be a number > 1, got {factor!r}")
    return Scheduler(type=kind, grace_period=grace, reduction_factor=float(factor), max_t=max_t)


def _resources(path: Path, raw: Any) -> Resources:
    raw = _mapping(path, "resources", raw)
    _check_keys(path, "resources.", raw, ("cpus", "gpus"))
    cpus, gpus = raw.get("cpus", AUTO), raw.get("gpus", AUTO)
    if cpus != AUTO and (not _is_number(cpus) or cpus <= 0):
        raise SearchSpaceError(f"{path}: 'resources.cpus' must be a number > 0 or 'auto', got {cpus!r}")
    if gpus != AUTO and (not _is_number(gpus) or gpus < 0):
        raise SearchSpaceError(f"{path}: 'resources.gpus' must be a number >= 0 or 'auto', got {gpus!r}")
    return Resources(cpus=cpus if cpus == AUTO else float(cpus), gpus=gpus if gpus == AUTO else float(gpus))


def _max_concurrent(path: Path, key: str, value: Any) -> int | str:
    """An integer >= 1, or ``auto``: as many trials as the cluster holds (``search.plan.resources``)."""
    return value if value == AUTO else _int(path, key, value, 1)


def _replicates(path: Path, key: str, value: Any, params: Mapping[str, Param]) -> int:
    """K >= 1; the seed is then the replicate's, so it cannot be swept as well."""
    k = _int(path, key, value, 1)
    if k > 1 and "seed" in params:
        raise SearchSpaceError(f"{path}: params.seed: cannot be swept with {key} {k} (replicate k trains with "
                               f"seed = base seed + k); set the base seed with set: or --set seed=N")
    return k


def _racing(path: Path, data: dict[str, Any]) -> Racing | None:
    """The ``racing:`` block, checked against what a race can run.

    Raises:
        SearchSpaceError: unknown keys, bad bounds, or a setting racing cannot be combined with.
    """
    if data.get("racing") is None:
        return None
    raw = _mapping(path, "racing", data["racing"])
    if "min_replicates" in raw:
        raise SearchSpaceError(f"{path}: racing.min_replicates is now racing.first_test (seeds before the first "
                               f"elimination test); rename the key")
    _check_keys(path, "racing.", raw, ("first_test", "max_replicates", "confidence", "min_difference", "batch"))
    low = _int(path, "racing.first_test", raw.get("first_test", Racing.first_test), 2)
    high = _int(path, "racing.max_replicates", raw.get("max_replicates", Racing.max_replicates), 2)
    if high < low:
        raise SearchSpaceError(f"{path}: racing.max_replicates ({high}) must be >= racing.first_test ({low}"
                               f"{'' if 'first_test' in raw else ', its default'}): a race tests first after "
                               f"first_test seeds")
    confidence = raw.get("confidence", 0.95)
    if not _is_number(confidence) or not 0.5 <= float(confidence) < 1.0:
        raise SearchSpaceError(f"{path}: racing.confidence must be a number in [0.5, 1), got {confidence!r}")
    margin = raw.get("min_difference", 0.0)
    if not _is_number(margin) or margin < 0:
        raise SearchSpaceError(f"{path}: racing.min_difference must be a number >= 0 (metric units), got {margin!r}")
    if data.get("replicates", 1) != 1:
        raise SearchSpaceError(f"{path}: 'racing' decides how many seeds each configuration gets; remove "
                               f"'replicates' (racing.first_test is the least any configuration gets)")
    algorithm = (data.get("search") or {}).get("algorithm", "grid")
    if "batch" in raw and algorithm != "optuna":
        raise SearchSpaceError(f"{path}: racing.batch is for search.algorithm optuna (grid and random race all "
                               f"their configurations at once), got '{algorithm}'")
    batch = _int(path, "racing.batch", raw.get("batch", Racing.batch), 2)
    if (data.get("scheduler") or {}).get("type", "fifo") != "fifo":
        raise SearchSpaceError(f"{path}: racing judges whole configurations on finished seeds; use scheduler "
                               f"type fifo, not '{data['scheduler']['type']}'")
    return Racing(low, high, float(confidence), float(margin), batch)


def _metric(path: Path, metric: Any) -> str:
    """Selection happens on the ``val/`` (selection) split, the oracle, or by a label-free
    ``select/<name>`` validator; ``report/`` stays untouched by tuning."""
    valid = [SELECTION_METRIC, *(f"val/iou/{name}" for name in CLASS_NAMES), *SELECT_METRICS]
    if metric not in valid:
        hint = " (report/ is the held-out report split; select on val/)" if str(metric).startswith("report/") \
            else suggest(str(metric), valid, list_all=str(metric).startswith(SELECT_PREFIX))
        raise SearchSpaceError(f"{path}: 'metric' must be val/miou, val/iou/<class> or select/<validator>, "
                               f"got {metric!r}{hint}")
    return str(metric)


def _validators_on(space: SearchSpace) -> SearchSpace:
    """A ``select/*`` metric needs the validators (off by default): switch them on unless the
    experiment, the space's ``set`` or ``--set`` says ``select.enabled`` explicitly; DEV (its
    source forward passes and domain classifier) only when the metric is ``select/dev`` or
    ``select.source_images`` is set explicitly."""
    asked = space.changes.get("select") or {}
    if not space.metric.startswith(SELECT_PREFIX) or "enabled" in asked:
        return space
    needed: dict[str, Any] = {"enabled": True}
    if space.metric != SELECT_PREFIX + "dev" and "source_images" not in asked:
        needed["source_images"] = 0
    return dataclasses.replace(space, changes=config.deep_merge(space.changes, {"select": needed}))


def _check_select_metric(space: SearchSpace) -> None:
    """A ``select/*`` metric is higher = better and needs the validators switched on."""
    if not space.metric.startswith(SELECT_PREFIX):
        return
    if space.mode != "max":
        raise SearchSpaceError(f"{space.file}: 'mode' must be max for {space.metric} (every select/* metric is "
                               f"higher = better), got {space.mode!r}")
    settings = space.base_config.select
    if not settings.enabled:
        raise SearchSpaceError(f"{space.file}: 'metric' {space.metric} needs select.enabled: true in the base "
                               "experiment")
    if space.metric == SELECT_PREFIX + "dev" and settings.source_images < 2:
        raise SearchSpaceError(f"{space.file}: 'metric' select/dev needs select.source_images >= 2, "
                               f"got {settings.source_images}")


def _check_overrides_do_not_touch_params(path: Path, overrides: Sequence[str], params: dict[str, Param]) -> None:
    for text in overrides:
        key = text.partition("=")[0]
        if key in params:
            raise SearchSpaceError(f"{path}: --set {key} conflicts with the swept parameter '{key}'")


def _check_params_take_effect(space: SearchSpace) -> None:
    """A stage-2 key swept in a mode without stage 2 would make identical trials."""
    if "mode" in space.params or MODES[space.base_config.mode].self_training:
        return
    for key in space.params:
        if key.startswith(STAGE2_ONLY):
            raise SearchSpaceError(f"{space.file}: params.{key}: has no effect in mode "
                                   f"{space.base_config.mode} (stage 2 runs only in mode aa_sim_ssl)")


# ----------------------------------------------------------------------------- small checks


def _check_keys(path: Path, prefix: str, data: dict[str, Any], valid: Sequence[str]) -> None:
    for key in data:
        if key not in valid:
            raise SearchSpaceError(f"{path}: unknown key '{prefix}{key}'{suggest(str(key), list(valid), prefix)}")


def _mapping(path: Path, key: str, raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SearchSpaceError(f"{path}: '{key}' must be a mapping, got {raw!r}")
    return raw


def _one_of(path: Path, key: str, value: Any, choices: Sequence[str]) -> str:
    if value not in choices:
        raise SearchSpaceError(f"{path}: '{key}' must be one of {list(choices)}, got {value!r}")
    return str(value)


def _int(path: Path, key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SearchSpaceError(f"{path}: '{key}' must be an integer >= {minimum}, got {value!r}")
    return value


def _optional_int(path: Path, key: str, value: Any, minimum: int) -> int | None:
    return None if value is None else _int(path, key, value, minimum)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _absolute(key: str, value: Any, folder: Path) -> Any:
    """A relative dataset root or weights path, made absolute: trials run in their own directory."""
    if key in config.PATH_KEYS and isinstance(value, str) and value:
        return str((folder / value).resolve())
    return value


def _leaf(nested: dict[str, Any], path: str) -> Any:
    node: Any = nested
    for part in path.split("."):
        node = node[part]
    return node


def override_settings(space: SearchSpace, *, num_samples: int | None = None, cpus: float | str | None = None,
                      gpus: float | str | None = None, max_concurrent: int | str | None = None,
                      search_seed: int | None = None, replicates: int | None = None) -> SearchSpace:
    """The space with command-line settings replacing the file's (None keeps the file's value)."""
    where = Path("command line")
    if replicates is not None and space.racing is not None:
        raise SearchSpaceError(f"{space.file}: --replicates cannot be used with 'racing' (the race decides the "
                               f"seeds); change racing.first_test / max_replicates in the space file")
    if search_seed is not None:
        space = dataclasses.replace(space, search=dataclasses.replace(
            space.search, seed=_int(where, "--search-seed", search_seed, 0)))
    resources = Resources(
        cpus=space.resources.cpus if cpus is None else _resources(where, {"cpus": cpus}).cpus,
        gpus=space.resources.gpus if gpus is None else _resources(where, {"gpus": gpus}).gpus,
    )
    return dataclasses.replace(
        space, resources=resources,
        num_samples=space.num_samples if num_samples is None else _int(where, "--num-samples", num_samples, 1),
        max_concurrent=space.max_concurrent if max_concurrent is None
        else _max_concurrent(where, "--max-concurrent", max_concurrent),
        replicates=space.replicates if replicates is None
        else _replicates(where, "--replicates", replicates, space.params),
    )
