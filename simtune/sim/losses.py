"""Stuff and instance matching losses (eq. 6, eq. 8), the label maps they use (eq. 4, eq. 11)
and ``SimMatcher``, which runs both for one training step.

The nearest bank entry is found without autograd (a batched L1 ``cdist``); the loss is then
the L1 to that entry, so the gradient equals that of ``min_j ||a - S_j||_1`` but backward
never holds a (regions x slots x channels) buffer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from simtune.errors import ConfigError
from simtune.labels import IGNORE
from simtune.sim.banks import Classifier, FeatureBank, self_check_mask
from simtune.sim.regions import RegionSet, host_to_device, label_regions_batch, pool_classes, pool_regions

Reduction = Literal["sum", "channel_mean"]
REDUCTIONS: tuple[str, ...] = ("sum", "channel_mean")


def _to_device(arrays: Sequence[np.ndarray], device: torch.device) -> list[Tensor]:
    """Move int64 host arrays to ``device`` as one host-to-device copy, split again there."""
    packed = np.concatenate([np.asarray(a, dtype=np.int64).ravel() for a in arrays])
    return list(torch.split(host_to_device(packed, device), [int(np.asarray(a).size) for a in arrays]))


def _eligible(bank: FeatureBank, class_ids: Sequence[int], skip_until_full: bool) -> np.ndarray:
    """``(M,)`` bool: rows whose class bank can be matched (non-empty; full if asked)."""
    need = bank.capacity if skip_until_full else 1
    return np.asarray([bank.filled(c) >= need for c in class_ids], dtype=bool)


def _slot_layout(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Where each vector sits in a (groups, r_max) padded layout, grouped by bank row.

    Returns:
        ``(used rows (G',), flat padded position of each vector (M,), r_max)``.
    """
    used, group = np.unique(rows, return_inverse=True)
    position = np.zeros(rows.shape[0], dtype=np.int64)
    seen = np.zeros(used.shape[0], dtype=np.int64)
    for m, g in enumerate(group):
        position[m] = seen[g]
        seen[g] += 1
    r_max = int(seen.max())
    return used, group * r_max + position, r_max


def nearest_entries(vectors: Tensor, class_ids: Sequence[int], bank: FeatureBank) -> Tensor:
    """The filled bank slot of its own class nearest (L1) to each vector, in one batched ``cdist``.

    Args:
        vectors: ``(M, C)``; every class must have at least one filled slot.
        class_ids: ``M`` host class ids.
    Returns:
        ``(M, C)`` detached bank entries.
    """
    rows = np.asarray([bank.row(c) for c in class_ids], dtype=np.int64)
    used, padded_at, r_max = _slot_layout(rows)
    used_t, filled_t, padded_t, rows_t = _to_device(
        [used, np.minimum(bank.counts[used], bank.capacity), padded_at, rows], bank.data.device)
    with torch.no_grad():
        padded = vectors.new_zeros(used.shape[0] * r_max, bank.channels)
        padded.index_copy_(0, padded_t, vectors.detach().to(padded.dtype))
        # Every class queried (the usual case) needs no copy of the bank.
        everything = used.shape[0] == len(bank.class_ids)
        entries = (bank.data if everything else bank.data.index_select(0, used_t)).to(padded.dtype)  # (G', cap, C)
        dist = torch.cdist(padded.view(used.shape[0], r_max, -1), entries, p=1)  # (G', r_max, cap)
        empty = torch.arange(bank.capacity, device=dist.device)[None, :] >= filled_t[:, None]
        dist.masked_fill_(empty[:, None, :], float("inf"))
        nearest = dist.argmin(dim=2).view(-1).index_select(0, padded_t)  # (M,)
        return bank.data.view(-1, bank.channels).index_select(0, rows_t * bank.capacity + nearest)


def _l1_to_nearest(vectors: Tensor, class_ids: Sequence[int], bank: FeatureBank, reduction: str) -> Tensor:
    """``(M,)`` min_j ||v - S_j||_1 per vector (divided by C for ``channel_mean``)."""
    nearest = nearest_entries(vectors, class_ids, bank).to(vectors.dtype)
    dist = (vectors - nearest).abs().sum(dim=1)
    return dist / vectors.shape[1] if reduction == "channel_mean" else dist


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ConfigError(f"reduction must be one of {REDUCTIONS}, but got reduction={reduction!r}")


