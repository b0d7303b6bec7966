"""Interval arithmetic, verdict wording and ranking reproducibility on hand-computed numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simtune import stats
from simtune.stats import holm_rejections, margin_p_value, paired_difference, paired_p_value


def test_spread_is_mean_and_sample_std() -> None:
    s = stats.spread([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0])
    assert s.n == 8
    assert s.mean == pytest.approx(5.0)
    assert s.std == pytest.approx(math.sqrt(32.0 / 7.0))  # ddof = 1, not the population 2.0


def test_spread_of_one_value_has_unknown_std() -> None:
    assert stats.spread([3.5]) == stats.Spread(n=1, mean=3.5, std=None)


def test_format_interval_signs_and_drops_unknown_bounds() -> None:
    assert stats.format_interval(22.414, 21.9, 22.951) == "22.41 [21.90, 22.95]"
    assert stats.format_interval(0.41, -0.12, 0.95, signed=True) == "+0.41 [-0.12, +0.95]"
    assert stats.format_interval(0.5, 0.1, None, digits=3) == "0.500"  # one bound unknown: no interval


def test_t_quantiles_match_the_table() -> None:
    assert stats.t_quantile(1) == pytest.approx(12.7062, abs=1e-4)
    assert stats.t_quantile(2) == pytest.approx(4.3027, abs=1e-4)
    assert stats.t_quantile(9) == pytest.approx(2.2622, abs=1e-4)


def test_paired_interval_n3_by_hand() -> None:
    # d = [2, 3, 3]: mean 8/3, sd = sqrt(1/3), se = 1/3, t_{0.975,2} = 4.302653 -> h = 1.434218
    diff = stats.paired_difference([3.0, 5.0, 7.0], [1.0, 2.0, 4.0])
    assert diff.n == 3
    assert diff.mean == pytest.approx(8.0 / 3.0)
    assert diff.half_width == pytest.approx(1.434218, abs=1e-6)
    assert diff.low == pytest.approx(8.0 / 3.0 - 1.434218, abs=1e-6)
    assert diff.beyond_noise is True


def test_paired_interval_n2_is_wide() -> None:
    # d = [1, 3]: mean 2, sd = sqrt(2), se = 1, t_{0.975,1} = 12.7062 -> the interval holds 0
    diff = stats.paired_difference([11.0, 13.0], [10.0, 10.0])
    assert diff.half_width == pytest.approx(12.7062, abs=1e-4)
    assert diff.beyond_noise is False


def test_pairing_removes_the_shared_seed_effect() -> None:
    # Seeds move both configurations by up to 10; the difference is always exactly 1.
    best, runner_up = [21.0, 11.0, 31.0], [20.0, 10.0, 30.0]
    diff = stats.paired_difference(best, runner_up)
    assert diff.mean == pytest.approx(1.0)
    assert diff.half_width == pytest.approx(0.0, abs=1e-12)
    assert diff.beyond_noise is True


def test_identical_configurations_are_within_noise() -> None:
    diff = stats.paired_difference([1.0, 2.0], [1.0, 2.0])
    assert (diff.mean, diff.half_width, diff.beyond_noise) == (0.0, 0.0, False)


def test_single_pair_has_unknown_noise() -> None:
    diff = stats.paired_difference([5.0], [4.0])
    assert diff.half_width is None and diff.low is None and diff.beyond_noise is None


def test_paired_difference_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="equal lengths"):
        stats.paired_difference([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="at least one"):
        stats.paired_difference([], [])
    with pytest.raises(ValueError, match="finite"):
        stats.paired_difference([1.0, float("nan")], [1.0, 2.0])


def test_verdict_lines() -> None:
    beyond = stats.PairedDifference(n=3, mean=1.8, half_width=0.9)
    assert stats.verdict(beyond, digits=1) == (
        "Verdict: best beats runner-up by 1.8 ± 0.9 mIoU (paired, n = 3): beyond noise"
    )
    behind = stats.PairedDifference(n=2, mean=-0.25, half_width=0.1)
    assert "best trails runner-up by 0.25 ± 0.10" in stats.verdict(behind)


def test_verdict_within_noise_names_no_winner() -> None:
    within = stats.PairedDifference(n=10, mean=0.18, half_width=0.2)
    assert stats.verdict(within, first="+ AA + SIM", second="+ AA") == (
        "Verdict: + AA + SIM leads + AA by 0.18 ± 0.20 mIoU (paired, n = 10): within noise"
    )
    behind = stats.verdict(stats.PairedDifference(n=3, mean=-0.4, half_width=0.9))
    assert behind == "Verdict: best is behind runner-up by 0.40 ± 0.90 mIoU (paired, n = 3): within noise"
    level = stats.verdict(stats.PairedDifference(n=2, mean=0.0, half_width=0.0))
    assert level == "Verdict: best and runner-up differ by 0.00 ± 0.00 mIoU (paired, n = 2): within noise"
    for line in (stats.verdict(within), behind, level):
        assert "beats" not in line and "trails" not in line


def test_verdict_with_one_replicate_says_how_to_measure_noise() -> None:
    line = stats.verdict(stats.PairedDifference(n=1, mean=0.55, half_width=None))
    assert line.startswith("Verdict: best leads runner-up by 0.55 mIoU in a single run each")
    assert "noise unknown" in line and "--replicates" in line and "±" not in line


def test_spearman_with_ties() -> None:
    # ranks x = [1, 2.5, 2.5, 4], y = [1, 2, 3, 4]: rho = 4.5 / sqrt(4.5 * 5)
    assert stats.spearman([1.0, 2.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0]) == pytest.approx(
        4.5 / math.sqrt(22.5)
    )
    assert stats.spearman([1.0, 2.0, 3.0], [30.0, 20.0, 10.0]) == pytest.approx(-1.0)
    assert stats.spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) is None


def test_split_half_by_hand() -> None:
    # half means (seeds 0-1 | 2-3): a 1.5 | 3.5, b 2.5 | 1.0, c 2.0 | 5.5
    # ranks a, b, c: [1, 3, 2] and [2, 1, 3]; d = [-1, 2, -1]: rho = 1 - 6 * 6 / 24 = -0.5
    result = stats.split_half(
        {"a": [1.0, 2.0, 3.0, 4.0], "b": [2.0, 3.0, 1.0, 1.0], "c": [3.0, 1.0, 5.0, 6.0]}
    )
    assert (result.rho, result.n_configs, result.half_size) == (pytest.approx(-0.5), 3, 2)
    assert result.reliability == 0.0  # halves that disagree project no reliability
    assert result.resamples == stats.BOOTSTRAP_RESAMPLES
    assert result.low is not None and result.high is not None and -1.0 <= result.low <= result.high <= 1.0
    line = stats.split_half_line(result)
    assert line.startswith(
        f"Ranking reproducibility: Spearman -0.50 [{result.low:.2f}, {result.high:.2f}] between the configuration "
        "rankings from replicates 0-1 and from replicates 2-3 (3 configurations;")
    assert "Spearman-Brown reliability of the ranking from 4 replicates 0.00" in line
    assert f"({stats.BOOTSTRAP_RESAMPLES} resamples within each half)" in line


def test_spearman_brown_projects_the_half_correlation() -> None:
    # 2r / (1 + r): 0.5 -> 2/3, 0.8 -> 1.6 / 1.8; 1 stays 1; r <= 0 gives 0
    assert stats.spearman_brown(0.5) == pytest.approx(2.0 / 3.0)
    assert stats.spearman_brown(0.8) == pytest.approx(1.6 / 1.8)
    assert stats.spearman_brown(1.0) == 1.0
    assert stats.spearman_brown(-0.3) == 0.0


def test_split_half_bootstrap_is_deterministic_and_brackets_rho() -> None:
    # 8 configurations, 6 seeds: a clear ordering (0 .. 3.5) under noise of sd 0.5.
    rng = np.random.default_rng(7)
    values = np.arange(8)[:, None] * 0.5 + 0.5 * rng.standard_normal((8, 6))
    table = {f"c{i}": list(row) for i, row in enumerate(values)}
    first, again = stats.split_half(table), stats.split_half(table)
    assert first == again  # fixed RNG seed: same table, same interval
    assert first.half_size == 3 and first.rho is not None and first.low is not None and first.high is not None
    assert first.low <= first.rho <= first.high
    assert first.reliability == pytest.approx(2 * first.rho / (1 + first.rho))
    assert first.reliability_low == pytest.approx(stats.spearman_brown(first.low))
    assert "Spearman-Brown reliability of the ranking from 6 replicates" in stats.split_half_line(first)


def test_split_half_odd_k_and_missing_replicates() -> None:
    # K = 3: seeds 0 | 1, seed 2 unused; c lacks seed 1 and is left out.
    result = stats.split_half({"a": [1.0, 2.0, 99.0], "b": [2.0, 3.0, -99.0], "c": [5.0, None, 1.0]})
    assert (result.half_size, result.n_configs) == (1, 2)
    assert result.rho == pytest.approx(1.0) and result.reliability == pytest.approx(1.0)
    assert (result.low, result.high, result.resamples) == (None, None, 0)  # one seed per half: no bootstrap
    assert stats.split_half_line(result).endswith(
        "no bootstrap interval with one replicate per half (K >= 4 gives one)")


def test_split_half_needs_two_replicates() -> None:
    result = stats.split_half({"a": [1.0], "b": [2.0]})
    assert result == stats.SplitHalf(rho=None, n_configs=0, half_size=0)
    assert "unknown with a single replicate" in stats.split_half_line(result)
    tied = stats.split_half({"a": [1.0, 2.0], "b": [1.0, 3.0]})  # seed 0 ranks a and b equal
    assert (tied.rho, tied.n_configs) == (None, 2)
    assert stats.split_half_line(tied).endswith("one half of the replicates ranks all configurations equal")


def test_paired_p_value_matches_the_interval_and_holm_steps_down() -> None:
    a, b = [30.1, 31.0, 29.5, 30.7], [29.0, 30.2, 29.1, 29.6]
    p = paired_p_value(a, b)
    assert p is not None and (p < 0.05) == paired_difference(a, b).beyond_noise
    assert paired_p_value([1.0], [0.0]) is None
    assert paired_p_value([1.0, 2.0], [0.0, 1.0]) == 0.0  # a constant non-zero difference
    # Holm at 0.05 over 3: 0.01 < 0.05/3, 0.02 < 0.05/2, 0.04 < 0.05/1 -> all rejected; stops at the first miss.
    assert holm_rejections([0.04, 0.01, 0.02]) == [True, True, True]
    assert holm_rejections([0.01, 0.03, 0.2]) == [True, False, False]
    assert holm_rejections([]) == []


# ----------------------------------------------------------------------------- do the configurations differ?


def _sweeps(rng: np.random.Generator, draws: int, k: int, shift: float = 0.0) -> np.ndarray:
    """(draws, k seeds, 9 configurations) like real paired seeds: a per-seed effect every configuration
    shares (sd 2) plus independent noise (sd 1); configuration 0 is ``shift`` noise-sds better."""
    values = 2.0 * rng.standard_normal((draws, k, 1)) + rng.standard_normal((draws, k, 9))
    values[:, :, 0] += shift
    return values


def _surface_rate(sweeps: np.ndarray) -> float:
    """How often the surface test says "beyond noise" over the simulated sweeps."""
    calls = [stats.surface_test({f"c{j}": list(sweep[:, j]) for j in range(sweep.shape[1])}) for sweep in sweeps]
    return float(np.mean([result.beyond_noise is True for result in calls]))


def _extremes_rate(sweeps: np.ndarray) -> float:
    """The rule the surface test replaced: best against worst configuration mean, paired t-interval."""
    hits = []
    for sweep in sweeps:
        order = np.argsort(sweep.mean(axis=0))
        hits.append(paired_difference(list(sweep[:, order[-1]]), list(sweep[:, order[0]])).beyond_noise is True)
    return float(np.mean(hits))


@pytest.mark.parametrize("k", [2, 3, 5])
def test_surface_test_rarely_calls_identical_configurations_different(k: int) -> None:
    sweeps = _sweeps(np.random.default_rng(100 + k), 1000, k)
    # The test is at the 5% level. A true rate of 5% measured on 1,000 sweeps has a Monte-Carlo sd of
    # sqrt(0.05 * 0.95 / 1000) = 0.0069, so 0.065 is about 2.2 sd of slack above 0.05.
    assert _surface_rate(sweeps) <= 0.065
    # Best against worst, on the same sweeps, is fooled by picking the extremes.
    assert _extremes_rate(sweeps) > 0.10


def test_surface_test_finds_one_clearly_better_configuration() -> None:
    sweeps = _sweeps(np.random.default_rng(200), 1000, 5, shift=3.0)
    assert _surface_rate(sweeps) >= 0.5  # most of the time at K = 5 (Friedman: about 0.7)


def test_surface_line_wording_and_two_configurations() -> None:
    # Two configurations: the paired t-test. d = [1, 1.5, 2]: mean 1.5, sd 0.5, t = 1.5 / (0.5 / sqrt 3)
    two = stats.surface_test({"a": [11.0, 21.5, 32.0], "b": [10.0, 20.0, 30.0]})
    assert (two.test, two.n_configs, two.n_seeds) == ("paired t", 2, 3)
    assert two.statistic == pytest.approx(1.5 / (0.5 / math.sqrt(3.0)))
    assert two.p_value == paired_p_value([11.0, 21.5, 32.0], [10.0, 20.0, 30.0])
    assert stats.surface_line(two).startswith(
        "the configurations differ beyond seed noise (paired t = 5.20, p = 0.035;")
    # Friedman; b lacks seed 1 and is left out rather than dropping seed 1 for all.
    table = {"a": [1.0, 2.0, 3.0], "b": [2.0, None, 1.0], "c": [3.0, 1.0, 2.0], "d": [0.0, 3.0, 2.5]}
    result = stats.surface_test(table)
    assert (result.test, result.n_configs, result.n_seeds) == ("Friedman", 3, 3)
    assert result.left_out == ("b",)  # named, so a report can say what it left out
    assert stats.surface_line(result).startswith("no configuration differs beyond seed noise (Friedman chi2 = ")
    # Two seeds of three configurations can never reach p < 0.05, and the line says so.
    tiny = stats.surface_test({"a": [1.0, 2.0], "b": [2.0, 3.0], "c": [3.0, 4.0]})
    assert tiny.p_value == pytest.approx(math.exp(-2.0)) and tiny.min_p == pytest.approx(math.exp(-2.0))
    assert "cannot reach p < 0.05 whatever the results" in stats.surface_line(tiny)
    assert stats.surface_test({"a": [1.0], "b": [2.0], "c": [3.0]}).beyond_noise is None


def test_margin_p_value_is_the_paired_test_at_zero_and_shrinks_as_the_margin_grows() -> None:
    """Against "b beats a by the margin or more": at margin 0 (a ahead) the two-sided paired
    p-value; a larger margin is easier to rule out, so p falls."""
    rng = np.random.default_rng(2)
    a = list(30.0 + rng.normal(0.0, 1.0, 6))
    b = [x - 0.3 + e for x, e in zip(a, rng.normal(0.0, 0.4, 6))]
    assert margin_p_value(a, b) == pytest.approx(paired_p_value(a, b))
    ps = [margin_p_value(a, b, m) for m in (0.0, 0.5, 1.0, 2.0)]
    assert all(p is not None for p in ps) and ps == sorted(ps, reverse=True) and ps[-1] < 0.01
    assert margin_p_value(a, a, 0.5) == 0.0 and margin_p_value(a, a) == 1.0  # identical: no gain possible


# ----------------------------------------------------------------------------- seed-adjusted estimates


def _additive_table(rng: np.random.Generator, means: dict[str, float], seeds: int) -> dict[str, dict[int, float]]:
    effects = rng.normal(0.0, 2.0, seeds)
    return {c: {s: m + effects[s] + rng.normal(0.0, 0.5) for s in range(seeds)} for c, m in means.items()}


def test_on_a_complete_table_the_estimate_is_the_raw_mean() -> None:
    table = _additive_table(np.random.default_rng(1), {"a": 20.0, "b": 21.0, "c": 22.0}, 6)
    fit = stats.fit_additive(table)
    for c, by_seed in table.items():
        assert fit.estimates[c].value == pytest.approx(np.mean(list(by_seed.values())))
        assert fit.estimates[c].adjusted and fit.estimates[c].n == 6
    assert fit.df == 18 - 3 - 6 + 1 and sum(fit.seed_effects.values()) == pytest.approx(0.0, abs=1e-9)
    # equal designs, equal errors: sigma * sqrt(1/S) for a complete table
    assert fit.estimates["a"].se == pytest.approx(fit.residual_sd / math.sqrt(6))


def test_a_configuration_on_lucky_seeds_is_not_ranked_above_a_better_one() -> None:
    """Seed 0 and 1 are 4 points better for everyone: a worse configuration that ran only them has the
    higher raw mean, but not the higher seed-adjusted estimate."""
    effects = [4.0, 4.0, -1.0, -1.0, -2.0, -4.0]
    good = {s: 22.0 + e + 0.1 * (-1) ** s for s, e in enumerate(effects)}
    other = {s: 21.5 + e - 0.1 * (-1) ** s for s, e in enumerate(effects)}
    lucky = {s: 21.0 + effects[s] for s in (0, 1)}  # 1 point worse than good, 2 seeds
    fit = stats.fit_additive({"good": good, "other": other, "lucky": lucky})
    assert np.mean(list(lucky.values())) > np.mean(list(good.values()))  # raw means mislead
    assert fit.estimates["lucky"].value < fit.estimates["good"].value
    assert fit.estimates["good"].value - fit.estimates["lucky"].value == pytest.approx(1.0, abs=0.15)
    assert fit.estimates["lucky"].se > fit.estimates["good"].se  # two seeds know less than six


def test_unknown_noise_and_disconnected_configurations() -> None:
    one_seed = stats.fit_additive({"a": {0: 1.0}, "b": {0: 2.0}})
    assert one_seed.df == 0 and one_seed.estimates["a"].se is None and one_seed.residual_sd is None
    apart = stats.fit_additive({"a": {0: 1.0, 1: 3.0}, "b": {0: 2.0, 1: 3.0}, "c": {7: 9.0}, "d": {}})
    assert not apart.estimates["c"].adjusted and apart.estimates["c"].value == 9.0  # no shared seed
    assert "d" not in apart.estimates and apart.estimates["a"].adjusted


# ----------------------------------------------------------------------------- sweep estimate vs confirmation


def test_unpaired_difference_is_welchs_interval() -> None:
    from scipy import stats as scipy_stats

    a, b = [24.1, 25.3, 23.9], [22.0, 23.5, 22.8, 23.9]
    diff = stats.unpaired_difference(stats.spread(a), stats.spread(b))
    low, high = scipy_stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (diff.low, diff.high) == (pytest.approx(low), pytest.approx(high))
    assert stats.unpaired_difference(stats.spread([1.0]), stats.spread(b)).half_width is None


def test_a_shortfall_is_called_beyond_noise_rarely_when_there_is_none() -> None:
    """A configuration that was not selected, K = 3 sweep seeds against 3 fresh ones (seed sd 2.06,
    residual 0.79 as on the recorded grid): "lower beyond noise" is a one-sided 2.5% error. 4,000 draws
    have a Monte-Carlo sd of 0.25 points, so 3.5% is 4 sd of slack; the unqualified "any shortfall"
    rule the line replaced fires about half of the time."""
    rng = np.random.default_rng(7)
    sd = math.hypot(2.06, 0.79)
    draws = [(rng.normal(22.0, sd, 3), rng.normal(22.0, sd, 3)) for _ in range(4000)]
    called = [stats.unpaired_difference(stats.spread(list(s)), stats.spread(list(f))) for s, f in draws]
    assert np.mean([d.beyond_noise is True and d.mean > 0 for d in called]) <= 0.035
    assert np.mean([d.mean > 0 for d in called]) > 0.45


def test_bootstrap_helpers_agree_with_the_scalar_statistics() -> None:
    x = np.array([[1.0, 1.0], [2.0, 1.0], [2.0, 1.0], [3.0, 1.0]])  # column 1 ranks every item equal
    y = np.array([[1.0, 4.0], [2.0, 3.0], [3.0, 2.0], [4.0, 1.0]])
    rho = stats.spearman_columns(x, y)
    assert rho[0] == pytest.approx(stats.spearman(list(x[:, 0]), list(y[:, 0]))) and math.isnan(rho[1])
    assert stats.percentile_interval(np.array([np.nan, 0.3])) is None  # one defined resample: no interval
    assert stats.percentile_interval(np.linspace(0.0, 1.0, 401)) == pytest.approx((0.025, 0.975))
    weights = stats.seed_weights(3, resamples=50)
    assert weights.shape == (51, 3) and (weights[0] == 1).all() and (weights.sum(axis=1) == 3).all()
    assert stats.seed_weights(1).shape == (1, 1)  # one seed: the point value only
