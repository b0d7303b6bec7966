"""The authors' way of computing L_stf and L_ins, kept only as the baseline to time against.

``ReferenceStyleMatcher`` has ``SimMatcher.step``'s interface and computes the same losses
(SIM_SPEC.md, eq. 5-8 and Algorithm 1) the way the reference code does: every stuff class
is pooled by its own device call with a ``.item()`` on its pixel count, every thing region
is labelled on the host by scikit-image and pooled by its own device call with a
``.item()`` on its area (``reference_style_instance_features``), and every vector is
matched against its class's buffer by its own call. Host/device syncs are counted.

``max_abs_diff`` runs it and a ``SimMatcher`` on the same inputs: the equivalence check of
the fast path against this simple one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from simtune.errors import ConfigError
from simtune.labels import IGNORE
from simtune.sim import SimMatcher, reference_style_instance_features
from simtune.sim.regions import EPS


def require_skimage() -> None:
    """The baseline labels regions with scikit-image; a missing install is a user error."""
    try:
        import skimage.measure  # noqa: F401
    except ImportError:
        raise ConfigError("simtune bench needs scikit-image for the reference-style baseline "
                          "(pip install 'simtune[test]' or pip install scikit-image)") from None


class _ClassBuffers:
    """One ring buffer tensor ``(capacity, C)`` per class, written one vector at a time."""

    def __init__(self, class_ids: Sequence[int], capacity: int, channels: int, device: torch.device) -> None:
        self.capacity = capacity
        self.data = {int(c): torch.zeros(capacity, channels, device=device) for c in class_ids}
        self.counts = {int(c): 0 for c in class_ids}

    def push(self, class_id: int, vector: Tensor) -> None:
        self.data[class_id][self.counts[class_id] % self.capacity] = vector.detach()
        self.counts[class_id] += 1

    def entries(self, class_id: int, skip_until_full: bool) -> Tensor | None:
        """The filled slots ``(F, C)`` of a class, or None while it may not be matched."""
        filled = min(self.counts[class_id], self.capacity)
        if filled == 0 or (skip_until_full and filled < self.capacity):
            return None
        return self.data[class_id][:filled]


@dataclass
class StepCounts:
    """What the last ``step`` did: host syncs and regions (source pushed, target matched)."""

    syncs: int = 0
    src_regions: int = 0
    trg_regions: int = 0


class ReferenceStyleMatcher:
    """Stuff and instance matching the reference way: one device call and one sync per region.

    Arguments as ``SimMatcher`` (no self-check). Label values outside ``0..num_classes-1``
    are ignored.
    """

    def __init__(self, *, num_classes: int, stuff_ids: Sequence[int], thing_ids: Sequence[int],
                 feature_channels: int, bank_size: int, instances_per_image: int = 10,
                 target_regions_per_class: int = 10, reduction: str = "sum", skip_until_full: bool = False,
                 device: torch.device | str = "cpu") -> None:
        require_skimage()
        device = torch.device(device)
        self.num_classes = num_classes
        self.stuff_ids = tuple(int(c) for c in stuff_ids)
        self.thing_ids = tuple(int(c) for c in thing_ids)
        self.instances_per_image = instances_per_image
        self.target_regions_per_class = target_regions_per_class
        self.divisor = float(feature_channels) if reduction == "channel_mean" else 1.0
        self.skip_until_full = skip_until_full
        self.stuff = _ClassBuffers(self.stuff_ids, bank_size, feature_channels, device)
        self.thing = _ClassBuffers(self.thing_ids, instances_per_image * bank_size, feature_channels, device)
        self.last = StepCounts()
        self.total = StepCounts()  # summed over every step so far
        self.steps = 0

    @classmethod
    def like(cls, matcher: SimMatcher) -> ReferenceStyleMatcher:
        """A reference-style matcher with ``matcher``'s classes, sizes and options (empty banks)."""
        return cls(num_classes=matcher.num_classes, stuff_ids=matcher.stuff_ids, thing_ids=matcher.thing_ids,
                   feature_channels=matcher.stuff_bank.channels, bank_size=matcher.stuff_bank.capacity,
                   instances_per_image=matcher.instances_per_image,
                   target_regions_per_class=matcher.target_regions_per_class, reduction=matcher.reduction,
                   skip_until_full=matcher.skip_until_full, device=matcher.device)

    def step(self, src_features: Tensor, src_label: Tensor, trg_features: Tensor,
             trg_label: Tensor) -> dict[str, Tensor]:
        """``SimMatcher.step``: push the source vectors, then ``{"loss/stuff_trg", "loss/inst_trg"}``.

        Args:
            src_features: ``(N, C, hs, ws)``; src_label: ``(N, hs, ws)`` L_C.
            trg_features: ``(N, C, ht, wt)``; trg_label: ``(N, ht, wt)`` L_P.
        """
        self.last = StepCounts()
        src_label, trg_label = self._valid(src_label), self._valid(trg_label)
        with torch.autocast(src_features.device.type, enabled=False):
            self._push_source(src_features.detach().float(), src_label)
            trg_features = trg_features.float()
            losses = {"loss/stuff_trg": self._stuff_loss(trg_features, trg_label),
                      "loss/inst_trg": self._instance_loss(trg_features, trg_label)}
        self.steps += 1
        for name in ("syncs", "src_regions", "trg_regions"):
            setattr(self.total, name, getattr(self.total, name) + getattr(self.last, name))
        return losses

    def _valid(self, label: Tensor) -> Tensor:
        return torch.where((label >= 0) & (label < self.num_classes), label, IGNORE)

    def _class_mean(self, features: Tensor, label: Tensor, cls: int) -> Tensor | None:
        """Eq. 5 for one class of one image ``(C, h, w)``: one device call, one sync for the count."""
        mask = (label == cls).to(features.dtype)
        count = mask.sum().item()
        self.last.syncs += 1
        if count == 0:
            return None
        return (features * mask).sum(dim=(1, 2)) / max(EPS, count)

    def _regions(self, features: Tensor, label: Tensor, max_per_class: int) -> tuple[Tensor, list[int]]:
        """Region means of one image: a host labelling and a sync per class, a sync per region."""
        vectors, classes = reference_style_instance_features(features[None], label[None], self.thing_ids,
                                                             max_per_class)
        self.last.syncs += len(self.thing_ids) + len(classes)
        return vectors, classes

    def _push_source(self, features: Tensor, label: Tensor) -> None:
        for n in range(features.shape[0]):
            for cls in self.stuff_ids:
                mean = self._class_mean(features[n], label[n], cls)
                if mean is not None:
                    self.stuff.push(cls, mean)
            vectors, classes = self._regions(features[n], label[n], self.instances_per_image)
            for vector, cls in zip(vectors, classes):
                self.thing.push(cls, vector)
            self.last.src_regions += len(classes)

    def _nearest_l1(self, buffers: _ClassBuffers, cls: int, vector: Tensor) -> Tensor | None:
        """min_j ||v - S_j||_1 over the class's filled slots (one call), or None if not matchable."""
        entries = buffers.entries(cls, self.skip_until_full)
        if entries is None:
            return None
        return (entries - vector[None]).abs().sum(dim=1).min() / self.divisor

    def _stuff_loss(self, features: Tensor, label: Tensor) -> Tensor:
        loss = features.new_zeros(())
        for n in range(features.shape[0]):
            for cls in self.stuff_ids:
                mean = self._class_mean(features[n], label[n], cls)
                term = self._nearest_l1(self.stuff, cls, mean) if mean is not None else None
                if term is not None:
                    loss = loss + term
        return loss

    def _instance_loss(self, features: Tensor, label: Tensor) -> Tensor:
        """Eq. 8: per image and class, the mean over its matchable regions."""
        loss = features.new_zeros(())
        for n in range(features.shape[0]):
            vectors, classes = self._regions(features[n], label[n], self.target_regions_per_class)
            self.last.trg_regions += len(classes)
            terms: dict[int, list[Tensor]] = {}
            for vector, cls in zip(vectors, classes):
                term = self._nearest_l1(self.thing, cls, vector)
                if term is not None:
                    terms.setdefault(cls, []).append(term)
            for group in terms.values():
                loss = loss + torch.stack(group).mean()
        return loss


