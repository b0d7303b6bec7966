"""Label-free validators on inputs whose answer is known."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from simtune.selection import dev
from simtune.selection.compute import compute_validators, load_subset
from simtune.selection.validators import (
    entropy_score,
    im_score,
    mix_images,
    mix_partners,
    mixval_scores,
    snd_score,
)

K = 5


def one_hot(classes: list[int], k: int = K) -> torch.Tensor:
    return F.one_hot(torch.tensor(classes), k).double()


def test_entropy_is_zero_for_one_hot_and_minus_log_k_for_uniform() -> None:
    assert entropy_score(one_hot([0, 3, 1])) == pytest.approx(0.0)
    assert entropy_score(torch.full((4, K), 1.0 / K)) == pytest.approx(-math.log(K))
    confident = torch.tensor([[0.9, 0.1 / 4, 0.1 / 4, 0.1 / 4, 0.1 / 4]])
    assert -math.log(K) < entropy_score(confident) < 0.0


def test_im_rewards_confident_and_diverse_predictions() -> None:
    assert im_score(one_hot(list(range(K)))) == pytest.approx(math.log(K))  # one pixel per class
    assert im_score(one_hot([2] * K)) == pytest.approx(0.0)  # confident but collapsed on one class
    assert im_score(torch.full((K, K), 1.0 / K)) == pytest.approx(0.0)  # diverse but unsure
    assert im_score(one_hot([0, 1])) == pytest.approx(math.log(2))


def two_clusters(m: int, noise: float, seed: int = 0) -> torch.Tensor:
    """(1, 2m, K) probabilities: m pixels near class 0, m near class 1."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.cat([one_hot([0] * m), one_hot([1] * m)]) * 8.0
    return (logits + noise * torch.randn(logits.shape, generator=g, dtype=torch.float64)).softmax(-1)[None]


def test_snd_of_two_identical_clusters_has_a_closed_form() -> None:
    m, tau = 6, 0.05
    probs = torch.cat([one_hot([0] * m), one_hot([1] * m)])[None]  # cos = 1 within, 0 across
    # Each row: m - 1 neighbours at exp(1 / tau), m at exp(0).
    z = (m - 1) * math.exp(1 / tau) + m
    p_in, p_out = math.exp(1 / tau) / z, 1.0 / z
    expected = -((m - 1) * p_in * math.log(p_in) + m * p_out * math.log(p_out))
    assert snd_score(probs, tau) == pytest.approx(expected, rel=1e-9)


def test_snd_prefers_tight_clusters_to_mixed_ones() -> None:
    tight = snd_score(two_clusters(16, noise=0.05))
    g = torch.Generator().manual_seed(1)
    mixed = torch.randn((1, 32, K), generator=g, dtype=torch.float64).mul(2.0).softmax(-1)
    assert tight > snd_score(mixed) + 0.5
    assert tight > snd_score(two_clusters(16, noise=3.0))


def test_snd_needs_two_pixels() -> None:
    with pytest.raises(ValueError, match="P >= 2"):
        snd_score(torch.ones(1, 1, K))


def test_mix_partners_never_pair_an_image_with_itself() -> None:
    for count in (2, 3, 4, 7, 16):
        partners = mix_partners(count)
        assert bool((partners != torch.arange(count)).all())
        assert sorted(partners.tolist()) == list(range(count))
    images = torch.stack([torch.zeros(3, 2, 2), torch.ones(3, 2, 2)])
    mixed = mix_images(images, mix_partners(2), lam=0.55)
    assert torch.allclose(mixed[0], torch.full((3, 2, 2), 0.45))
    assert torch.allclose(mixed[1], torch.full((3, 2, 2), 0.55))


def test_mixval_is_one_for_a_consistent_model_and_lower_for_an_inconsistent_one() -> None:
    pseudo = torch.tensor([0, 0, 1, 2, 3, 3])
    partner = torch.tensor([0, 1, 1, 0, 2, 3])  # pixels 0, 2, 5 intra; 1, 3, 4 inter
    consistent = mixval_scores(pseudo.clone(), pseudo, partner)
    assert consistent == {"mixval_intra": 1.0, "mixval_inter": 1.0, "mixval": 1.0}
    follows_minor = mixval_scores(partner.clone(), pseudo, partner)  # predicts the 45% image
    assert follows_minor["mixval_intra"] == 1.0 and follows_minor["mixval_inter"] == 0.0
    assert follows_minor["mixval"] == 0.5
    only_intra = mixval_scores(pseudo.clone(), pseudo, pseudo.clone())
    assert math.isnan(only_intra["mixval_inter"]) and only_intra["mixval"] == 1.0


