"""Deterministic, resumable batch streams: the sample at iteration ``i`` depends only on
the seed and ``i``, so a resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

from simtune.data.loaders import Loading, loader, moved


class StreamSampler(Sampler[int]):
    """Indices for iterations ``start .. start + count - 1``; one permutation per epoch."""

    def __init__(self, length: int, seed: int, start: int, count: int) -> None:
        self.length, self.seed, self.start, self.count = length, seed, start, count

    def __iter__(self) -> Iterator[int]:
        perm: torch.Tensor | None = None
        current_epoch = -1
        for iteration in range(self.start, self.start + self.count):
            epoch, position = divmod(iteration, self.length)
            if epoch != current_epoch:
                generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
                perm, current_epoch = torch.randperm(self.length, generator=generator), epoch
            assert perm is not None
            yield int(perm[position])

    def __len__(self) -> int:
        return self.count


def stream(dataset: Dataset[Any], *, seed: int, start: int, count: int, loading: Loading,
           device: torch.device) -> Iterator[dict[str, Any]]:
    """Batches of one sample for iterations ``start..start+count-1``, moved to ``device``.

    One loader covers the whole range, so its workers start once per stage (or resume).
    """
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise ValueError("cannot stream an empty dataset")
    sampler = StreamSampler(len(dataset), seed, start, count)  # type: ignore[arg-type]
    return moved(loader(dataset, loading, sampler), loading, device)