@dataclass(frozen=True)
class Equivalence:
    """Largest differences between the reference-style and our losses (and their gradients)."""

    steps: int
    max_loss_diff: float
    max_grad_diff: float
    max_loss: float  # the largest loss compared, for scale
    regions_per_step: float  # source + target regions the reference path handled per step


def max_abs_diff(ours: SimMatcher, inputs: Sequence[tuple[Tensor, Tensor, Tensor, Tensor]]) -> Equivalence:
    """Run ``ours`` and a fresh reference-style twin over the same steps; compare losses and grads.

    Args:
        ours: a matcher with empty banks (its banks are filled by this check).
        inputs: per step ``(src_features, src_label, trg_features, trg_label)``, as for ``step``.
    """
    reference = ReferenceStyleMatcher.like(ours)
    loss_diff = grad_diff = largest = 0.0
    regions = 0
    for src_f, src_l, trg_f, trg_l in inputs:
        results = []
        for matcher in (ours, reference):
            trg = trg_f.detach().float().clone().requires_grad_(True)
            losses = matcher.step(src_f.detach().float(), src_l, trg, trg_l)
            total = losses["loss/stuff_trg"] + losses["loss/inst_trg"]
            grad = torch.autograd.grad(total, trg, allow_unused=True)[0] if total.requires_grad else None
            results.append((losses, torch.zeros_like(trg) if grad is None else grad))
        (ours_losses, ours_grad), (ref_losses, ref_grad) = results
        for name, value in ours_losses.items():
            loss_diff = max(loss_diff, float((value.detach() - ref_losses[name].detach()).abs()))
            largest = max(largest, float(value.detach().abs()))
        grad_diff = max(grad_diff, float((ours_grad - ref_grad).abs().max()))
        regions += reference.last.src_regions + reference.last.trg_regions
    return Equivalence(len(inputs), loss_diff, grad_diff, largest, regions / max(1, len(inputs)))
