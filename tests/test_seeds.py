"""Derived seeds: every random stream's seed comes from one rule, with the offsets results were recorded with."""

from __future__ import annotations

import pytest

from simtune.seeds import SEED_OFFSETS, derived_seed


def test_derived_seeds_keep_the_recorded_offsets() -> None:
    assert [derived_seed(7, p) for p in ("seg_stream", "target_stream")] == [7, 8]
    assert [derived_seed(7, p) for p in ("subset_images", "subset_pixels", "subset_source_images")] == [7, 8, 9]
    assert derived_seed(7, "target_feature_pixels", 3) == 20 and derived_seed(7, "source_feature_pixels", 3) == 110


def test_streams_of_one_seed_are_distinct() -> None:
    stage = [SEED_OFFSETS[p] for p in ("seg_stream", "target_stream")]
    subset = [SEED_OFFSETS[p] for p in SEED_OFFSETS if p.startswith(("subset_", "target_feature", "source_feature"))]
    assert len(set(stage)) == len(stage) and len(set(subset)) == len(subset)
    with pytest.raises(KeyError):
        derived_seed(0, "unknown")
