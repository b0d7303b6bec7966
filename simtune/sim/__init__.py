"""Stuff and instance matching (SIM, CVPR 2020): regions, source feature banks, losses; and
``thresholds``, the pseudo-label thresholds (SIM rule, CBST) used between the stages."""

from simtune.sim.banks import FeatureBank, self_check_mask
from simtune.sim.losses import (
    SimMatcher,
    augmented_target_map,
    correct_source_map,
    instance_matching_loss,
    nearest_entries,
    stuff_matching_loss,
)
from simtune.sim.regions import (
    RegionSet,
    label_regions,
    label_regions_batch,
    pool_classes,
    pool_regions,
    reference_style_instance_features,
)

__all__ = [
    "FeatureBank",
    "RegionSet",
    "SimMatcher",
    "augmented_target_map",
    "correct_source_map",
    "instance_matching_loss",
    "label_regions",
    "label_regions_batch",
    "nearest_entries",
    "pool_classes",
    "pool_regions",
    "reference_style_instance_features",
    "self_check_mask",
    "stuff_matching_loss",
]
