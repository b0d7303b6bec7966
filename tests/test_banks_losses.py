"""Feature banks (eq. 5, Algorithm 1), matching losses (eq. 6, eq. 8), eq. 4/11 maps, SimMatcher."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from skimage.measure import label as sk_label
from torch import Tensor

from simtune.errors import ConfigError
from simtune.sim import (
    FeatureBank,
    SimMatcher,
    augmented_target_map,
    correct_source_map,
    instance_matching_loss,
    self_check_mask,
    stuff_matching_loss,
)

IGNORE = 255


def vec(*values: float) -> Tensor:
    return torch.tensor([values], dtype=torch.float32)


# ---------------------------------------------------------------- banks


def test_ring_buffer_wraps_in_push_order_per_class() -> None:
    bank = FeatureBank([3, 8], capacity=3, channels=2)
    for i in range(5):
        bank.push([3], vec(i, -i))
    bank.push([8], vec(100, 100))
    # Pushes 0..4 to slots 0,1,2,0,1: slot 2 still holds push 2.
    assert bank.data[bank.row(3)].tolist() == [[3, -3], [4, -4], [2, -2]]
    assert bank.data[bank.row(8)].tolist() == [[100, 100], [0, 0], [0, 0]]
    assert bank.counts.tolist() == [5, 1]
    assert (bank.filled(3), bank.filled(8)) == (3, 1)
    assert bank.is_full(3) and not bank.is_full(8)
    assert bank.valid_mask().tolist() == [[True, True, True], [True, False, False]]


def test_one_push_of_many_rows_equals_row_by_row_pushes_even_past_capacity() -> None:
    vectors = torch.randn(9, 4)
    classes = [1, 2, 1, 1, 1, 2, 1, 1, 2]
    batched = FeatureBank([1, 2], capacity=3, channels=4)
    batched.push(classes, vectors)
    single = FeatureBank([1, 2], capacity=3, channels=4)
    for c, v in zip(classes, vectors):
        single.push([c], v[None])
    torch.testing.assert_close(batched.data, single.data)
    assert batched.counts.tolist() == single.counts.tolist() == [6, 3]


def test_bank_stores_detached_vectors_and_rejects_unknown_classes() -> None:
    source = torch.randn(1, 2, requires_grad=True)
    bank = FeatureBank([0], capacity=2, channels=2)
    bank.push([0], source * 2)
    assert not bank.data.requires_grad and bank.data.grad_fn is None
    with pytest.raises(ValueError, match="class 5 has no bank"):
        bank.push([5], vec(1, 1))
    with pytest.raises(ValueError, match=r"vectors must be \(1, 2\)"):
        bank.push([0], torch.zeros(1, 3))
    with pytest.raises(ConfigError, match="capacity=0"):
        FeatureBank([0], capacity=0, channels=2)


def test_bank_state_round_trip_resumes_exactly() -> None:
    bank = FeatureBank([0, 1], capacity=4, channels=3)
    bank.push([0, 0, 1, 0, 0, 0], torch.randn(6, 3))
    resumed = FeatureBank([0, 1], capacity=4, channels=3)
    resumed.load_state_dict(bank.state_dict())
    more = torch.randn(3, 3)
    bank.push([0, 1, 1], more)
    resumed.push([0, 1, 1], more)
    torch.testing.assert_close(resumed.data, bank.data)
    assert resumed.counts.tolist() == bank.counts.tolist() == [6, 3]
    with pytest.raises(ValueError, match="bank state is for classes"):
        FeatureBank([0, 2], capacity=4, channels=3).load_state_dict(bank.state_dict())


def test_self_check_keeps_vectors_classified_as_their_class() -> None:
    def classify(x: Tensor) -> Tensor:  # (M, 2, 1, 1) -> (M, 3, 1, 1): class = argmax of [x0, x1, 0]
        return torch.cat([x, torch.zeros_like(x[:, :1])], dim=1)

    vectors = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0], [1.0, 0.0]])
    assert self_check_mask(classify, vectors, [0, 1, 2, 1]).tolist() == [True, True, True, False]


# ---------------------------------------------------------------- losses, hand cases


def filled_bank(entries: dict[int, list[list[float]]], capacity: int = 3,
                classes: tuple[int, ...] = (0, 1)) -> FeatureBank:
    bank = FeatureBank(classes, capacity=capacity, channels=len(next(iter(entries.values()))[0]))
    for cls, rows in entries.items():
        bank.push([cls] * len(rows), torch.tensor(rows))
    return bank


def test_stuff_loss_hand_case_ignores_empty_slots_and_empty_banks() -> None:
    bank = filled_bank({0: [[0.0, 0.0], [1.0, 1.0]]})  # class 1 empty; slot 2 of class 0 empty (zeros)
    target = torch.tensor([[1.0, 2.0], [5.0, 5.0]], requires_grad=True)
    # class 0: min(|1|+|2|, |0|+|1|) = 1; class 1 has no entries: 0.
    loss = stuff_matching_loss(target, [0, 1], bank)
    assert loss.item() == pytest.approx(1.0)
    assert stuff_matching_loss(target, [0, 1], bank, reduction="channel_mean").item() == pytest.approx(0.5)
    # An empty slot (zeros) must not be matched: [0.9, 0.9] is nearer to zeros than to [5, 5].
    one = filled_bank({0: [[5.0, 5.0]]})
    assert stuff_matching_loss(vec(0.9, 0.9), [0], one).item() == pytest.approx(8.2)


def test_stuff_loss_skip_until_full() -> None:
    bank = filled_bank({0: [[0.0, 0.0], [1.0, 1.0]], 1: [[2.0, 0.0], [0.0, 2.0], [3.0, 3.0]]})
    target = torch.tensor([[1.0, 2.0], [1.0, 1.0]])
    # class 0 (2 of 3 slots) is skipped; class 1: min(1+1, 1+1, 2+2) = 2.
    assert stuff_matching_loss(target, [0, 1], bank, skip_until_full=True).item() == pytest.approx(2.0)
    assert stuff_matching_loss(target, [0, 1], bank, skip_until_full=False).item() == pytest.approx(3.0)


def test_loss_with_nothing_to_match_is_a_differentiable_zero() -> None:
    bank = FeatureBank([0, 1], capacity=2, channels=2)
    target = torch.ones(2, 2, requires_grad=True)
    for loss in (stuff_matching_loss(target, [0, 1], bank), instance_matching_loss(target, [0, 1], bank),
                 stuff_matching_loss(target[:0], [], bank)):
        assert loss.item() == 0.0 and loss.shape == () and loss.dtype == target.dtype
        loss.backward()
    assert target.grad is not None and (target.grad == 0).all()


def test_instance_loss_hand_case_averages_regions_per_class_and_image() -> None:
    bank = filled_bank({0: [[0.0, 0.0, 0.0], [2.0, 2.0, 2.0]], 1: [[1.0, 0.0, 0.0]]}, capacity=4)
    regions = torch.tensor([[0.5, 0.0, 0.0],   # class 0: min(0.5, 5.5) = 0.5
                            [2.0, 2.0, 3.0],   # class 0: min(7, 1) = 1
                            [1.0, 1.0, 1.0],   # class 1: 2
                            [0.0, 0.0, 0.0]])  # class 1, image 1: 1
    loss = instance_matching_loss(regions, [0, 0, 1, 1], bank, region_images=[0, 0, 0, 1])
    assert loss.item() == pytest.approx((0.5 + 1.0) / 2 + 2.0 + 1.0)
    # All from one image: class 1's two regions are averaged.
    assert instance_matching_loss(regions, [0, 0, 1, 1], bank).item() == pytest.approx(0.75 + 1.5)
    assert instance_matching_loss(regions, [0, 0, 1, 1], bank, reduction="channel_mean").item() == \
        pytest.approx(2.25 / 3)
    # Class 1's bank (1 of 4) is skipped until full; class 0 (2 of 4) too.
    assert instance_matching_loss(regions, [0, 0, 1, 1], bank, skip_until_full=True).item() == 0.0


def test_gradient_flows_to_target_vectors_only() -> None:
    bank = filled_bank({0: [[0.0, 0.0], [3.0, 3.0]], 1: [[1.0, 1.0]]})
    bank.data.requires_grad_(False)
    target = torch.tensor([[1.0, -1.0], [2.5, 4.0], [0.0, 2.0]], requires_grad=True)
    loss = instance_matching_loss(target, [0, 0, 1], bank) + stuff_matching_loss(target, [0, 0, 1], bank)
    loss.backward()
    # d/dv |v - s|_1 = sign(v - s) to the nearest s; instance rows of class 0 weigh 1/2, + 1 from stuff.
    expected = torch.tensor([[1.0, -1.0], [-1.0, 1.0], [-1.0, 1.0]]) * torch.tensor([[1.5], [1.5], [2.0]])
    torch.testing.assert_close(target.grad, expected)
    assert bank.data.grad is None


def test_bad_reduction_is_rejected() -> None:
    with pytest.raises(ConfigError, match="reduction must be one of"):
        bank = filled_bank({0: [[0.0, 0.0]]})
        stuff_matching_loss(torch.zeros(1, 2), [0], bank, reduction="mean")  # type: ignore[arg-type]


# ---------------------------------------------------------------- eq. 4 and eq. 11 maps


def test_correct_source_map_keeps_agreeing_pixels_at_feature_resolution() -> None:
    gt = torch.tensor([[[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 255, 255], [2, 2, 255, 255]]])
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 0, 0, 0] = 1  # agrees (0)
    logits[0, 2, 0, 1] = 1  # says 2, truth 1
    logits[0, 2, 1, 0] = 1  # agrees (2)
    logits[0, 1, 1, 1] = 1  # truth ignored
    assert correct_source_map(gt, logits).tolist() == [[[0, 255], [2, 255]]]


def test_augmented_target_map_prefers_set_pseudo_labels() -> None:
    pred = torch.tensor([[[1, 1], [1, 1]]])
    pseudo = torch.tensor([[[5, 5, 255, 255], [5, 5, 255, 255], [255, 255, 7, 7], [255, 255, 7, 7]]])
    assert augmented_target_map(pred, pseudo).tolist() == [[[5, 1], [1, 7]]]
    assert augmented_target_map(pred, torch.tensor([[[255, 3], [4, 255]]])).tolist() == [[[1, 3], [4, 1]]]


# ---------------------------------------------------------------- SimMatcher vs a naive implementation


class NaiveSim:
    """Eq. 5-8 and Algorithm 1 with Python loops, skimage and one L1 per bank entry."""

    def __init__(self, stuff: tuple[int, ...], things: tuple[int, ...], w: int, z: int, t: int,
                 channel_mean: bool, skip: bool, classify: Callable[[Tensor], Tensor] | None = None) -> None:
        self.stuff, self.things, self.z, self.t = stuff, things, z, t
        self.cap = dict.fromkeys(stuff, w) | dict.fromkeys(things, z * w)
        self.bank: dict[int, dict[int, Tensor]] = {c: {} for c in stuff + things}
        self.count = dict.fromkeys(stuff + things, 0)
        self.channel_mean, self.skip, self.classify = channel_mean, skip, classify

    def push(self, cls: int, v: Tensor) -> None:
        if self.classify is not None and self.classify(v[None, :, None, None]).flatten().argmax() != cls:
            return
        self.bank[cls][self.count[cls] % self.cap[cls]] = v.detach().clone()
        self.count[cls] += 1

    def regions(self, label: np.ndarray, cls: int, keep: int) -> list[np.ndarray]:
        comps = sk_label(label == cls, connectivity=2)
        masks = [comps == i for i in range(1, comps.max() + 1)]
        return sorted(masks, key=lambda m: -int(m.sum()))[:keep]

    def matched(self, v: Tensor, cls: int) -> Tensor | None:
        entries = list(self.bank[cls].values())
        if not entries or (self.skip and len(entries) < self.cap[cls]):
            return None
        d = torch.stack([(v - s).abs().sum() for s in entries]).min()
        return d / v.shape[0] if self.channel_mean else d

    def step(self, sf: Tensor, sl: Tensor, tf: Tensor, tl: Tensor) -> tuple[Tensor, Tensor]:
        for n in range(sf.shape[0]):
            src = sl[n].numpy()
            for b in self.stuff:
                if (src == b).any():
                    self.push(b, sf[n][:, torch.from_numpy(src == b)].mean(dim=1))
            for k in self.things:
                for m in self.regions(src, k, self.z):
                    self.push(k, sf[n][:, torch.from_numpy(m)].mean(dim=1))
        stuff_loss, inst_loss = tf.sum() * 0, tf.sum() * 0
        for n in range(tf.shape[0]):
            trg = tl[n].numpy()
            for b in self.stuff:
                d = self.matched(tf[n][:, torch.from_numpy(trg == b)].mean(dim=1), b) if (trg == b).any() else None
                stuff_loss = stuff_loss + (d if d is not None else 0)
            for k in self.things:
                masks = self.regions(trg, k, self.t)
                ds = [self.matched(tf[n][:, torch.from_numpy(m)].mean(dim=1), k) for m in masks]
                inst_loss = inst_loss + sum(d / len(masks) for d in ds if d is not None)
        return stuff_loss, inst_loss


def random_labels(gen: torch.Generator, n: int, h: int, w: int, num_classes: int) -> Tensor:
    coarse = torch.randint(0, num_classes + 2, (n, 1, h // 2, w // 2), generator=gen).float()
    labels = torch.nn.functional.interpolate(coarse, size=(h, w), mode="nearest")[:, 0].long()
    return torch.where(labels >= num_classes, IGNORE, labels)


@pytest.mark.parametrize("reduction,skip", [("sum", False), ("channel_mean", True)])
def test_sim_matcher_step_equals_naive_implementation(reduction: str, skip: bool) -> None:
    stuff, things = (0, 1, 3), (2, 4, 5)
    gen = torch.Generator().manual_seed(0)
    matcher = SimMatcher(num_classes=6, stuff_ids=stuff, thing_ids=things, feature_channels=5, bank_size=2,
                         instances_per_image=3, target_regions_per_class=2,
                         reduction=reduction, skip_until_full=skip)  # type: ignore[arg-type]
    naive = NaiveSim(stuff, things, w=2, z=3, t=2, channel_mean=reduction == "channel_mean", skip=skip)
    for _ in range(6):
        sf, tf = torch.randn(2, 5, 10, 12, generator=gen), torch.randn(2, 5, 8, 9, generator=gen)
        sl, tl = random_labels(gen, 2, 10, 12, 6), random_labels(gen, 2, 8, 9, 6)
        ours_tf, naive_tf = tf.clone().requires_grad_(), tf.clone().requires_grad_()
        out = matcher.step(sf, sl, ours_tf, tl)
        ref_stuff, ref_inst = naive.step(sf, sl, naive_tf, tl)
        torch.testing.assert_close(out["loss/stuff_trg"], ref_stuff)
        torch.testing.assert_close(out["loss/inst_trg"], ref_inst)
        (out["loss/stuff_trg"] + out["loss/inst_trg"]).backward()
        (ref_stuff + ref_inst).backward()
        torch.testing.assert_close(ours_tf.grad, naive_tf.grad)
    assert matcher.thing_bank.counts.tolist() == [naive.count[k] for k in things]
    assert matcher.stuff_bank.counts.tolist() == [naive.count[b] for b in stuff]


def test_sim_matcher_self_check_matches_naive() -> None:
    weight = torch.randn(6, 4, generator=torch.Generator().manual_seed(1))

    def classify(x: Tensor) -> Tensor:
        return torch.einsum("kc,mcij->mkij", weight, x)

    gen = torch.Generator().manual_seed(2)
    matcher = SimMatcher(num_classes=6, stuff_ids=(0, 1), thing_ids=(2, 3), feature_channels=4, bank_size=3,
                         instances_per_image=2, self_check=classify)
    naive = NaiveSim((0, 1), (2, 3), w=3, z=2, t=10, channel_mean=False, skip=False, classify=classify)
    for _ in range(5):
        sf, tf = torch.randn(1, 4, 9, 9, generator=gen), torch.randn(1, 4, 9, 9, generator=gen)
        sl, tl = random_labels(gen, 1, 9, 9, 4), random_labels(gen, 1, 9, 9, 4)
        out = matcher.step(sf, sl, tf, tl)
        ref = naive.step(sf, sl, tf, tl)
        torch.testing.assert_close(out["loss/stuff_trg"], ref[0])
        torch.testing.assert_close(out["loss/inst_trg"], ref[1])
    assert matcher.stuff_bank.counts.tolist() == [naive.count[0], naive.count[1]]


def test_sim_matcher_state_round_trip_continues_identically() -> None:
    def make() -> SimMatcher:
        return SimMatcher(num_classes=5, stuff_ids=(0, 1), thing_ids=(2, 3), feature_channels=3, bank_size=2)

    gen = torch.Generator().manual_seed(5)
    batches = [(torch.randn(1, 3, 8, 8, generator=gen), random_labels(gen, 1, 8, 8, 4),
                torch.randn(1, 3, 8, 8, generator=gen), random_labels(gen, 1, 8, 8, 4)) for _ in range(6)]
    first = make()
    for b in batches[:3]:
        first.step(*b)
    resumed = make()
    resumed.load_state_dict(first.state_dict())
    for b in batches[3:]:
        a, r = first.step(*b), resumed.step(*b)
        assert {k: v.item() for k, v in a.items()} == {k: v.item() for k, v in r.items()}


def test_sim_matcher_rejects_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="disjoint"):
        SimMatcher(num_classes=4, stuff_ids=(0, 1), thing_ids=(1, 2), feature_channels=3, bank_size=2)
    with pytest.raises(ConfigError, match="bank_size"):
        SimMatcher(num_classes=4, stuff_ids=(0,), thing_ids=(1,), feature_channels=3, bank_size=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_sim_matcher_step_waits_on_the_device_once() -> None:
    import warnings

    gen = torch.Generator().manual_seed(0)
    matcher = SimMatcher(num_classes=6, stuff_ids=(0, 1, 3), thing_ids=(2, 4, 5), feature_channels=64,
                         bank_size=2, device="cuda")
    batches = [(torch.randn(1, 64, 30, 40, generator=gen).cuda(), random_labels(gen, 1, 30, 40, 6).cuda(),
                torch.randn(1, 64, 20, 30, generator=gen).cuda().requires_grad_(),
                random_labels(gen, 1, 20, 30, 6).cuda()) for _ in range(4)]
    for batch in batches[:3]:  # fill the banks so every branch runs
        matcher.step(*batch)
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            out = matcher.step(*batches[3])
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    assert len(syncs) == 1, [str(w.message) for w in syncs]
    assert out["loss/stuff_trg"].item() > 0 and out["loss/inst_trg"].item() > 0