def test_dev_risk_is_exact_for_a_constant_loss_and_the_mean_for_equal_weights() -> None:
    g = torch.Generator().manual_seed(0)
    weights = torch.rand(50, generator=g, dtype=torch.float64) * 5
    assert dev.dev_risk(torch.full((50,), 0.7), weights) == pytest.approx(0.7)  # control variate cancels w
    losses = torch.rand(50, generator=g, dtype=torch.float64)
    assert dev.dev_risk(losses, torch.ones(50)) == pytest.approx(float(losses.mean()))
    assert math.isnan(dev.dev_risk(torch.ones(1), torch.ones(1)))


def test_domain_classifier_recovers_a_known_density_ratio() -> None:
    # source N(0, 1), target N(1, 1) in 1-D: log p_t(x) / p_s(x) = x - 0.5.
    g = torch.Generator().manual_seed(0)
    src = torch.randn(4000, 1, generator=g, dtype=torch.float64)
    trg = torch.randn(4000, 1, generator=g, dtype=torch.float64) + 1.0
    classifier = dev.fit_domain_classifier(src, trg, l2=0.0)
    x = torch.tensor([[-1.0], [0.5], [2.0]], dtype=torch.float64)
    log_ratio = dev.density_ratio(dev.target_probability(x, classifier)).log()
    assert torch.allclose(log_ratio, x[:, 0] - 0.5, atol=0.15)


# ----------------------------------------------------------------------------- on a model


@dataclass
class Out:
    features: torch.Tensor
    logits: torch.Tensor


def linear_model(scale: float):  # type: ignore[no-untyped-def]
    """Per-pixel logits = scale * (the image's channels, padded to K): a model linear in its input."""

    def predict(image: torch.Tensor) -> Out:
        logits = F.pad(image, (0, 0, 0, 0, 0, K - 3)) * scale
        return Out(features=image, logits=logits)

    return predict


