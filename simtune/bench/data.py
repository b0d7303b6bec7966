"""``simtune bench --data``: can the training loader feed a GPU, and with how many cores?

A training iteration loads one source sample (GTA5 image + palette label, resized to 1280x720)
and one target sample (Cityscapes image, resized to 1024x512), each from its own loader
(``data.loaders.loader`` over a ``train.streams.StreamSampler``, as ``train.streams.stream``
builds them), so ``data.num_workers = w`` runs ``2 w`` worker processes.

``run_data_bench`` writes paper-size images in the datasets' real layouts to a temporary
folder (``distinct`` rendered images per dataset, every other name a hard link to one of them:
decoding costs the same, and the page cache is warm, so disk reads are not measured), then

- times the two loaders together for each worker count (iterations/s after a warm-up that
  starts the workers),
- splits one process's per-sample cost into decode, resize, label and preprocessing, and
  times the alternative decoders (cv2, torchvision) on the same file,
- turns one process's loading time per iteration ``t1`` into the CPU cores a GPU whose step
  takes ``step_ms`` at batch 1 needs: ``ceil(t1 / step) + 1`` (workers + the training loop).

``format_data_report`` renders the result as text. docs/benchmarks.md holds measured numbers.
"""

from __future__ import annotations

import math
import os
import platform
import resource
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
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
from simtune.errors import ConfigError
from simtune.tables import text_table
from simtune.train.streams import StreamSampler

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


# ----------------------------------------------------------------------------- files


