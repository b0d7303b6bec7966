"""``simtune bench``: the CLI's JSON, the reference-style baseline's equivalence, user errors.

No timing is asserted: only that every variant ran, was timed and is reported.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from simtune.bench import ReferenceStyleMatcher, max_abs_diff
from simtune.bench.timing import interleave, ratio
from simtune.cli import main
from simtune.labels import STUFF_IDS, THING_IDS
from simtune.sim import SimMatcher

VARIANTS = ("source_only", "aa", "aa_sim", "aa_sim_reference")


def test_bench_cli_json_has_every_variant_ratio_and_the_equivalence(capsys: pytest.CaptureFixture[str],
                                                                   tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    threads = torch.get_num_threads()
    # One thread: on a loaded machine, OpenMP workers waiting for each other make small steps crawl.
    code = main(["bench", "--device", "cpu", "--size", "small", "--steps", "2", "--repeats", "1", "--json",
                 "--warmup", "1", "--pseudo-images", "2,3", "--threads", "1", "--out", str(out)])
    assert code == 0
    assert torch.get_num_threads() == threads, "--threads must not outlive the run"
    result = json.loads(capsys.readouterr().out)
    assert json.loads(out.read_text()) == result
    for name in VARIANTS:
        row = result["variants"][name]
        assert row["steps"] == 2 and row["median_ms"] > 0 and row["p10_ms"] <= row["p90_ms"]
    assert "aa_sim_fp32" not in result["variants"]  # bf16 only exists on CUDA
    for name in ("aa_sim / aa (SIM cost)", "aa_sim_reference / aa_sim (reference / ours)"):
        assert result["ratios"][name]["median"] > 0 and len(result["ratios"][name]["per_repeat"]) == 1
    eq = result["equivalence"]
    assert eq["max_loss"] > 0 and eq["max_loss_diff"] <= 1e-5 * eq["max_loss"]
    assert result["matcher_only"]["ours"]["median_ms"] > 0 and result["matcher_only"]["reference"]["median_ms"] > 0
    assert [p["images"] for p in result["pseudo_label"]["passes"]] == [2, 3]
    assert all(p["images_per_s"] > 0 for p in result["pseudo_label"]["passes"])
    env = result["environment"]
    assert env["torch"] == torch.__version__ and env["device"].startswith("CPU")


def blobby_maps(rng: np.random.Generator, n: int, shape: tuple[int, int], classes: list[int]) -> torch.Tensor:
    """(n, h, w) labels: 3x3 blocks of the given classes or 255, plus single-pixel noise."""
    choices = np.asarray(classes + [255])
    coarse = rng.choice(choices, size=(n, shape[0] // 3 + 1, shape[1] // 3 + 1))
    fine = np.kron(coarse, np.ones((1, 3, 3), dtype=np.int64))[:, : shape[0], : shape[1]]
    noise = rng.random(fine.shape) < 0.1
    return torch.from_numpy(np.where(noise, rng.choice(choices, size=fine.shape), fine))


@pytest.mark.parametrize("reduction, skip_until_full", [("sum", False), ("channel_mean", True)])
def test_reference_style_losses_and_gradients_equal_ours(reduction: str, skip_until_full: bool) -> None:
    """The fast path (batched pooling, one sync) against the simple one (a call and a sync per region)."""
    rng = np.random.default_rng(3)
    torch.manual_seed(3)
    # A bank of 2 (instances: 2 x 2) wraps around within a few steps; the classes are a mix of both groups.
    ours = SimMatcher(num_classes=19, stuff_ids=STUFF_IDS, thing_ids=THING_IDS, feature_channels=6, bank_size=2,
                      instances_per_image=2, target_regions_per_class=3, reduction=reduction,  # type: ignore[arg-type]
                      skip_until_full=skip_until_full)
    classes = [0, 2, 8, 11, 13, 18]
    steps = [(torch.randn(1, 6, 14, 20), blobby_maps(rng, 1, (14, 20), classes),
              torch.randn(1, 6, 12, 22), blobby_maps(rng, 1, (12, 22), classes)) for _ in range(6)]
    result = max_abs_diff(ours, steps)
    assert result.steps == 6 and result.regions_per_step > 5
    assert result.max_loss > 1.0, "nothing was matched: the comparison would be vacuous"
    assert result.max_loss_diff <= 1e-5 * result.max_loss
    assert result.max_grad_diff <= 1e-6


def test_reference_style_matcher_syncs_once_per_region_and_class() -> None:
    matcher = ReferenceStyleMatcher(num_classes=19, stuff_ids=STUFF_IDS, thing_ids=THING_IDS, feature_channels=4,
                                    bank_size=3)
    label = torch.full((1, 9, 9), 255)
    label[0, :2, :2] = 11
    label[0, 5:, 5:] = 11  # two person regions
    label[0, 3, :] = 0  # road
    matcher.step(torch.randn(1, 4, 9, 9), label, torch.randn(1, 4, 9, 9, requires_grad=True), label)
    counts = matcher.last
    assert counts.src_regions == counts.trg_regions == 2
    # Per image: a count per stuff class and a mask copy per thing class, for source and target,
    # plus an area per region.
    assert counts.syncs == 2 * (len(STUFF_IDS) + len(THING_IDS)) + 4


def test_interleave_rotates_variants_and_ratio_is_per_repeat() -> None:
    order: list[str] = []

    def step_of(name: str) -> Callable[[int], object]:
        return lambda i: order.append(name)

    steps = {name: step_of(name) for name in ("a", "b", "c")}
    times = interleave(steps, steps=2, repeats=3, warmup=1, device=torch.device("cpu"))
    assert order[:3] == ["a", "b", "c"]  # warm-up
    blocks = order[3:][::2]
    assert blocks == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert all(len(t.blocks) == 3 and all(len(b) == 2 for b in t.blocks) for t in times.values())
    times["a"].blocks, times["b"].blocks = [[2.0, 2.0], [3.0, 3.0]], [[1.0, 1.0], [1.0, 2.0]]
    r = ratio(times["a"], times["b"])
    assert r["per_repeat"] == [2.0, 2.0] and r["median"] == 2.0


def test_cuda_without_cuda_is_a_one_line_user_error(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["bench", "--device", "cuda", "--size", "small", "--steps", "2", "--repeats", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--device cuda" in err[0] and "no CUDA device" in err[0]


@pytest.mark.parametrize("args, message", [(["--steps", "0"], "steps >= 1"), (["--size", "huge"], "--size must"),
                                           (["--clock", "cpu", "--device", "cuda"], "--clock cpu")])
def test_bad_options_exit_2_before_any_compute(args: list[str], message: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", *args]) == 2
    assert message in capsys.readouterr().err