def blocky_images(count: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """Images whose pixels are one-hot over the 3 channels, 4x4 blocks: one class a block."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for _ in range(count):
        classes = torch.randint(0, 3, (2, 3), generator=g).repeat_interleave(4, 0).repeat_interleave(4, 1)
        items.append({"image": F.one_hot(classes, 3).permute(2, 0, 1).double() * 10,
                      "label": classes})
    return items


def test_validators_on_a_model_with_known_behaviour() -> None:
    target = [{"image": item["image"]} for item in blocky_images(6, seed=0)]  # no labels
    subset = load_subset(target, images=4, pixels=8, seed=0)
    sharp = compute_validators(linear_model(10.0), subset)
    assert sharp["mixval"] == pytest.approx(1.0)  # linear: the 55% image's class always wins
    assert sharp["entropy"] > -1e-3 and sharp["im"] > 0.5
    soft = compute_validators(linear_model(0.01), subset)
    assert soft["entropy"] < sharp["entropy"] and soft["im"] < sharp["im"]
    assert "dev" not in sharp


def test_subset_is_fixed_by_its_seed_and_dev_runs_on_labelled_source() -> None:
    target = [{"image": item["image"]} for item in blocky_images(10, seed=1)]
    a = load_subset(target, images=4, pixels=8, seed=3)
    b = load_subset(target, images=4, pixels=8, seed=3)
    c = load_subset(target, images=4, pixels=8, seed=4)
    assert torch.equal(a.images, b.images) and torch.equal(a.pixels, b.pixels)
    assert not (torch.equal(a.images, c.images) and torch.equal(a.pixels, c.pixels))
    with_dev = load_subset(target, images=4, pixels=8, seed=3, source=blocky_images(6, seed=2), source_images=4)
    scores = compute_validators(linear_model(1.0), with_dev)
    assert math.isfinite(scores["dev"])
    assert compute_validators(linear_model(1.0), with_dev) == scores  # deterministic


# ----------------------------------------------------------------------------- trust table


def sweep_records() -> dict[str, list[dict[str, float]]]:
    """4 trials x 2 evaluations; select/good tracks report/miou, select/bad is its mirror."""
    trials = {}
    for t, (val, report) in enumerate([(10.0, 12.0), (14.0, 11.0), (12.0, 15.0), (9.0, 8.0)]):
        evals = []
        for drop in (3.0, 0.0):  # the evaluations at steps 300 and 600
            r = report - drop
            evals.append({"val/miou": val - drop, "report/miou": r, "select/good": r / 10, "select/bad": -r})
        trials[f"t{t}"] = evals
    return trials


def test_trust_table_correlations_and_regret_have_known_values() -> None:
    from simtune.selection.trust import markdown, trust_table

    rows = {row.metric: row for row in trust_table(sweep_records())}
    assert list(rows) == ["val/miou", "select/bad", "select/good"]
    good, bad = rows["select/good"], rows["select/bad"]
    assert good.trials == 4 and good.evaluations == 8
    assert good.spearman == pytest.approx(1.0) and good.kendall == pytest.approx(1.0)
    assert bad.spearman == pytest.approx(-1.0) and bad.kendall == pytest.approx(-1.0)
    # The oracle (val/miou) picks trial 1 (report 11); select/good picks trial 2 (15); bad picks trial 3 (8).
    assert good.regret == pytest.approx(11.0 - 15.0)
    assert bad.regret == pytest.approx(11.0 - 8.0)
    assert rows["val/miou"].regret == 0.0
    # Within a trial the later evaluation is better on every metric but select/bad.
    assert good.regret_within == pytest.approx(0.0) and bad.regret_within == pytest.approx(3.0)
    table = markdown(list(rows.values()))
    assert "val/miou (oracle, uses val labels)" in table and "| select/bad | 4 | -1.00 | -1.00 | +3.00 |" in table


def test_trust_row_without_spread_has_no_correlation() -> None:
    from simtune.selection.trust import trust_row

    flat = {"a": [{"val/miou": 1.0, "report/miou": 2.0, "select/x": 0.5}],
            "b": [{"val/miou": 2.0, "report/miou": 3.0, "select/x": 0.5}]}
    row = trust_row(flat, "select/x")
    assert row.spearman is None and row.kendall is None and row.regret_within is None


def test_a_sweep_selected_by_a_validator_ranks_reports_and_retrains_by_it(tmp_path: Path) -> None:
    """Hand-written sweep folder: the ranking rule, ``report`` and ``retrain --best`` read its metric."""
    import json

    from simtune import config
    from simtune.rundir import RunDir, write_config
    from simtune.workflows.report import build_report
    from simtune.results.summary import Summary, write_summary
    from simtune.results.trials import load_trials, rank_trials, selection_rule

    sweep = tmp_path / "sweeps" / "s"
    for trial, (val, entropy) in {"a": (30.0, -0.9), "b": (20.0, -0.5), "c": (25.0, -0.7)}.items():
        run = sweep / "runs" / trial
        (run / "stage1").mkdir(parents=True)
        write_config(config.build({"stage1": {"lambda_ci": {"a": 0.01, "b": 0.1, "c": 1.0}[trial]}}),
                     run / "config.yaml")
        history = [{"step": step, "val/miou": val - d, "report/miou": val - d + 1, "select/entropy": entropy - d / 10,
                    "select/im": 1.0 - d / 10, "iteration": float(step)} for step, d in ((10, 2.0), (20, 0.0))]
        RunDir(run).history_file("stage1").write_text(json.dumps(history))
        (run / "results.json").write_text(json.dumps({"stages": {"stage1": history[-1]}}))
    write_summary(sweep, Summary.empty(sweep, metric="select/entropy", mode="max"))  # as a sweep writes it
    write_config(config.build({}), sweep / "base_config.yaml")  # default stage1.lambda_ci 0.01: trial a
    assert selection_rule(sweep) == ("select/entropy", "max")
    assert [t.trial_id for t in rank_trials(load_trials(sweep), *selection_rule(sweep))] == ["b", "c", "a"]
    report = build_report(sweep, tracking_uri=f"sqlite:///{tmp_path}/none.db")
    assert report.best is not None and report.best.trial_id == "b"
    summary = (sweep / "report" / "summary.md").read_text()
    assert "ranked by `select/entropy`" in summary and "val/miou (oracle)" in summary
    # The oracle picks a (report 31), which is also the default; select/entropy picks b (report 21).
    row = next(line for line in summary.splitlines() if line.startswith("| select/entropy | λ_ci=0.1 |"))
    assert "| 21.00 | 31.00 (λ_ci=0.01) | 31.00 (λ_ci=0.01) | -10.00 | -10.00 | - | noise unknown" in row
    assert (sweep / "report" / "trust.md").read_text().count("| select/im |") == 2


# ----------------------------------------------------------------------------- the study with seed intervals


def paired_grid(seeds: int = 6, default: str | None = "c1") -> dict[tuple[str, int], list[dict[str, float]]]:
    """Configurations c0..c3 x seeds, two evaluations per run; config c has report 20 + c plus a seed effect
    shared by every configuration (paired), so differences between configurations are noise-free.

    select/good = report (tracks it); select/flip = -report (prefers the worst); select/late prefers the first
    evaluation, which is 1 point worse than the last."""
    runs = {}
    for c in range(4):
        for s in range(seeds):
            report = 20.0 + c + 0.7 * s
            val = report + 0.1
            first = {"val/miou": val - 1, "report/miou": report - 1, "select/good": report - 1,
                     "select/flip": -(report - 1), "select/late": 1.0}
            last = {"val/miou": val, "report/miou": report, "select/good": report, "select/flip": -report,
                    "select/late": 0.0}
            runs[(f"c{c}", s)] = [first, last]
    return runs


def test_study_point_values_are_the_textbook_statistics_on_configuration_means() -> None:
    import numpy as np
    from scipy import stats as scipy_stats

    from simtune.selection.study import make_grid, study_row
    from simtune.stats import seed_weights

    rng = np.random.default_rng(3)
    runs = {(f"c{c}", s): [{"val/miou": float(rng.normal(20 + c)), "report/miou": float(rng.normal(20 + c)),
                            "select/x": float(rng.normal(c % 3))}] for c in range(5) for s in range(4)}
    grid = make_grid(runs, "c2")
    row = study_row(grid, "select/x", seed_weights(4, 200))
    assert row is not None
    mean = {m: [np.mean([runs[(c, s)][-1][m] for s in range(4)]) for c in grid.configs]
            for m in ("select/x", "report/miou", "val/miou")}
    assert row.spearman.value == pytest.approx(scipy_stats.spearmanr(mean["select/x"], mean["report/miou"])[0])
    assert row.kendall.value == pytest.approx(scipy_stats.kendalltau(mean["select/x"], mean["report/miou"])[0])
    pick, oracle = int(np.argmax(mean["select/x"])), int(np.argmax(mean["val/miou"]))
    assert row.pick == f"c{pick}"
    assert row.pick_report.value == pytest.approx(mean["report/miou"][pick])
    assert row.vs_oracle.value == pytest.approx(mean["report/miou"][pick] - mean["report/miou"][oracle])
    assert row.vs_default.value == pytest.approx(mean["report/miou"][pick] - mean["report/miou"][2])
    assert row.spearman_within.value is None and row.runs_within == 0  # one evaluation per run


def test_study_verdicts_follow_the_paired_interval_of_pick_minus_default() -> None:
    from simtune.selection.study import make_grid, study_row, verdict
    from simtune.stats import seed_weights

    grid = make_grid(paired_grid(), "c1")
    weights = seed_weights(len(grid.seeds), 500)
    good, flip = study_row(grid, "select/good", weights), study_row(grid, "select/flip", weights)
    assert good is not None and flip is not None
    assert good.pick == "c3" and flip.pick == "c0"
    # Paired seeds: c3 - c1 is exactly +2 in every resample, c0 - c1 exactly -1.
    assert (good.vs_default.value, good.vs_default.low, good.vs_default.high) == pytest.approx((2.0, 2.0, 2.0))
    assert verdict(good) == "beats the no-selection baseline beyond noise"
    assert flip.vs_default.high == pytest.approx(-1.0) and verdict(flip).startswith("worse than")
    assert good.spearman.low == pytest.approx(1.0) and flip.spearman.high == pytest.approx(-1.0)
    assert good.vs_oracle.value == pytest.approx(0.0)
    # Within runs: select/late always picks the first evaluation, 1 point below the last one.
    late = study_row(grid, "select/late", weights)
    assert late is not None and late.runs_within == 4 * 6
    assert late.within_vs_last.value == pytest.approx(-1.0) and late.within_vs_oracle.high == pytest.approx(-1.0)
    assert good.within_vs_last.value == pytest.approx(0.0) and good.spearman_within.value == pytest.approx(1.0)


def test_study_with_one_seed_has_no_interval_and_no_verdict() -> None:
    from simtune.selection.study import make_grid, study_row, verdict
    from simtune.stats import seed_weights

    grid = make_grid(paired_grid(seeds=1), "c1")
    row = study_row(grid, "select/good", seed_weights(1))
    assert row is not None and row.vs_default.value == pytest.approx(2.0) and row.vs_default.low is None
    assert verdict(row).startswith("noise unknown")


def test_grid_pairs_seeds_and_rejects_what_cannot_be_paired() -> None:
    from simtune.selection.study import make_grid

    runs = paired_grid(seeds=3)
    del runs[("c2", 0)]
    assert make_grid(runs).seeds == (1, 2)  # seed 0 is not shared by every configuration
    with pytest.raises(ValueError, match="default configuration"):
        make_grid(runs, "c9")
    with pytest.raises(ValueError, match="no seed is shared"):
        make_grid({("a", 0): [{}], ("b", 1): [{}]})


def test_consensus_is_built_from_validators_that_beat_the_default_on_the_selection_split() -> None:
    from simtune.selection.study import CONSENSUS, make_grid
    from simtune.selection.study_table import markdown, run_study

    runs = paired_grid()
    for evaluations in runs.values():
        for e in evaluations:
            e["select/also_good"] = 2 * e["val/miou"]
    study = run_study(make_grid(runs, "c1"), resamples=300)
    assert study.members == ["select/also_good", "select/good"]
    consensus = study.rows[-1]
    assert consensus.metric == CONSENSUS and consensus.pick == "c3"
    table = markdown(study)
    assert "consensus (mean rank of select/also_good, select/good)" in table
    assert "| select/flip | c0 |" in table and "worse than the no-selection baseline beyond noise" in table
    alone = run_study(make_grid(paired_grid(), "c1"), ["select/flip"], resamples=300)
    assert alone.members == [] and "none qualifies" in markdown(alone)


def test_selection_study_script_reads_a_recorded_grid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import csv
    import importlib.util

    spec = importlib.util.spec_from_file_location("selection_study", Path(__file__).parents[1] / "scripts"
                                                  / "selection_study.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    with open(tmp_path / "g.evals.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["lambda_ci", "seed", "step", "val/miou", "report/miou", "select/im"])
        for lam, base in ((0.0, 20.0), (0.01, 21.0), (0.1, 22.0)):
            for seed in range(3):
                for step in (300, 150):  # out of order: the script sorts by step
                    writer.writerow([lam, seed, step, base + seed + step / 300, base + seed + step / 300, -base])
    assert script.main([str(tmp_path / "g"), "--resamples", "200"]) == 0
    out = capsys.readouterr().out
    assert "default (no selection) = lambda_ci=0.01" in out
    assert "| select/im | lambda_ci=0 (aa) | 22.00 [" in out  # mean over seeds 0-2 of 20 + seed + 1
    assert script.main([str(tmp_path / "g"), "--resamples", "200", "--joint"]) == 0
    joint = capsys.readouterr().out
    assert "default (no selection) = lambda_ci=0.01@300" in joint and "| select/im | lambda_ci=0 (aa)@150 |" in joint
    assert script.main([str(tmp_path / "missing")]) == 2
    assert "missing.evals.csv: no such file" in capsys.readouterr().err


def test_a_pick_is_scored_on_seeds_it_was_not_picked_on() -> None:
    """Configuration x is lucky on seed 0 only (val and report alike): picked and scored on all seeds
    it looks +0.25 better than the default; cross-fitted, its luck cannot follow it and it is worse."""
    from simtune.selection.study import make_grid, study_row
    from simtune.stats import seed_weights

    lucky = [4.0, -1.0, -1.0, -1.0]
    runs = {(c, s): [{"val/miou": 20.0 + v, "report/miou": 20.0 + v, "select/x": v}]
            for c, values in {"d": [0.0] * 4, "x": lucky}.items() for s, v in enumerate(values)}
    row = study_row(make_grid(runs, default="d"), "select/x", seed_weights(4, resamples=50))
    assert row is not None and row.pick == "x" and row.vs_default.value == pytest.approx(0.25)
    assert row.vs_default_crossfit.value is not None and row.vs_default_crossfit.value < -0.3  # about -0.5