def render_image(rng: np.random.Generator, size: tuple[int, int], noise: float) -> np.ndarray:
    """(H, W, 3) uint8 that a PNG encoder compresses like a rendered or photographed scene:
    smooth colour gradients, shaded rectangles with hard edges, and sensor-like noise."""
    width, height = size
    coarse = rng.integers(0, 256, size=(6, 10, 3), dtype=np.uint8)
    image = np.asarray(Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC), dtype=np.float32)
    for _ in range(40):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        w = int(rng.integers(max(1, width // 40), max(2, width // 6)))
        h = int(rng.integers(max(1, height // 40), max(2, height // 4)))
        w, h = min(w, width - x0), min(h, height - y0)
        shade = np.linspace(0.7, 1.0, w, dtype=np.float32)[None, :, None]
        image[y0:y0 + h, x0:x0 + w] = rng.integers(0, 256, size=3).astype(np.float32) * shade
    image += rng.normal(0.0, noise, size=image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def render_label(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """An 8-bit palette image whose indices are Cityscapes label ids, in blocky regions (GTA5's format)."""
    width, height = size
    coarse = rng.choice(np.asarray(GTA5_LABEL_IDS, dtype=np.uint8), size=(12, 20))
    ids = np.asarray(Image.fromarray(coarse).resize(size, Image.Resampling.NEAREST))
    label = Image.frombytes("P", size, np.ascontiguousarray(ids).tobytes())
    palette = np.random.default_rng(7).integers(0, 256, size=(256, 3), dtype=np.uint8)
    label.putpalette(palette.tobytes())
    return label


def _link(existing: Path, new: Path) -> None:
    try:
        os.link(existing, new)
    except OSError:  # a file system without hard links
        shutil.copyfile(existing, new)


def write_datasets(root: Path, s: DataBenchSettings, log: Callable[[str], None]) -> dict[str, Any]:
    """GTA5 (images + palette labels) and Cityscapes train (images) under ``root``, in their real layouts.

    Returns:
        The roots and, per dataset, file counts, sizes and mean file sizes.
    """
    sizes = DATA_SIZES[s.size]
    rng = np.random.default_rng(s.seed)
    gta5, cityscapes = root / "gta5", root / "cityscapes"
    (gta5 / "images").mkdir(parents=True)
    (gta5 / "labels").mkdir()
    distinct = min(s.distinct, s.images)
    log(f"writing {distinct} + {distinct} distinct PNGs ({s.size} size), {s.images} names per dataset")
    image_bytes, label_bytes, target_bytes = [], [], []
    for index in range(s.images):
        name = f"{index + 1:05d}.png"
        image, label = gta5 / "images" / name, gta5 / "labels" / name
        if index < distinct:
            Image.fromarray(render_image(rng, sizes.source_file, noise=6.0)).save(image)
            render_label(rng, sizes.source_file).save(label)
            image_bytes.append(image.stat().st_size)
            label_bytes.append(label.stat().st_size)
        else:
            _link(gta5 / "images" / f"{index % distinct + 1:05d}.png", image)
            _link(gta5 / "labels" / f"{index % distinct + 1:05d}.png", label)
    first: list[Path] = []
    for index in range(s.images):
        city = CITIES[index % len(CITIES)]
        folder = cityscapes / "leftImg8bit" / "train" / city
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{city}_000000_{index:06d}_leftImg8bit.png"
        if index < distinct:
            Image.fromarray(render_image(rng, sizes.target_file, noise=2.0)).save(path)
            target_bytes.append(path.stat().st_size)
            first.append(path)
        else:
            _link(first[index % distinct], path)
    return {
        "gta5": {"root": str(gta5), "files": s.images, "distinct": distinct, "size": list(sizes.source_file),
                 "mean_image_mb": float(np.mean(image_bytes)) / 1e6, "mean_label_kb": float(np.mean(label_bytes)) / 1e3},
        "cityscapes": {"root": str(cityscapes), "files": s.images, "distinct": distinct,
                       "size": list(sizes.target_file), "mean_image_mb": float(np.mean(target_bytes)) / 1e6},
        "page_cache": PAGE_CACHE_NOTE,
    }


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
    seg = iter(loader(source, loading, StreamSampler(len(source), s.seed, 0, count)))
    trg = iter(loader(target, loading, StreamSampler(len(target), s.seed + 1, 0, count)))
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
    for iterator in (seg, trg):  # join the workers (exhausted iterators have; this makes sure)
        shutdown = getattr(iterator, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
    del seg, trg
    worker_cpu = _children_cpu_s() - children
    return {"workers": workers, "processes": 2 * workers, "warmup": warmup, "iterations": s.iterations,
            "seconds": seconds, "startup_and_warmup_s": begin - started,
            "iterations_per_s": s.iterations / seconds, "ms_per_iteration": 1e3 * seconds / s.iterations,
            "main_cpu_ms_per_iteration": 1e3 * main_cpu / s.iterations,
            "worker_cpu_ms_per_iteration": 1e3 * worker_cpu / count if workers else None}


def _mean_ms(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # untimed: imports, first-call allocations
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return 1e3 * (time.perf_counter() - start) / repeats


def per_sample_costs(source: SegmentationDataset, target: SegmentationDataset, s: DataBenchSettings) -> dict[str, Any]:
    """One process's cost per operation on the first source and target sample (mean ms of ``decoder_repeats``).

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
    Each stream needs ``ceil(t / step)`` workers of its own; ``data.num_workers`` is the larger
    of the two (an idle worker uses no CPU).
    """
    by_workers = {row["workers"]: row for row in loader_rows}
    item_source, item_target = costs["source"]["ms"]["item"], costs["target"]["ms"]["item"]
    if 1 in by_workers and by_workers[1].get("worker_cpu_ms_per_iteration"):
        t1, origin = by_workers[1]["worker_cpu_ms_per_iteration"], "the 1-worker run's worker CPU time"
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


def data_environment() -> dict[str, Any]:
    return {
        "cpu": cpu_model(), "processor": platform.processor(), "cpu_count": os.cpu_count(),
        "available_cpus": available_cpus(), "python": platform.python_version(), "torch": torch.__version__,
        "pillow": _version("pillow"), "opencv": _version("opencv-python") if _version("opencv-python") != "not installed"
        else _version("opencv-python-headless"), "torchvision": _version("torchvision"),
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


# ----------------------------------------------------------------------------- text


def _size(size: Sequence[int]) -> str:
    return f"{size[0]}x{size[1]}"


def format_data_report(result: dict[str, Any]) -> str:
    """The loader table, the cores-per-GPU line, the machine and the per-sample split, as text."""
    env, sizes, files = result["environment"], result["sizes"], result["files"]
    load = env["loadavg_start"]
    lines = [
        f"machine: {env['cpu']} ({env['processor'] or 'processor unknown'}), {env['cpu_count']} CPUs, "
        f"{env['available_cpus']} available to this process"
        + (f"; load average at start {load[0]:.2f}" if load else ""),
        f"one iteration = one GTA5 item ({_size(sizes['source_file'])} PNG + palette label -> "
        f"{_size(sizes['source_input'])}) and one Cityscapes item ({_size(sizes['target_file'])} PNG -> "
        f"{_size(sizes['target_input'])}), each stream its own loader with `workers` processes",
        f"files: GTA5 {files['gta5']['mean_image_mb']:.2f} MB per image, {files['gta5']['mean_label_kb']:.0f} kB per "
        f"label; Cityscapes {files['cityscapes']['mean_image_mb']:.2f} MB per image; {files['page_cache']}",
        "",
    ]
    rows = [["workers", "processes", "iterations/s", "ms/iteration", "speed-up vs 0", "CPU ms/it workers",
             "CPU ms/it main"]]
    for row in result["loader"]:
        speedup = "-" if row["speedup_vs_0"] is None else f"{row['speedup_vs_0']:.2f}x"
        worker_cpu = row["worker_cpu_ms_per_iteration"]
        rows.append([str(row["workers"]), str(row["processes"]) if row["workers"] else "main",
                     f"{row['iterations_per_s']:.2f}", f"{row['ms_per_iteration']:.1f}", speedup,
                     "-" if worker_cpu is None else f"{worker_cpu:.1f}", f"{row['main_cpu_ms_per_iteration']:.1f}"])
    lines += text_table(rows, right=(0, 1, 2, 3, 4, 5, 6)).splitlines()
    lines.append(f"(workers = data.num_workers of each of the two loaders; {result['settings']['iterations']} timed "
                 f"iterations per row after {result['settings']['warmup']} + 2 per worker untimed; CPU ms/it: the "
                 f"workers' CPU time over their life, warm-up included, and the training process's over the timed "
                 f"iterations)")
    c = result["cores_per_gpu"]
    lines += ["", f"cores per GPU at {c['step_ms']:g} ms per step (batch 1): {c['cores']} = ceil({c['loading_ms_per_iteration']:.1f} / "
              f"{c['step_ms']:g}) = {c['workers']} loading + 1 training loop; loading time per iteration from {c['from']}; "
              f"data.num_workers >= {c['num_workers_per_stream']} (source item {c['source_item_ms']:.1f} ms, "
              f"target item {c['target_item_ms']:.1f} ms)"]
    lines += ["", *_cost_lines(result["per_sample"], sizes)]
    return "\n".join(lines)


def _cost_lines(costs: dict[str, Any], sizes: dict[str, Any]) -> list[str]:
    src, trg = costs["source"], costs["target"]
    s_in, t_in = _size(sizes["source_input"]), _size(sizes["target_input"])
    names = {
        "pil_decode": "PIL decode (RGB)",
        "pil_decode_resize": "PIL decode + bilinear resize to {}",
        "cv2_decode": "cv2 decode",
        "cv2_decode_resize": "cv2 decode + INTER_LINEAR resize to {}",
        "torchvision_decode_png": "torchvision.io.decode_png (bytes in memory)",
        "label_pil_decode": "label: PIL palette decode",
        "label_train_ids": "label: decode + id -> train id",
        "label_nearest_resize": "label: nearest resize to {}",
        "preprocess": "preprocess (BGR - mean, float32, CHW) at {}",
        "item": "whole dataset item",
    }
    rows = [["operation", "ms"]]
    for key, ms in src["ms"].items():
        rows.append([f"GTA5   {names[key].format(s_in)}", f"{ms:.1f}"])
    for key, ms in trg["ms"].items():
        rows.append([f"Cityscapes {names[key].format(t_in)}", f"{ms:.1f}"])
    return [f"one process, per sample (mean of {costs['repeats']}; torch threads 1, cv2 threads 0; GTA5 image "
            f"{src['mb']:.2f} MB, Cityscapes {trg['mb']:.2f} MB):",
            *text_table(rows, right=(1,)).splitlines(),
            f"cv2.imread of the palette label gives {costs['cv2_label_channels']} channel(s): "
            + ("colours, not label ids" if costs["cv2_label_channels"] != 1 else "ids")]
