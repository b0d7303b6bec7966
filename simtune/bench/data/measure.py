"""Loader throughput, per-sample costs and cores per GPU for ``simtune bench --data``."""

from __future__ import annotations

import math
import os
import platform
import resource
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from simtune.bench.text import cpu_model
from simtune.data.datasets import (SegmentationDataset, image_to_tensor, list_samples, read_image, read_png8,
                                   to_train_ids)
from simtune.data.loaders import Loading, available_cpus, loader
from simtune.seeds import derived_seed
from simtune.train.streams import StreamSampler

from simtune.bench.data.settings import DATA_SIZES, DataBenchSettings, check_data_settings, default_workers
from simtune.bench.data.files import write_datasets

# ----------------------------------------------------------------------------- measurements


def _children_cpu_s() -> float:
    """CPU seconds of this process's finished, reaped children (loader workers once shut down)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_loaders(source: SegmentationDataset, target: SegmentationDataset, workers: int,
                 s: DataBenchSettings) -> dict[str, Any]:
    """Iterations/s of the two training loaders with ``workers`` each, as ``train.streams.stream`` builds them.

    Besides wall time: the training process's CPU time over the timed iterations, and the
    workers' CPU time per iteration over their whole life (warm-up included), read once
    the loaders have shut them down: the loading work, however busy the machine is.
    """
    warmup = s.warmup + 2 * workers
    count = warmup + s.iterations
    loading = Loading(workers=workers)
    children = _children_cpu_s()
    seg = iter(loader(source, loading, StreamSampler(len(source), derived_seed(s.seed, "seg_stream"), 0, count)))
    trg = iter(loader(target, loading, StreamSampler(len(target), derived_seed(s.seed, "target_stream"), 0, count)))
    started = time.perf_counter()
    begin, cpu_begin = started, time.process_time()
    done = 0
    for done, (src_batch, trg_batch) in enumerate(zip(seg, trg), start=1):
        if src_batch["image"].shape[0] != 1 or trg_batch["image"].shape[0] != 1:
            raise RuntimeError("the data benchmark expects batches of one")
        if done == warmup:
            begin, cpu_begin = time.perf_counter(), time.process_time()
    seconds, main_cpu = time.perf_counter() - begin, time.process_time() - cpu_begin
    if done != count:
        raise RuntimeError(f"the loaders yielded {done} iterations, expected {count}")
    stream_cpu = []
    for iterator in (seg, trg):  # join each loader's workers in turn, so their CPU times come apart
        shutdown = getattr(iterator, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
        reaped = _children_cpu_s()
        stream_cpu.append(reaped - children)
        children = reaped
    del seg, trg
    worker_cpu = sum(stream_cpu)
    return {"workers": workers, "processes": 2 * workers, "warmup": warmup, "iterations": s.iterations,
            "seconds": seconds, "startup_and_warmup_s": begin - started,
            "iterations_per_s": s.iterations / seconds, "ms_per_iteration": 1e3 * seconds / s.iterations,
            "main_cpu_ms_per_iteration": 1e3 * main_cpu / s.iterations,
            "worker_cpu_ms_per_iteration": 1e3 * worker_cpu / count if workers else None,
            "source_worker_cpu_ms_per_item": 1e3 * stream_cpu[0] / count if workers else None,
            "target_worker_cpu_ms_per_item": 1e3 * stream_cpu[1] / count if workers else None}


def _mean_ms(fn: Callable[[], Any], repeats: int) -> float:
    """Mean CPU ms of this process per call (single-threaded work: wall time on an idle machine,
    without the time other jobs take the core away)."""
    fn()  # untimed: imports, first-call allocations
    start = time.process_time()
    for _ in range(repeats):
        fn()
    return 1e3 * (time.process_time() - start) / repeats


def per_sample_costs(source: SegmentationDataset, target: SegmentationDataset, s: DataBenchSettings) -> dict[str, Any]:
    """One process's CPU cost per operation on the first source and target sample (mean of ``decoder_repeats``).

    Runs single-threaded (``torch.set_num_threads(1)``, ``cv2.setNumThreads(0)``), as a loader
    worker does; both settings are restored afterwards.
    """
    import cv2

    sizes = DATA_SIZES[s.size]
    image_path, label_path = source.samples[0].image_path, source.samples[0].label_path
    target_path = target.samples[0].image_path
    assert label_path is not None
    r = s.decoder_repeats
    threads, cv_threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(0)
    try:
        resized = read_image(image_path, sizes.source_input)
        ids = to_train_ids("gta5", read_png8(label_path, "label"))
        source_ms = {
            "pil_decode": _mean_ms(lambda: read_image(image_path), r),
            "pil_decode_resize": _mean_ms(lambda: read_image(image_path, sizes.source_input), r),
            "cv2_decode": _mean_ms(lambda: cv2.imread(str(image_path), cv2.IMREAD_COLOR), r),
            "cv2_decode_resize": _mean_ms(lambda: _cv2_read_resize(image_path, sizes.source_input), r),
            "label_pil_decode": _mean_ms(lambda: read_png8(label_path, "label"), r),
            "label_train_ids": _mean_ms(lambda: to_train_ids("gta5", read_png8(label_path, "label")), r),
            "label_nearest_resize": _mean_ms(
                lambda: Image.fromarray(ids).resize(sizes.source_input, Image.Resampling.NEAREST), r),
            "preprocess": _mean_ms(lambda: image_to_tensor(resized), r),
            "item": _mean_ms(lambda: source[0], r),
        }
        tv = _torchvision_decode(image_path, r)
        if tv is not None:
            source_ms["torchvision_decode_png"] = tv
        target_resized = read_image(target_path, sizes.target_input)
        target_ms = {
            "pil_decode": _mean_ms(lambda: read_image(target_path), r),
            "pil_decode_resize": _mean_ms(lambda: read_image(target_path, sizes.target_input), r),
            "preprocess": _mean_ms(lambda: image_to_tensor(target_resized), r),
            "item": _mean_ms(lambda: target[0], r),
        }
    finally:
        torch.set_num_threads(threads)
        cv2.setNumThreads(cv_threads)
    palette = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
    return {
        "repeats": r, "threads": "torch 1, cv2 0",
        "source": {"file": image_path.name, "mb": image_path.stat().st_size / 1e6, "ms": source_ms},
        "target": {"file": target_path.name, "mb": target_path.stat().st_size / 1e6, "ms": target_ms},
        # cv2 expands a palette PNG to its colours, so GTA5's label ids are lost.
        "cv2_label_channels": 1 if palette is None or palette.ndim == 2 else int(palette.shape[2]),
    }


def _cv2_read_resize(path: Path, size: tuple[int, int]) -> np.ndarray:
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise RuntimeError(f"{path}: cv2 cannot read it")
    return np.asarray(cv2.resize(bgr, size, interpolation=cv2.INTER_LINEAR))


def _torchvision_decode(path: Path, repeats: int) -> float | None:
    """ms per ``torchvision.io.decode_png`` of the file's bytes (read once); None without torchvision."""
    with warnings.catch_warnings():  # torchvision 0.29 deprecates its decoders in favour of TorchCodec
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            from torchvision.io import decode_png
        except Exception:  # not installed, or built against another torch
            return None
        data = torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8)
        return _mean_ms(lambda: decode_png(data), repeats)


