"""Per-class ring buffers of source feature vectors (eq. 5's S^b and Algorithm 1's S^k).

All classes of a group share one device tensor ``(G, capacity, C)``; the write counters
live on the host, so knowing how full a bank is never waits on the device.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from simtune.errors import ConfigError
from simtune.sim.regions import host_to_device

# Features -> logits for the optional self-check: ``(M, C, 1, 1) -> (M, K, 1, 1)``, e.g.
# ``Segmenter.classify`` applied to pooled vectors as 1x1 feature maps.
Classifier = Callable[[Tensor], Tensor]


class FeatureBank:
    """Ring buffers of detached feature vectors, one of ``capacity`` slots per class.

    Slot ``j = c mod capacity`` of a class receives its ``c``-th vector (0-based), as in
    eq. 5 (``capacity`` = w) and Algorithm 1 (``capacity`` = z * w).

    Attributes:
        class_ids: the classes of the group, in row order.
        data: ``(G, capacity, C)`` stored vectors (zeros in unfilled slots).
        counts: ``(G,)`` int64 host array, vectors ever pushed per class (c_k).
    """

    def __init__(self, class_ids: Sequence[int], capacity: int, channels: int, *,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        if capacity < 1 or channels < 1:
            raise ConfigError(f"capacity >= 1 and channels >= 1 must hold, but got capacity={capacity}, "
                              f"channels={channels}")
        if len(set(class_ids)) != len(class_ids):
            raise ConfigError(f"class_ids must be distinct, but got {list(class_ids)}")
        self.class_ids: tuple[int, ...] = tuple(int(c) for c in class_ids)
        self.capacity = capacity
        self.channels = channels
        self.data = torch.zeros(len(self.class_ids), capacity, channels, device=device, dtype=dtype)
        self.counts = np.zeros(len(self.class_ids), dtype=np.int64)
        self._row = {c: i for i, c in enumerate(self.class_ids)}

    def row(self, class_id: int) -> int:
        """The row of ``data`` that holds ``class_id``'s buffer."""
        try:
            return self._row[int(class_id)]
        except KeyError:
            raise ValueError(f"class {class_id} has no bank; the bank holds {list(self.class_ids)}") from None

    def filled(self, class_id: int) -> int:
        """How many slots of ``class_id``'s buffer hold a vector (host-side, no sync)."""
        return int(min(self.counts[self.row(class_id)], self.capacity))

    def is_full(self, class_id: int) -> bool:
        """Whether every slot of ``class_id``'s buffer holds a vector."""
        return self.filled(class_id) == self.capacity

    def valid_mask(self) -> np.ndarray:
        """``(G, capacity)`` bool host array: which slots hold a vector."""
        filled = np.minimum(self.counts, self.capacity)
        return np.arange(self.capacity)[None, :] < filled[:, None]

    def destinations(self, class_ids: Sequence[int]) -> np.ndarray:
        """Flat slots ``row * capacity + j`` the next pushes of ``class_ids`` go to; advances counters.

        Returns:
            ``(M,)`` int64 host array.
        """
        out = np.empty(len(class_ids), dtype=np.int64)
        for m, cls in enumerate(class_ids):
            row = self.row(cls)
            out[m] = row * self.capacity + self.counts[row] % self.capacity
            self.counts[row] += 1
        return out

    def push(self, class_ids: Sequence[int], vectors: Tensor) -> None:
        """Append ``vectors[m]`` to the buffer of ``class_ids[m]``, in order, with one device write.

        Args:
            class_ids: ``M`` host class ids.
            vectors: ``(M, C)``; stored detached, in the bank's dtype.
        """
        if vectors.shape != (len(class_ids), self.channels):
            raise ValueError(f"vectors must be ({len(class_ids)}, {self.channels}), but got {tuple(vectors.shape)}")
        if not class_ids:
            return
        slots = self.destinations(class_ids)
        # A class pushed more than `capacity` times at once overwrites its own slots: only the
        # last write may reach the device, as index_copy_ with repeated indices is undefined.
        _, last_reversed = np.unique(slots[::-1], return_index=True)
        keep = np.sort(len(slots) - 1 - last_reversed)
        source = vectors.detach().to(self.data.device, self.data.dtype)
        if keep.shape[0] < len(slots):
            source = source.index_select(0, host_to_device(keep, source.device))
        index = host_to_device(slots[keep], self.data.device)
        self.data.view(-1, self.channels).index_copy_(0, index, source)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: classes, stored vectors and counters."""
        return {"class_ids": list(self.class_ids), "capacity": self.capacity, "data": self.data.detach().clone(),
                "counts": torch.from_numpy(self.counts.copy())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a ``state_dict`` of a bank with the same classes, capacity and channels."""
        if list(state["class_ids"]) != list(self.class_ids) or int(state["capacity"]) != self.capacity:
            raise ValueError(f"bank state is for classes {list(state['class_ids'])} x {state['capacity']} slots, "
                             f"but this bank holds {list(self.class_ids)} x {self.capacity}")
        data = torch.as_tensor(state["data"])
        if data.shape != self.data.shape:
            raise ValueError(f"bank data must be {tuple(self.data.shape)}, but got {tuple(data.shape)}")
        self.data.copy_(data)
        self.counts = torch.as_tensor(state["counts"]).cpu().numpy().astype(np.int64).copy()


def self_check_mask(classify: Classifier, vectors: Tensor, class_ids: Sequence[int]) -> np.ndarray:
    """The authors' bank filter: which pooled vectors the classifier assigns to their own class.

    Costs one host sync (the verdicts decide the host-side counters), so it is off by default.

    Args:
        classify: ``(M, C, 1, 1) -> (M, K, 1, 1)`` logits.
        vectors: ``(M, C)`` pooled features.
        class_ids: their ``M`` classes.
    Returns:
        ``(M,)`` bool host array.
    """
    if not class_ids:
        return np.zeros(0, dtype=bool)
    with torch.no_grad():
        logits = classify(vectors.detach()[:, :, None, None]).reshape(len(class_ids), -1)
        predicted = logits.argmax(dim=1).cpu().numpy()
    return np.asarray(predicted == np.asarray(class_ids), dtype=bool)
