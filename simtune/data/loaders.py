"""How samples reach the device: worker processes, pinned memory, prefetch.

Every data loader of a run (the training streams, evaluation, the pseudo-label passes) is
built here from one ``Loading``, so a GPU trial decodes images in as many processes as it
has CPUs to spare. Items carry labels as uint8 (a quarter of int64's bytes through the
workers' shared memory and the host-to-device copy); ``to_device`` widens them on the device.
Workers are not persistent: each loader is iterated once (a training stream covers its whole
stage, an evaluation or pseudo-label pass its whole set), so a kept worker would only idle.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from simtune.errors import ConfigError

LABEL_KEYS = ("label", "pseudo")  # integer maps that losses and scores index with: int64 on the device
PREFETCH = 4  # batches each worker keeps ready


@dataclass(frozen=True)
class Loading:
    """Loader settings shared by every loader of a run."""

    workers: int = 0  # worker processes (0 = load in the training process)
    pin_memory: bool = False  # page-locked host batches: asynchronous copies to a CUDA device
    channels_last: bool = False  # images in the networks' channels_last layout (CUDA)


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, which Ray and cgroups narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def worker_count(setting: int | str, cpus: float | None = None) -> int:
    """Worker processes per loader for ``data.num_workers``.

    A training iteration draws from two loaders at once (source and target), each with this many
    workers, so ``auto`` splits the run's CPUs, less the training loop's one, between them:
    ``(cpus - 1) // 2`` (8 CPUs: 3 per loader, 6 in all). Evaluation and pseudo-label passes run
    while the training loaders idle, with the same count.

    Args:
        setting: an integer >= 0, or ``"auto"``.
        cpus: the CPUs the run was given (a Ray trial's); None = ``available_cpus()``.
    Raises:
        ConfigError: a negative count, or neither an integer nor ``auto``.
    """
    if setting == "auto":
        return max(0, (int(cpus if cpus is not None else available_cpus()) - 1) // 2)
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 0:
        raise ConfigError(f"data.num_workers must be an integer >= 0 or 'auto', got {setting!r}")
    return setting


def loading_for(setting: int | str, device: torch.device, *, channels_last: bool = False,
                cpus: float | None = None) -> Loading:
    """The ``Loading`` of a run on ``device``: pinned memory and channels_last on CUDA only."""
    cuda = device.type == "cuda"
    return Loading(workers=worker_count(setting, cpus), pin_memory=cuda, channels_last=cuda and channels_last)


def loader(dataset: Dataset[Any], loading: Loading, sampler: Sampler[int] | None = None) -> DataLoader[Any]:
    """Batches of one item, in ``sampler`` order (default: the dataset's order)."""
    workers = loading.workers
    return DataLoader(dataset, batch_size=1, sampler=sampler, num_workers=workers, pin_memory=loading.pin_memory,
                      persistent_workers=False, prefetch_factor=PREFETCH if workers else None)


def to_device(batch: dict[str, Any], device: torch.device, channels_last: bool = False) -> dict[str, Any]:
    """Tensors of a batch on ``device`` (asynchronous from pinned memory); label maps as int64,
    (B, 3, H, W) images in channels_last when asked."""
    moved = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device, non_blocking=True)
            if key in LABEL_KEYS:
                value = value.long()
            elif key == "image" and channels_last and value.dim() == 4:
                value = value.contiguous(memory_format=torch.channels_last)
        moved[key] = value
    return moved


def batches(dataset: Dataset[Any], loading: Loading, device: torch.device) -> Iterator[dict[str, Any]]:
    """Every item of ``dataset`` in order, as batches of one on ``device``."""
    return moved(loader(dataset, loading), loading, device)


def moved(items: Iterable[dict[str, Any]], loading: Loading, device: torch.device) -> Iterator[dict[str, Any]]:
    """``to_device`` over a loader's batches."""
    for batch in items:
        yield to_device(batch, device, loading.channels_last)
