"""Measure the built-in benchmark: how large its thing regions are at the training resolution
(``simtune data stats sizes``; how well runs segment it is ``simtune.heldout``).

``region_sizes``: per thing class, the median area of a connected region (8-connected, per
class) in *feature pixels* -- pixels at the experiment's training size divided by the output
stride squared (8 x 8) -- for the source images and the target val images; beside it the
pixel-weighted median (half of the class's pixels lie in regions at least this large),
which small occlusion slivers do not drag down.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from simtune import config
from simtune.data.datasets import list_samples
from simtune.data.synth.measure import pixel_median, thing_region_areas
from simtune.data.synth.write import SOURCE_FOLDER, TARGET_FOLDER
from simtune.labels import CLASS_NAMES
from simtune.tables import text_table

SOURCE, TARGET = SOURCE_FOLDER, TARGET_FOLDER  # each domain's folder in a benchmark, named after its format
SIZE_COLUMNS = {"median_fpx": "median", "pixel_median_fpx": "pixel median", "regions": "regions"}


def region_sizes(bench: Path, experiment: Path) -> dict[str, dict[str, float]]:
    """Thing class -> ``<domain>_median_fpx``, ``<domain>_pixel_median_fpx``, ``<domain>_regions``
    for the domains ``source`` and ``target_val``.

    Raises:
        ConfigError / DataError: a bad experiment file or benchmark folder.
    """
    cfg = config.load(experiment)
    domains = {
        "source": ([s.label_path for s in list_samples(SOURCE, bench / SOURCE)], cfg.data.source.size),
        "target_val": ([s.label_path for s in list_samples(TARGET, bench / TARGET, "val")], cfg.data.target.size),
    }
    table: dict[str, dict[str, float]] = {}
    for domain, (paths, size) in domains.items():
        labels = [p for p in paths if p is not None]
        for c, areas in thing_region_areas(labels, (size[0], size[1])).items():
            row = table.setdefault(CLASS_NAMES[c], {})
            row[f"{domain}_median_fpx"] = float(np.median(areas)) if areas else float("nan")
            row[f"{domain}_pixel_median_fpx"] = pixel_median(areas)
            row[f"{domain}_regions"] = float(len(areas))
    return table


def sizes_text(table: dict[str, dict[str, float]]) -> str:
    """``region_sizes`` as a terminal table, one line per thing class."""
    keys = [f"{domain}_{key}" for domain in ("source", "target_val") for key in SIZE_COLUMNS]
    header = [f"{domain.replace('_', ' ')} {label}" for domain in ("source", "target val")
              for label in SIZE_COLUMNS.values()]
    rows = [["class", *header]]
    rows += [[name, *(f"{values[k]:.0f}" if k.endswith("regions") else f"{values[k]:.1f}" for k in keys)]
             for name, values in table.items()]
    return text_table(rows, right=range(1, len(rows[0])))
