"""The pseudo-labelling pass between the stages: images per second and peak host memory.

The real ``predict_target`` runs over a synthetic target set drawn image by image (nothing
is held in memory), at two set sizes: its peak host memory must not grow with the count.
Peak memory is the process's resident-set high-water mark (``VmHWM``), reset before each
pass through ``/proc/self/clear_refs``; where that reset is not allowed, a thread samples
``VmRSS`` every few milliseconds instead.
"""

from __future__ import annotations

import gc
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from simtune.data.datasets import image_to_tensor
from simtune.labels import NUM_CLASSES
from simtune.sim.thresholds import DEFAULT_BINS
from simtune.train.pseudo import predict_target

STATUS = Path("/proc/self/status")
SAMPLE_EVERY_S = 0.005


class SyntheticTargetSet(Dataset[dict[str, Any]]):
    """``count`` random target images of ``size`` = (W, H), each drawn when it is read."""

    def __init__(self, count: int, size: tuple[int, int], seed: int = 0) -> None:
        self.count = count
        self.size = size
        self.seed = seed

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict[str, Any]:
        width, height = self.size
        rgb = np.random.default_rng([self.seed, index]).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        return {"image": image_to_tensor(rgb)}


def status_mb(field: str) -> float | None:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in MiB; None off Linux."""
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


class PeakRss:
    """Peak resident memory (MiB) while the ``with`` block runs."""

    def __init__(self) -> None:
        self.peak_mb: float | None = None
        self.method = "VmHWM"
        self._samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakRss:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # "5" resets VmHWM to the current RSS
        except OSError:
            self.method = "sampled VmRSS"
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            value = status_mb("VmRSS")
            if value is not None:
                self._samples.append(value)
            time.sleep(SAMPLE_EVERY_S)

    def __exit__(self, *exc: object) -> None:
        if self._thread is None:
            self.peak_mb = status_mb("VmHWM")
            return
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self._samples) if self._samples else None


def _one_pass(segmenter: torch.nn.Module, count: int, size: tuple[int, int], device: torch.device,
              autocast: bool) -> dict[str, Any]:
    gc.collect()
    before = status_mb("VmRSS")
    with tempfile.TemporaryDirectory(prefix="simtune-bench-") as tmp, PeakRss() as peak:
        t0 = time.perf_counter()
        predict_target(segmenter, SyntheticTargetSet(count, size), Path(tmp), num_classes=NUM_CLASSES,
                       bins=DEFAULT_BINS, device=device, autocast=autocast)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
    growth = None if peak.peak_mb is None or before is None else peak.peak_mb - before
    return {"images": count, "seconds": seconds, "images_per_s": count / seconds, "rss_before_mb": before,
            "peak_rss_mb": peak.peak_mb, "peak_growth_mb": growth, "peak_method": peak.method}


def pseudo_label_pass(segmenter: torch.nn.Module, *, counts: tuple[int, ...], size: tuple[int, int],
                      device: torch.device, autocast: bool) -> dict[str, Any]:
    """Time ``predict_target`` over synthetic sets of each size in ``counts``; report peak host memory.

    Returns:
        ``{"size": [W, H], "passes": [{images, seconds, images_per_s, peak_rss_mb, ...}],
        "peak_growth_change_mb": growth of the largest set minus that of the smallest}``.
    """
    was_training = segmenter.training
    _one_pass(segmenter, 2, size, device, autocast)  # warm-up: kernels, allocator, file system
    passes = [_one_pass(segmenter, n, size, device, autocast) for n in counts]
    segmenter.train(was_training)
    growths = [p["peak_growth_mb"] for p in passes]
    change = None if None in growths or not growths else growths[-1] - growths[0]
    return {"size": list(size), "passes": passes, "peak_growth_change_mb": change}