def stuff_matching_loss(target_vectors: Tensor, target_classes: Sequence[int], bank: FeatureBank, *,
                        reduction: Reduction = "sum", skip_until_full: bool = False) -> Tensor:
    """Eq. 6: sum over the target's stuff vectors of the L1 to the nearest bank entry of their class.

    Args:
        target_vectors: ``(P, C)`` stuff means A^b(L_P, f) of the classes present.
        target_classes: their ``P`` class ids (host).
        bank: the stuff bank S^b.
        reduction: ``sum`` (paper) or ``channel_mean`` (authors' code: L1 / C).
        skip_until_full: a class contributes only once its buffer is full (authors' code);
            otherwise once it holds one vector. Empty slots are never matched.
    Returns:
        scalar; zero (still on the graph) when no class contributes.
    """
    _check_reduction(reduction)
    keep = _eligible(bank, target_classes, skip_until_full)
    if not keep.any():
        return target_vectors[:0].sum()
    vectors = target_vectors
    if not keep.all():
        vectors = target_vectors.index_select(0, _to_device([np.flatnonzero(keep)], target_vectors.device)[0])
    classes = [c for c, k in zip(target_classes, keep) if k]
    return _l1_to_nearest(vectors, classes, bank, reduction).sum()


def _group_weights(region_classes: Sequence[int], region_images: Sequence[int]) -> np.ndarray:
    """``(R,)`` 1 / |R_k| of each region's (image, class) group (eq. 8)."""
    keys = np.asarray(region_images, dtype=np.int64) * (1 << 20) + np.asarray(region_classes, dtype=np.int64)
    _, inverse, sizes = np.unique(keys, return_inverse=True, return_counts=True)
    return 1.0 / sizes[inverse]


def instance_matching_loss(target_region_vectors: Tensor, region_classes: Sequence[int], bank: FeatureBank, *,
                           region_images: Sequence[int] | None = None, reduction: Reduction = "sum",
                           skip_until_full: bool = False) -> Tensor:
    """Eq. 8: per image and thing class, the mean over its regions of the L1 to the nearest entry.

    Args:
        target_region_vectors: ``(R, C)`` region means I(r, f) of the target regions kept
            (at most 10 per class and image, the largest; ``label_regions_batch`` picks them).
        region_classes: their ``R`` class ids (host).
        bank: the instance bank S^k.
        region_images: each region's image in the batch; None = all from one image.
        reduction, skip_until_full: as in ``stuff_matching_loss``.
    Returns:
        scalar, summed over images and classes; zero (still on the graph) when nothing contributes.
    """
    _check_reduction(reduction)
    images = list(region_images) if region_images is not None else [0] * len(region_classes)
    keep = _eligible(bank, region_classes, skip_until_full)
    if not keep.any():
        return target_region_vectors[:0].sum()
    weights = _group_weights(region_classes, images)[keep]
    index, = _to_device([np.flatnonzero(keep)], target_region_vectors.device)
    vectors = target_region_vectors.index_select(0, index)
    classes = [c for c, k in zip(region_classes, keep) if k]
    dist = _l1_to_nearest(vectors, classes, bank, reduction)
    return (dist * host_to_device(weights, dist.device).to(dist.dtype)).sum()


def _resize_nearest(labels: Tensor, size: Sequence[int]) -> Tensor:
    """``(N, H, W)`` integer labels -> ``(N, h, w)`` long, nearest neighbour (PyTorch's ``nearest``)."""
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels.long()
    # float32 holds every train id exactly; interpolate has no integer kernel.
    return F.interpolate(labels[:, None].float(), size=tuple(size), mode="nearest")[:, 0].long()


def correct_source_map(gt: Tensor, logits: Tensor) -> Tensor:
    """Eq. 4, L_C = L_G ∩ L_P: the ground truth at feature resolution where the prediction agrees.

    Args:
        gt: ``(N, H, W)`` train ids (255 ignore).
        logits: ``(N, K, h, w)`` source logits.
    Returns:
        ``(N, h, w)`` long; 255 where the argmax differs from the (nearest-downsampled) truth.
    """
    small = _resize_nearest(gt, logits.shape[-2:])
    return torch.where(small == logits.argmax(dim=1), small, torch.full_like(small, IGNORE))