def cores_per_gpu(loader_rows: Sequence[dict[str, Any]], costs: dict[str, Any], step_ms: float) -> dict[str, Any]:
    """CPU cores one GPU needs at ``step_ms`` per training step: ``ceil(t1 / step)`` workers + 1 for the loop.

    ``t1``, one process's loading work per iteration, is the workers' CPU time per iteration
    in the 1-worker run (single-threaded, as workers load; unaffected by other jobs taking the
    CPU); without that run, the 0-worker run's wall time; without either, the per-item timings.
    Each stream needs ``ceil(t / step)`` workers of its own (``t``: that stream's worker CPU time
    per item in the 1-worker run, else the in-process item time); ``data.num_workers`` is the
    larger of the two (an idle worker uses no CPU).
    """
    by_workers = {row["workers"]: row for row in loader_rows}
    item_source, item_target = costs["source"]["ms"]["item"], costs["target"]["ms"]["item"]
    if 1 in by_workers and by_workers[1].get("worker_cpu_ms_per_iteration"):
        one = by_workers[1]
        t1, origin = one["worker_cpu_ms_per_iteration"], "the 1-worker run's worker CPU time"
        item_source = one.get("source_worker_cpu_ms_per_item") or item_source
        item_target = one.get("target_worker_cpu_ms_per_item") or item_target
    elif 0 in by_workers:
        t1, origin = by_workers[0]["ms_per_iteration"], "the 0-worker run's wall time"
    else:
        t1, origin = item_source + item_target, "the per-item timings"
    workers = math.ceil(t1 / step_ms)
    per_stream = max(math.ceil(item_source / step_ms), math.ceil(item_target / step_ms))
    return {"step_ms": step_ms, "loading_ms_per_iteration": t1, "from": origin, "workers": workers,
            "cores": workers + 1, "source_item_ms": item_source, "target_item_ms": item_target,
            "num_workers_per_stream": per_stream}


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _opencv_version() -> str:
    for name in ("opencv-python", "opencv-python-headless", "opencv-contrib-python"):
        version = _version(name)
        if version != "not installed":
            return version
    return "not installed"


