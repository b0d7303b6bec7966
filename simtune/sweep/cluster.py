"""Joining or starting Ray, fitting trials to its nodes, checking that every node sees the sweep storage."""

from __future__ import annotations

import dataclasses
import logging
import os
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

from simtune.errors import ConfigError
from simtune.schema import Config
from simtune.search.plan.resources import Fitted, Node, fit
from simtune.search.space import Resources, SearchSpace


def init_ray(address: str | None) -> None:
    """Connect to ``address`` (or RAY_ADDRESS), else start a local Ray."""
    import ray

    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        ray.init(include_dashboard=False, logging_level=logging.WARNING)


def check_shared_storage(storage: Path, *, explicit: bool) -> None:
    """On a multi-node cluster, every node must see the sweep storage (run dirs, stage-1 cache).

    A marker file is written here and a zero-CPU task on every alive node looks for it.
    Raises:
        ConfigError: more than one node and ``--storage`` not given, or a node cannot see it.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [node for node in ray.nodes() if node.get("Alive")]
    if len(nodes) <= 1:
        return
    if not explicit:
        raise ConfigError(f"the Ray cluster has {len(nodes)} nodes: give --storage DIR on a filesystem that "
                          f"every node mounts at the same path")
    storage.mkdir(parents=True, exist_ok=True)
    marker = storage / f".storage-check-{uuid.uuid4().hex}"
    marker.write_text(marker.name)
    try:
        probe = ray.remote(num_cpus=0)(sees_marker)
        refs = [probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False))
                .remote(str(marker)) for node in nodes]
        seen = ray.get(refs, timeout=120)
    finally:
        marker.unlink(missing_ok=True)
    blind = [node["NodeManagerAddress"] for node, ok in zip(nodes, seen) if not ok]
    if blind:
        raise ConfigError(f"--storage {storage}: not visible from node(s) {', '.join(blind)}; "
                          f"a multi-node sweep needs a filesystem every node shares")


def sees_marker(path: str) -> bool:
    marker = Path(path)
    return marker.is_file() and marker.read_text() == marker.name


def cluster_nodes() -> list[Node]:
    """CPUs and GPUs of every alive node, as Ray declares them (``ray start --num-gpus`` included)."""
    import ray

    return [Node(cpus=float(n["Resources"].get("CPU", 0)), gpus=float(n["Resources"].get("GPU", 0)))
            for n in ray.nodes() if n.get("Alive")]


def fit_here(cpus: float | str, gpus: float | str, max_concurrent: int | str, configs: Iterable[Config],
             say: Callable[[str], None], what: str) -> Fitted:
    """``search.plan.resources.fit`` on the joined cluster's nodes; says what ``what`` gets.

    Raises:
        ConfigError: runs that cannot run there as asked.
    """
    nodes = cluster_nodes()
    fitted = fit(cpus, gpus, max_concurrent, nodes, configs)
    say(f"{what}: {fitted.describe(nodes)}")
    return fitted


def fit_to_cluster(space: SearchSpace, say: Callable[[str], None]) -> SearchSpace:
    """The space with ``auto`` GPUs and concurrency made numbers for the joined cluster; says them.

    Raises:
        ConfigError: trials that cannot run there as asked (``search.plan.resources.fit``).
    """
    fitted = fit_here(space.resources.cpus, space.resources.gpus, space.max_concurrent, space.trial_configs(), say,
                      "trials")
    return dataclasses.replace(space, resources=Resources(cpus=fitted.cpus, gpus=fitted.gpus),
                               max_concurrent=fitted.max_concurrent)
