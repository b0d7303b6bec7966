"""What ``simtune bench --data`` measures: sizes, worker counts, checks of its settings."""

from __future__ import annotations

import math
from dataclasses import dataclass


from simtune.data.loaders import available_cpus
from simtune.errors import ConfigError


MAX_DEFAULT_WORKERS = 8  # default worker counts: 0 .. min(available CPUs, this)
PAGE_CACHE_NOTE = ("files are hard links to a few rendered images in a fresh temporary folder: the page cache "
                   "is warm, so disk read speed is not measured")
CITIES = ("aachen", "bochum", "bremen")
GTA5_LABEL_IDS = (7, 8, 11, 21, 23, 24, 26, 17, 20, 12)  # road, sidewalk, building, vegetation, sky, person, car, ...


@dataclass(frozen=True)
class DataSizes:
    """Image sizes (W, H) on disk and after the loader's resize, for source and target."""

    source_file: tuple[int, int]
    source_input: tuple[int, int]
    target_file: tuple[int, int]
    target_input: tuple[int, int]


DATA_SIZES: dict[str, DataSizes] = {
    # GTA5 1914x1052 -> 1280x720; Cityscapes 2048x1024 -> 1024x512, as the paper trains.
    "paper": DataSizes((1914, 1052), (1280, 720), (2048, 1024), (1024, 512)),
    # An eighth of each side: for tests.
    "small": DataSizes((240, 132), (160, 90), (256, 128), (128, 64)),
}


@dataclass(frozen=True)
class DataBenchSettings:
    """What ``simtune bench --data`` measures and how long."""

    workers: tuple[int, ...] | None = None  # data.num_workers values to time; None = 0 .. min(CPUs, 8)
    images: int = 100  # file names per dataset
    distinct: int = 16  # rendered images per dataset; the other names are hard links to them
    iterations: int = 60  # timed iterations per worker count
    warmup: int = 4  # untimed iterations first, plus two per worker (workers started, queues primed)
    step_ms: float = 35.0  # the training step the loader must keep up with (batch 1)
    size: str = "paper"  # paper | small (see DATA_SIZES)
    decoder_repeats: int = 8  # timed calls per operation in the per-sample split
    seed: int = 0


def default_workers() -> tuple[int, ...]:
    return tuple(range(min(available_cpus(), MAX_DEFAULT_WORKERS) + 1))


def parse_workers(text: str) -> tuple[int, ...]:
    """``"0,1,2,4"`` -> (0, 1, 2, 4); ``ConfigError`` for anything but distinct integers >= 0."""
    parts = [part.strip() for part in text.split(",")]
    try:
        counts = tuple(int(part) for part in parts)
    except ValueError:
        raise ConfigError(f"--workers must be comma-separated integers >= 0, e.g. 0,1,2,4, but got {text!r}") from None
    if any(n < 0 for n in counts) or len(set(counts)) != len(counts):
        raise ConfigError(f"--workers must be distinct integers >= 0, e.g. 0,1,2,4, but got {text!r}")
    return counts


def check_data_settings(s: DataBenchSettings) -> None:
    """One-line ``ConfigError`` for a value the data benchmark cannot run with."""
    if s.size not in DATA_SIZES:
        raise ConfigError(f"--size must be one of {tuple(DATA_SIZES)} with --data, but got {s.size!r}")
    if s.workers is not None and (not s.workers or any(n < 0 for n in s.workers)):
        raise ConfigError(f"--workers must be integers >= 0, but got {list(s.workers)}")
    if s.images < 1 or s.distinct < 1 or s.iterations < 1 or s.warmup < 0 or s.decoder_repeats < 1:
        raise ConfigError(f"images >= 1, distinct >= 1, iterations >= 1, warmup >= 0 and decoder repeats >= 1 must "
                          f"hold, but got images={s.images}, distinct={s.distinct}, iterations={s.iterations}, "
                          f"warmup={s.warmup}, decoder_repeats={s.decoder_repeats}")
    if not (s.step_ms > 0 and math.isfinite(s.step_ms)):
        raise ConfigError(f"--step-ms must be a number > 0, but got {s.step_ms}")


