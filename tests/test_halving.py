"""ASHA over configurations (``simtune.search.halving``), the rule alone: no Ray, no training.

Rungs at 2 and 4 below max_t = 8 (grace period 2, reduction factor 2) unless a test says
otherwise; at reduction factor 2 a configuration is kept at a rung when its mean is not
below the median of the means recorded there before it.
"""

from __future__ import annotations

import json
import math

import pytest

from simtune.search.halving import ConfigHalving, Stop, milestones, quantile, record, recorded_cuts


def halving(replicates: int, mode: str = "max", **rungs: float) -> ConfigHalving:
    args = {"grace_period": 2, "max_t": 8, "reduction_factor": 2, **rungs}
    return ConfigHalving(replicates=replicates, mode=mode, **args)


def test_rungs_sit_below_max_t_as_in_ray_asha() -> None:
    assert milestones(2, 8, 2) == (2, 4)
    assert milestones(1, 9, 3) == (1, 3)
    assert milestones(2, 6, 4) == (2,)
    assert milestones(1, 10, 1.5)[:3] == (1, 1.5, 2.25)
    assert halving(2).milestones == (2, 4)


def test_a_configuration_is_stopped_as_a_whole_on_its_mean_over_all_seeds() -> None:
    rule = halving(2)
    assert [rule.report("A", k, 2, v) for k, v in enumerate([10.0, 12.0])] == ["continue", "continue"]
    # C's seed 0 beats both of A's seeds, but its mean over the same two seeds is below A's:
    # judged per seed, seed 0 would go on; judged as a configuration, both stop.
    assert rule.report("C", 0, 2, 20.0) == "continue"
    assert rule.report("C", 1, 2, 0.0) == "stop"
    assert rule.stop("C") == Stop(2, "cut", {0: 20.0, 1: 0.0})
    assert rule.report("C", 0, 3, 25.0) == "stop"  # its other replicate stops at its next report
    assert rule.stop("A") is None and rule.report("A", 0, 3, 11.0) == "continue"


def test_no_decision_before_every_replicate_reached_the_rung() -> None:
    rule = halving(3)
    for k in range(3):
        rule.report("A", k, 2, 50.0)
    # B's first two seeds are far below A, but its third has not reached the rung yet.
    for iteration in (2, 3):
        assert [rule.report("B", k, iteration, 1.0) for k in (0, 1)] == ["continue", "continue"]
    assert rule.stop("B") is None and rule.cutoff(0) == 50.0
    assert rule.report("B", 2, 2, 1.0) == "stop"  # the third seed arrives: B is cut at rung 2
    assert rule.stop("B") == Stop(2, "cut", {0: 1.0, 1: 1.0, 2: 1.0})
    assert rule.report("B", 0, 4, 99.0) == "stop"


def test_a_report_past_several_rungs_records_it_at_each_and_decides_them_in_order() -> None:
    rule = halving(1)
    assert rule.report("A", 0, 2, 10.0) == "continue" and rule.report("A", 0, 4, 14.0) == "continue"
    assert rule.report("B", 0, 5, 12.0) == "stop"  # first report at 5: kept at rung 2 (>= 10), cut at 4 (< 14)
    assert rule.stop("B") == Stop(4, "cut", {0: 12.0})
    assert rule.cutoff(0) == 11.0  # B's value was recorded at rung 2 as well


def test_a_failed_replicate_stops_its_configuration_as_the_worst() -> None:
    rule = halving(2)
    assert rule.report("A", 0, 2, 10.0) == "continue"
    assert rule.report("A", 1, 2, -math.inf) == "stop"  # diverged: the worst value of a max metric
    assert rule.stop("A") == Stop(2, "failed")
    assert rule.report("A", 0, 3, 11.0) == "stop"
    assert rule.cutoff(0) == -math.inf  # it counts at rung 2, below everything
    rule.fail("B")  # a replicate errored before any report
    assert rule.stop("B") == Stop(2, "failed") and rule.report("B", 1, 2, 5.0) == "stop"
    assert [rule.report("D", k, 2, 1.0) for k in (0, 1)] == ["continue", "continue"]  # above two worst entries


def test_a_failure_after_the_last_rung_stops_the_configuration_at_no_rung() -> None:
    rule = halving(1)
    for iteration in (2, 4, 6):
        assert rule.report("A", 0, iteration, 5.0) == "continue"
    assert rule.report("A", 0, 7, math.nan) == "stop" and rule.stop("A") == Stop(None, "failed")


def test_with_one_replicate_it_is_plain_asha() -> None:
    """Hand-computed ASHA, one bracket, rungs 1 and 2 below max_t = 4: the (1 - 1/2) quantile,
    linearly interpolated, of the values recorded at the rung before."""
    for mode, sign in (("max", 1.0), ("min", -1.0)):
        rule = halving(1, mode, grace_period=1, max_t=4)
        at_1 = [rule.report(t, 0, 1, sign * v) for t, v in zip("abcd", [4.0, 2.0, 6.0, 1.0])]
        assert at_1 == ["continue", "stop", "continue", "stop"]  # cutoffs: none, 4, 3, 4
        assert rule.report("a", 0, 2, sign * 5.0) == "continue"
        assert rule.report("c", 0, 2, sign * 3.0) == "stop"
        assert rule.report("a", 0, 4, sign * 7.0) == "stop" and rule.stop("a") is None  # max_t: done, not cut
        assert sorted(rule.stops) == ["b", "c", "d"]


def test_the_state_survives_a_json_round_trip() -> None:
    """The scheduler keeps the rule in ``asha.json``; a resumed sweep must decide as before."""
    rule = halving(2)
    for config, k, v in [("A", 0, 10.0), ("A", 1, 12.0), ("E", 0, 13.0), ("E", 1, 13.0), ("B", 0, 1.0)]:
        rule.report(config, k, 2, v)
    rule.fail("F")  # rung 2 now holds 11, 13 and the worst: its median is 11
    saved = json.loads(json.dumps(record(rule, {"t1": ("B", 0), "t2": ("B", 1)}), allow_nan=False))
    again = ConfigHalving.from_json(saved["rule"])
    assert again.cutoff(0) == rule.cutoff(0) == 11.0 and again.milestones == rule.milestones
    assert again.report("B", 1, 2, 1.0) == "stop" and again.stop("F") == Stop(2, "failed")
    saved = record(again, {"t1": ("B", 0), "t2": ("B", 1), "t3": ("B", 1)})
    assert recorded_cuts(saved) == {"B": (2, {"t1": 1.0, "t2": 1.0, "t3": 1.0})}  # failed: not a cut


def test_quantile_interpolates_as_numpy_and_keeps_the_worst_as_its_limit() -> None:
    assert quantile([4.0, 2.0], 0.5) == 3.0 and quantile([4.0, 2.0, 6.0], 0.5) == 4.0
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.75) == pytest.approx(3.25)
    assert quantile([-math.inf, 5.0], 0.5) == -math.inf and quantile([-math.inf, 5.0, 7.0], 0.5) == 5.0


def test_bad_arguments_are_refused_with_the_values() -> None:
    with pytest.raises(ValueError, match="got replicates=2, grace_period=2, max_t=8, reduction_factor=1"):
        halving(2, reduction_factor=1)
    with pytest.raises(ValueError, match="mode must be 'max' or 'min', but got 'best'"):
        halving(2, "best")
    with pytest.raises(ValueError, match=r"replicate must be in 0..1, but got 2"):
        halving(2).report("A", 2, 2, 1.0)
