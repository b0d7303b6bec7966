"""The full check of a dataset — every image and label decoded — done once per file list.

Decoding every file of GTA5 (24,966 images at 1914x1052 and their labels) takes on the order
of 15 CPU-minutes. It runs once per *fingerprint*: a hash of every listed file's name, size
and modification time. A record of a passed check lives under the user's cache folder
(``$XDG_CACHE_HOME/simtune/data_checks``, default ``~/.cache``); a later check of the same
files lists them (one ``stat`` each), finds the record and decodes nothing. Any file that is
added, removed, rewritten or touched changes the fingerprint, and the next command checks
everything again.

The commands check in their pre-flight, before any compute; a sweep's trials and a retrain's
seeds then open only a couple of files each (``FILES_OPENED``), so a trial's start does not
grow with the dataset. The decode runs in a pool of processes, one per available CPU.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from simtune.data.datasets import Sample, check_samples
from simtune.data.loaders import available_cpus
from simtune.files import write_with

CHECK_VERSION = 1  # bump when check_samples checks something new: older records no longer count
FILES_OPENED = 2  # files per dataset opened where the full check has been done already
PARALLEL_FROM = 64  # samples per process below which a pool costs more than it saves

Say = Callable[[str], None]


def records_dir() -> Path:
    """Where passed checks are recorded (the user's cache folder)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "simtune" / "data_checks"


def fingerprint(dataset: str, samples: list[Sample]) -> str:
    """A hash of the dataset kind and every file's path, size and mtime (one ``stat`` per file)."""
    digest = hashlib.sha256(f"{CHECK_VERSION}:{dataset}".encode())
    for sample in samples:
        for path in (sample.image_path, sample.label_path):
            if path is None:
                continue
            st = path.stat()
            digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


def ensure_checked(dataset: str, samples: list[Sample], *, say: Say | None = None) -> bool:
    """Decode and check every file of ``samples`` unless this exact file list passed before.

    Returns:
        True when the check ran now, False when a record of it was found.
    Raises:
        DataError: the first bad file, in sample order (nothing is recorded then).
    """
    key = fingerprint(dataset, samples)
    record = records_dir() / f"{key}.json"
    if record.is_file():
        return False
    start = time.monotonic()
    if say is not None and len(samples) >= PARALLEL_FROM:
        say(f"checking all {len(samples)} {dataset} files under {_common_root(samples)} "
            f"(once for this file list; recorded in {records_dir()})")
    check_all(dataset, samples)
    _record(record, {"dataset": dataset, "root": str(_common_root(samples)), "samples": len(samples),
                     "seconds": round(time.monotonic() - start, 1), "time": time.time()})
    return True


def check_all(dataset: str, samples: list[Sample], processes: int | None = None) -> None:
    """``check_samples`` over every sample, split over ``processes`` (default: available CPUs)."""
    processes = processes or available_cpus()
    if processes < 2 or len(samples) < 2 * PARALLEL_FROM:
        check_samples(dataset, samples)
        return
    size = max(PARALLEL_FROM, len(samples) // (4 * processes))  # a few chunks per process: even finish
    chunks = [samples[i:i + size] for i in range(0, len(samples), size)]
    # spawn, not fork: the caller may hold torch threads, which a forked child inherits broken.
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        for _ in pool.map(check_samples, [dataset] * len(chunks), chunks):
            pass  # map re-raises the first failing chunk's DataError, in chunk order


def _record(path: Path, payload: dict[str, object]) -> None:
    """Write a record; a cache folder that cannot be written only means checking again next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_with(path, lambda tmp: tmp.write_text(json.dumps(payload)))
    except OSError:
        pass


def _common_root(samples: list[Sample]) -> Path:
    if not samples:
        return Path()
    return Path(os.path.commonpath([str(s.image_path.parent) for s in samples]))
