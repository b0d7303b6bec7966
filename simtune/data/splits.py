"""Honest splits of Cityscapes val: one part to choose hyperparameters, one to report.

The method is tuned by sweeping hyperparameters and picking checkpoints; doing that on
the images one reports on is selection on the test set (SIM_SPEC.md, "Known traps").
Cityscapes val (500 images, 3 cities) is therefore split by city, so no street scene
appears on both sides:

- ``selection``: frankfurt (267 images) -- every sweep, early stop and checkpoint choice.
- ``report``:    lindau + munster (59 + 174 = 233 images) -- only the final numbers.
- ``all``:       the full val set, for comparison with published figures (which were
  themselves selected on it; say so when quoting them).
"""

from __future__ import annotations

from simtune.data.layouts import Sample
from simtune.errors import DataError

VAL_SPLITS: dict[str, tuple[str, ...]] = {
    "selection": ("frankfurt",),
    "report": ("lindau", "munster"),
}
SPLIT_PARTS: tuple[str, ...] = ("selection", "report", "all")


def split_samples(samples: list[Sample], part: str) -> list[Sample]:
    """Keep the samples of one part of Cityscapes val, chosen by city.

    Args:
        samples: Cityscapes samples (``Sample.city`` set), e.g. from
            ``list_samples("cityscapes", root, "val")``.
        part: ``"selection"``, ``"report"`` or ``"all"``.
    Returns:
        The samples of that part, in their original order.
    Raises:
        DataError: unknown part, or no sample belongs to the part's cities (a part that
            silently comes out empty would yield a meaningless score).
    """
    if part not in SPLIT_PARTS:
        raise DataError(f"unknown val part {part!r}; expected one of {', '.join(SPLIT_PARTS)}")
    if part == "all":
        return list(samples)
    cities = VAL_SPLITS[part]
    kept = [sample for sample in samples if sample.city in cities]
    if not kept:
        raise DataError(
            f"val part {part!r} is empty: none of {len(samples)} samples is from "
            f"{', '.join(cities)}"
        )
    return kept