def augmented_target_map(pred: Tensor, pseudo: Tensor) -> Tensor:
    """Eq. 11: the pseudo-label where it is set, the prediction elsewhere.

    Args:
        pred: ``(N, h, w)`` predicted train ids (argmax of the target logits).
        pseudo: ``(N, H, W)`` or ``(N, h, w)`` pseudo-labels, 255 = unset; downsampled nearest.
    Returns:
        ``(N, h, w)`` long.
    """
    small = _resize_nearest(pseudo, pred.shape[-2:])
    return torch.where(small != IGNORE, small, pred.long())


class SimMatcher:
    """Stuff and instance matching for one training step: fill the source banks, match the target.

    The step copies the two feature-resolution label maps to the host once; labelling,
    presence, top-z selection and bank counters then run there, and every device op is
    queued without waiting (unless ``self_check`` is set: one more sync per step).
    Within a step the banks are updated from the source image first, then the target is
    matched, so the newest source vectors can already be matched.

    Args:
        num_classes: K; label values >= K (255) are ignored.
        stuff_ids, thing_ids: the class groups (eq. 6 / eq. 8).
        feature_channels: C of the matched features.
        bank_size: w; stuff buffers hold w vectors per class, instance buffers z * w.
        instances_per_image: z, largest source regions per class pushed per image.
        target_regions_per_class: largest target regions per class matched per image.
        reduction: ``sum`` (paper) or ``channel_mean`` (authors' code).
        skip_until_full: match a class only once its buffer is full (authors' code).
        self_check: classifier ``(M, C, 1, 1) -> (M, K, 1, 1)``; when given, a vector is pushed
            only if it classifies as its own class (authors' code). Costs one extra sync.
        device: where the banks live (the features' device).
    """

    def __init__(self, *, num_classes: int, stuff_ids: Sequence[int], thing_ids: Sequence[int],
                 feature_channels: int, bank_size: int, instances_per_image: int = 10,
                 target_regions_per_class: int = 10, reduction: Reduction = "sum", skip_until_full: bool = False,
                 self_check: Classifier | None = None, device: torch.device | str = "cpu") -> None:
        _check_reduction(reduction)
        _check_groups(num_classes, stuff_ids, thing_ids)
        if bank_size < 1 or instances_per_image < 1 or target_regions_per_class < 1:
            raise ConfigError(f"bank_size, instances_per_image and target_regions_per_class must be >= 1, but got "
                              f"{bank_size}, {instances_per_image}, {target_regions_per_class}")
        self.num_classes = num_classes
        self.stuff_ids = tuple(int(c) for c in stuff_ids)
        self.thing_ids = tuple(int(c) for c in thing_ids)
        self.instances_per_image = instances_per_image
        self.target_regions_per_class = target_regions_per_class
        self.reduction = reduction
        self.skip_until_full = skip_until_full
        self.self_check = self_check
        self.device = torch.device(device)
        self.stuff_bank = FeatureBank(self.stuff_ids, bank_size, feature_channels, device=self.device)
        self.thing_bank = FeatureBank(self.thing_ids, instances_per_image * bank_size, feature_channels,
                                      device=self.device)
        self._stuff_t = torch.tensor(self.stuff_ids, dtype=torch.long, device=self.device)

    def step(self, src_features: Tensor, src_label: Tensor, trg_features: Tensor,
             trg_label: Tensor) -> dict[str, Tensor]:
        """Push the source image's stuff and instance vectors, then return L_stf and L_ins.

        Args:
            src_features: ``(N, C, hs, ws)`` source features (only read, never differentiated).
            src_label: ``(N, hs, ws)`` L_C, the correctly classified source map (eq. 4).
            trg_features: ``(N, C, ht, wt)`` target features (the loss flows into these).
            trg_label: ``(N, ht, wt)`` L_P, the target prediction (or eq. 11's map).
        Returns:
            ``{"loss/stuff_trg": scalar, "loss/inst_trg": scalar}``.
        """
        src_host, trg_host = self._host_maps(src_label, trg_label)
        # Matching runs in float32 even inside an autocast region: means over thousands of pixels.
        with torch.autocast(self.device.type, enabled=False):
            self._push_source(src_features.detach().float(), src_label, src_host)
            trg_features = trg_features.float()
            return {"loss/stuff_trg": self._stuff_loss(trg_features, trg_label, trg_host),
                    "loss/inst_trg": self._instance_loss(trg_features, trg_host)}

    def _host_maps(self, src_label: Tensor, trg_label: Tensor) -> tuple[np.ndarray, np.ndarray]:
        """The step's single device-to-host copy: both label maps as uint8."""
        both = torch.cat([src_label.reshape(-1), trg_label.reshape(-1)])
        # Classes and 255 fit in uint8; anything else is invalid and becomes "ignore".
        both = torch.where((both >= 0) & (both < self.num_classes), both, IGNORE).to(torch.uint8)
        flat = both.cpu().numpy()
        split = src_label.numel()
        return flat[:split].reshape(src_label.shape), flat[split:].reshape(trg_label.shape)

    def _stuff_rows(self, features: Tensor, label: Tensor, host: np.ndarray) -> tuple[Tensor, list[int]]:
        """Means of the stuff classes present in each image: ``(P, C)`` and their classes."""
        counts = np.stack([np.bincount(m.ravel(), minlength=256)[list(self.stuff_ids)] for m in host])  # (N, S)
        flat = np.flatnonzero(counts.reshape(-1) > 0)
        means, _ = pool_classes(features, label, self._stuff_t)
        classes = [self.stuff_ids[i % len(self.stuff_ids)] for i in flat]
        if flat.shape[0] == 0:
            return means.reshape(-1, features.shape[1])[:0], classes
        index, = _to_device([flat], features.device)
        return means.reshape(-1, features.shape[1]).index_select(0, index), classes

    def _regions(self, features: Tensor, host: np.ndarray, max_per_class: int) -> tuple[Tensor, RegionSet]:
        """Means of the largest ``max_per_class`` regions of each thing class per image: ``(R, C)``."""
        regions = label_regions_batch(host, self.thing_ids, max_per_class)
        index_map, = _to_device([regions.index_map], features.device)
        return pool_regions(features, index_map.view(host.shape), regions.num_regions), regions

    def _push_source(self, features: Tensor, label: Tensor, host: np.ndarray) -> None:
        stuff_vectors, stuff_classes = self._stuff_rows(features, label, host)
        thing_vectors, regions = self._regions(features, host, self.instances_per_image)
        self._push(self.stuff_bank, stuff_vectors, stuff_classes)
        self._push(self.thing_bank, thing_vectors, [int(c) for c in regions.classes])

    def _push(self, bank: FeatureBank, vectors: Tensor, classes: list[int]) -> None:
        if self.self_check is not None and classes:
            ok = self_check_mask(self.self_check, vectors, classes)
            vectors = vectors.index_select(0, host_to_device(np.flatnonzero(ok), vectors.device))
            classes = [c for c, keep in zip(classes, ok) if keep]
        bank.push(classes, vectors)

    def _stuff_loss(self, features: Tensor, label: Tensor, host: np.ndarray) -> Tensor:
        vectors, classes = self._stuff_rows(features, label, host)
        return stuff_matching_loss(vectors, classes, self.stuff_bank, reduction=self.reduction,
                                   skip_until_full=self.skip_until_full)

    def _instance_loss(self, features: Tensor, host: np.ndarray) -> Tensor:
        vectors, regions = self._regions(features, host, self.target_regions_per_class)
        return instance_matching_loss(vectors, [int(c) for c in regions.classes], self.thing_bank,
                                      region_images=[int(i) for i in regions.images], reduction=self.reduction,
                                      skip_until_full=self.skip_until_full)

    def state_dict(self) -> dict[str, Any]:
        """Both banks, so a resumed stage matches exactly as an uninterrupted one."""
        return {"stuff": self.stuff_bank.state_dict(), "thing": self.thing_bank.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict``'s banks."""
        self.stuff_bank.load_state_dict(state["stuff"])
        self.thing_bank.load_state_dict(state["thing"])


def _check_groups(num_classes: int, stuff_ids: Sequence[int], thing_ids: Sequence[int]) -> None:
    """Stuff and thing ids must be distinct classes below ``num_classes``."""
    ids = list(stuff_ids) + list(thing_ids)
    if len(set(ids)) != len(ids) or any(not 0 <= c < num_classes for c in ids):
        raise ConfigError(f"stuff_ids and thing_ids must be disjoint ids in 0..{num_classes - 1}, but got "
                          f"stuff_ids={list(stuff_ids)}, thing_ids={list(thing_ids)}")
