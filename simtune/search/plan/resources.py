"""What a trial reserves, fitted to the cluster it runs on (no Ray here: nodes come in as numbers).

``resources.gpus: auto`` (the default) gives each trial one GPU when the cluster has GPUs and
none otherwise; ``resources.cpus: auto`` (the default) gives GPU trials an even share of their
node's CPUs (8 GPUs and 64 CPUs: 8 each, which feed the trial's loader workers) and CPU trials
one; ``max_concurrent: auto`` runs as many trials at once as the cluster's nodes hold with
those reservations. ``fit`` turns both into numbers once the cluster is known and
refuses, with one line, a space whose trials could not run as asked:

- ``runtime.device: cuda`` for trials given no GPU;
- more GPUs per trial than any node has (Tune would wait forever);
- the ResNet-101 backbone on CPU-only trials, unless the space set ``resources.gpus: 0`` itself.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from simtune.errors import ConfigError
from simtune.schema import Config

AUTO = "auto"
_EPS = 1e-9  # fractional GPUs: 4 / 0.1 must give 40, not 39


@dataclass(frozen=True)
class Node:
    """One alive node's total CPUs and GPUs, as Ray declares them."""

    cpus: float
    gpus: float


@dataclass(frozen=True)
class Fitted:
    """Numbers for Tune: per-trial reservations and the concurrency limit."""

    cpus: float
    gpus: float
    max_concurrent: int
    slots: int  # trials the cluster holds at once with these reservations

    def describe(self, nodes: list[Node]) -> str:
        """``1 CPU + 1 GPU per trial, up to 4 at once (1 node: 8 CPUs, 4 GPUs)``."""
        cpus = sum(n.cpus for n in nodes)
        gpus = sum(n.gpus for n in nodes)
        return (f"{_amount(self.cpus, 'CPU')} + {_amount(self.gpus, 'GPU')} per trial, up to "
                f"{min(self.max_concurrent, self.slots)} at once ({len(nodes)} node{'s' if len(nodes) != 1 else ''}: "
                f"{_amount(cpus, 'CPU')}, {_amount(gpus, 'GPU')})")


def fit(cpus: float | str, gpus: float | str, max_concurrent: int | str, nodes: list[Node],
        configs: Iterable[Config]) -> Fitted:
    """Resolve ``auto`` against ``nodes`` and check that the trials of ``configs`` can run.

    Raises:
        ConfigError: one line naming the setting, what the cluster has and what to set.
    """
    if not nodes:
        raise ConfigError("the Ray cluster has no alive node")
    most_gpus = max(n.gpus for n in nodes)
    per_trial = (1.0 if most_gpus >= 1 else 0.0) if gpus == AUTO else float(gpus)
    if per_trial > most_gpus + _EPS:
        raise ConfigError(f"resources.gpus: {per_trial:g} per trial, but the largest node of the Ray cluster has "
                          f"{most_gpus:g} GPU(s); ask for at most {most_gpus:g} (fractions share a GPU)")
    cpus = _cpu_share(nodes, per_trial) if cpus == AUTO else float(cpus)
    if cpus > max(n.cpus for n in nodes) + _EPS:
        raise ConfigError(f"resources.cpus: {cpus:g} per trial, but the largest node of the Ray cluster has "
                          f"{max(n.cpus for n in nodes):g} CPU(s)")
    for cfg in configs:
        _check_device(cfg, per_trial, auto=gpus == AUTO)
    slots = sum(_slots(node, cpus, per_trial) for node in nodes)
    limit = max(1, slots) if isinstance(max_concurrent, str) else max_concurrent
    return Fitted(cpus=cpus, gpus=per_trial, max_concurrent=limit, slots=slots)


def _check_device(cfg: Config, gpus: float, *, auto: bool) -> None:
    if gpus > 0:
        return
    if cfg.runtime.device == "cuda":
        raise ConfigError("runtime.device: cuda, but the trials get no GPU (resources.gpus is 0"
                          + (", and the Ray cluster has none" if auto else "") + "); give them GPUs or set "
                          "runtime.device: auto")
    if auto and cfg.model.backbone == "resnet101":
        raise ConfigError("model.backbone: resnet101 on CPU-only trials (the Ray cluster has no GPU): a run that "
                          "takes a GPU-day would take weeks; join a cluster with GPUs (--address), or set "
                          "resources.gpus: 0 in the space to train on CPU anyway")


def _cpu_share(nodes: list[Node], gpus: float) -> float:
    """CPUs per trial for ``cpus: auto``: 1 without GPUs, else the smallest even share of a GPU
    node's CPUs among the trials its GPUs hold (so the GPUs, not the CPUs, bound concurrency)."""
    if gpus <= 0:
        return 1.0
    shares = [math.floor(n.cpus / math.floor(n.gpus / gpus + _EPS)) for n in nodes if n.gpus + _EPS >= gpus]
    return float(max(1, min(shares)))


def _slots(node: Node, cpus: float, gpus: float) -> int:
    """Trials that fit on one node at once."""
    by_cpu = math.floor(node.cpus / cpus + _EPS)
    return by_cpu if gpus <= 0 else min(by_cpu, math.floor(node.gpus / gpus + _EPS))


def _amount(value: float, unit: str) -> str:
    return f"{value:g} {unit}" + ("s" if value != 1 else "")