def data_environment() -> dict[str, Any]:
    return {
        "cpu": cpu_model(), "processor": platform.processor(), "cpu_count": os.cpu_count(),
        "available_cpus": available_cpus(), "python": platform.python_version(), "torch": torch.__version__,
        "pillow": _version("pillow"), "opencv": _opencv_version(), "torchvision": _version("torchvision"),
        "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def run_data_bench(s: DataBenchSettings, log: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """Write the datasets to a temporary folder, time the loaders and the per-sample split; one JSON-ready dict."""
    check_data_settings(s)
    workers = s.workers if s.workers is not None else default_workers()
    sizes = DATA_SIZES[s.size]
    env = data_environment()
    with tempfile.TemporaryDirectory(prefix="simtune-bench-data-") as tmp:
        files = write_datasets(Path(tmp), s, log)
        source = SegmentationDataset("gta5", list_samples("gta5", Path(files["gta5"]["root"])),
                                     size=sizes.source_input)
        target = SegmentationDataset("cityscapes", list_samples("cityscapes", Path(files["cityscapes"]["root"]),
                                                                "train", with_labels=False),
                                     size=sizes.target_input)
        log(f"per-sample costs ({s.decoder_repeats} calls each)")
        costs = per_sample_costs(source, target, s)
        rows = []
        for count in workers:
            log(f"loaders with {count} worker(s) each: {s.iterations} iterations")
            rows.append(time_loaders(source, target, count, s))
    base = next((row["ms_per_iteration"] for row in rows if row["workers"] == 0), None)
    for row in rows:
        row["speedup_vs_0"] = None if base is None else base / row["ms_per_iteration"]
    env["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    for info in files.values():
        if isinstance(info, dict):
            info.pop("root")
    return {
        "benchmark": "data",
        "settings": {**asdict(s), "workers": list(workers)},
        "sizes": {"source_file": list(sizes.source_file), "source_input": list(sizes.source_input),
                  "target_file": list(sizes.target_file), "target_input": list(sizes.target_input)},
        "environment": env,
        "files": files,
        "loader": rows,
        "per_sample": costs,
        "cores_per_gpu": cores_per_gpu(rows, costs, s.step_ms),
    }


