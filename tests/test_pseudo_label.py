"""Pseudo-label thresholds from streaming histograms (SIM rule, CBST, CBST-SP) and their output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from simtune.sim.thresholds import (
    ConfidenceHistogram,
    accumulate_class_frequency,
    apply_cbst,
    apply_thresholds,
    cbst_thresholds,
    prior_histogram,
    sim_thresholds,
    spatial_prior,
    thresholds_report,
    write_pseudo_label,
)

K = 5
BINS = 1000


def random_probs(gen: torch.Generator, n: int, h: int, w: int, num_classes: int = K,
                 sharpness: float = 3.0) -> torch.Tensor:
    """Softmax maps whose confidences spread over (1/K, 1); class 4 is never the argmax."""
    logits = torch.randn(n, num_classes, h, w, generator=gen) * sharpness
    logits[:, num_classes - 1] -= 100.0
    return torch.softmax(logits, dim=1)


def filled_histogram(batches: list[torch.Tensor], bins: int = BINS) -> ConfidenceHistogram:
    hist = ConfidenceHistogram(K, bins=bins)
    for probs in batches:
        hist.update(probs)
    return hist


def per_class_confidences(batches: list[torch.Tensor]) -> list[np.ndarray]:
    probs = torch.cat(batches).numpy()
    conf, pred = probs.max(axis=1), probs.argmax(axis=1)
    return [np.sort(conf[pred == c]) for c in range(K)]


@pytest.fixture(scope="module")
def batches() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return [random_probs(gen, 2, 17, 23) for _ in range(6)]


@pytest.mark.parametrize("q", [0.0, 0.1, 0.25, 0.5, 0.77, 1.0])
def test_quantile_within_one_bin_of_numpy(batches: list[torch.Tensor], q: float) -> None:
    hist = filled_histogram(batches)
    estimate = hist.quantile(q).numpy()
    for c, values in enumerate(per_class_confidences(batches)):
        if values.size == 0:
            assert np.isnan(estimate[c])
        else:
            assert abs(estimate[c] - np.quantile(values, q)) <= 1.0 / BINS


def test_quantile_of_sparse_values_interpolates_across_empty_bins() -> None:
    hist = ConfidenceHistogram(1, bins=100)
    hist.update(torch.tensor([0.1, 0.9]), torch.tensor([0, 0]))
    assert abs(hist.quantile(0.5).item() - 0.5) <= 0.01
    assert abs(hist.quantile(0.25).item() - 0.3) <= 0.01


def test_update_from_probs_equals_update_from_confidence_and_prediction(batches: list[torch.Tensor]) -> None:
    other = ConfidenceHistogram(K, bins=BINS)
    for probs in batches:
        conf, pred = probs.max(dim=1)
        other.update(conf, pred)
    assert torch.equal(filled_histogram(batches).counts, other.counts)


def test_histogram_memory_does_not_grow_with_image_count(batches: list[torch.Tensor]) -> None:
    one, many = filled_histogram(batches[:1]), filled_histogram(batches * 20)
    for hist in (one, many):
        assert hist.counts.shape == (K, BINS) and hist.counts.dtype == torch.int64
        assert [t.numel() for t in vars(hist).values() if isinstance(t, torch.Tensor)] == [K * BINS, K]
    assert many.totals().sum().item() == 20 * sum(p[:, 0].numel() for p in batches)


def test_from_counts_round_trip(batches: list[torch.Tensor]) -> None:
    hist = filled_histogram(batches)
    again = ConfidenceHistogram.from_counts(torch.from_numpy(hist.counts.numpy().copy()))
    torch.testing.assert_close(again.quantile(0.5), hist.quantile(0.5), equal_nan=True)


@pytest.mark.parametrize("quantile,cap", [(0.5, 0.9), (0.5, 0.6), (0.8, 0.95)])
def test_sim_thresholds_are_capped_quantiles(batches: list[torch.Tensor], quantile: float, cap: float) -> None:
    thresholds = sim_thresholds(filled_histogram(batches), quantile=quantile, cap=cap).numpy()
    for c, values in enumerate(per_class_confidences(batches)):
        expected = min(np.quantile(values, quantile), cap) if values.size else cap
        assert abs(thresholds[c] - expected) <= 1.0 / BINS
    assert thresholds[K - 1] == pytest.approx(cap)  # never predicted


def test_apply_thresholds_hand_case() -> None:
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.3, 0.3, 0.4], [0.05, 0.9, 0.05]])
    probs = probs.T.reshape(1, 3, 2, 2)  # pixels (0,0) (0,1) (1,0) (1,1)
    thresholds = torch.tensor([0.7, 0.8, 0.5])
    # 0.7 >= 0.7 kept; 0.6 < 0.8 dropped; 0.4 < 0.5 dropped; 0.9 >= 0.8 kept.
    out = apply_thresholds(probs, thresholds)
    assert out.dtype == torch.uint8 and out.tolist() == [[[0, 255], [255, 1]]]


def brute_force_cbst_thresholds(values: list[np.ndarray], portion: float) -> np.ndarray:
    out = []
    for v in values:
        descending = v[::-1]
        out.append(descending[min(int(np.floor(portion * v.size)), v.size - 1)] if v.size else np.nan)
    return np.asarray(out)


@pytest.mark.parametrize("portion", [0.0, 0.2, 0.5, 0.9])
def test_cbst_thresholds_match_descending_rank(batches: list[torch.Tensor], portion: float) -> None:
    thresholds = cbst_thresholds(filled_histogram(batches), portion=portion).numpy()
    expected = brute_force_cbst_thresholds(per_class_confidences(batches), portion)
    np.testing.assert_allclose(thresholds[:-1], expected[:-1], atol=1.0 / BINS)
    assert thresholds[-1] == pytest.approx(1.0)  # never predicted: nothing can pass


def brute_force_cbst_labels(probs: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    n, k, h, w = probs.shape
    out = np.full((n, h, w), 255, dtype=np.uint8)
    for i, y, x in np.ndindex(n, h, w):
        ratios = [probs[i, c, y, x] / thresholds[c] for c in range(k)]
        if max(ratios) > 1:
            out[i, y, x] = int(np.argmax(ratios))
    return out


def test_apply_cbst_equals_brute_force(batches: list[torch.Tensor]) -> None:
    thresholds = cbst_thresholds(filled_histogram(batches), portion=0.3)
    probs = batches[0]
    expected = brute_force_cbst_labels(probs.numpy(), thresholds.numpy())
    np.testing.assert_array_equal(apply_cbst(probs, thresholds, None).numpy(), expected)
    kept = (expected != 255).mean()
    assert 0.1 < kept < 0.9  # the rule selects, it neither keeps nor drops everything


def test_cbst_with_spatial_prior_matches_brute_force() -> None:
    gen = torch.Generator().manual_seed(4)
    h, w = 12, 16
    counts = torch.zeros(K, h, w, dtype=torch.int64)
    for _ in range(5):
        accumulate_class_frequency(counts, torch.randint(0, K + 2, (2, 2 * h, 2 * w), generator=gen))
    prior = spatial_prior(counts, kernel_size=5)
    batches = [random_probs(gen, 1, h, w) for _ in range(4)]
    hist = prior_histogram(prior, bins=BINS)
    for probs in batches:
        hist.update(probs * prior)
    thresholds = cbst_thresholds(hist, portion=0.4)
    potentials = torch.cat(batches) * prior
    conf, pred = potentials.max(dim=1)
    values = [np.sort(conf[pred == c].numpy()) for c in range(K)]
    expected = brute_force_cbst_thresholds(values, 0.4)
    scale = prior.amax(dim=(1, 2)).numpy()
    present = [c for c in range(K) if values[c].size]
    assert (np.abs(thresholds.numpy()[present] - expected[present]) <= scale[present] / BINS).all()
    labels = apply_cbst(batches[0], thresholds, prior)
    np.testing.assert_array_equal(labels.numpy(), brute_force_cbst_labels(potentials[:1].numpy(), thresholds.numpy()))


def test_class_frequency_and_spatial_prior() -> None:
    labels = torch.tensor([[[0, 0, 255], [1, 1, 9]], [[0, 1, 1], [255, 1, 1]]])
    counts = torch.zeros(3, 2, 3, dtype=torch.int64)
    accumulate_class_frequency(counts, labels)
    assert counts.tolist() == [[[2, 1, 0], [0, 0, 0]], [[0, 1, 1], [1, 2, 1]], [[0, 0, 0], [0, 0, 0]]]
    prior = spatial_prior(counts, kernel_size=3)
    torch.testing.assert_close(prior.sum(dim=(1, 2)), torch.ones(3))
    torch.testing.assert_close(prior[2], torch.full((2, 3), 1 / 6))  # absent class: uniform
    assert prior[0, 0, 0] > prior[0, 1, 2]  # smoothing keeps mass where the class was


def test_write_pseudo_label_round_trip(tmp_path: Path) -> None:
    label = np.array([[0, 18, 255], [7, 7, 3]], dtype=np.uint8)
    path = tmp_path / "a.png"
    write_pseudo_label(path, label)
    write_pseudo_label(path, torch.from_numpy(label))  # overwrite in place
    with Image.open(path) as image:
        assert image.mode == "L"
        np.testing.assert_array_equal(np.asarray(image), label)
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]
    with pytest.raises(ValueError, match="uint8"):
        write_pseudo_label(path, label.astype(np.int64))


def test_thresholds_report_is_json_with_class_names() -> None:
    thresholds = np.linspace(0.5, 0.9, 19)
    kept = np.full(19, 0.5)
    kept[3] = np.nan
    report = thresholds_report(thresholds, kept)
    text = json.dumps(report, allow_nan=False)
    assert json.loads(text)["classes"]["road"] == {"threshold": 0.5, "kept_fraction": 0.5}
    assert report["classes"]["wall"]["kept_fraction"] is None
    assert list(thresholds_report(np.ones(2), np.ones(2))["classes"]) == ["class_0", "class_1"]
