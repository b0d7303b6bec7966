"""Writing the benchmark: every image's own rng, the GTA5 and Cityscapes file layouts, a
process pool, and an atomic rename so a killed run leaves nothing half-written."""

from __future__ import annotations

import json
import multiprocessing
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from simtune.data.synth import scene
from simtune.data.synth.style import SRC_STYLE, TRG_STYLE
from simtune.errors import DataError, SimtuneError
from simtune.files import publish_new_folder, staging_folder

GENERATOR_VERSION = 2  # bump whenever drawing changes, so stale benchmark dirs are not reused
SOURCE, TARGET_TRAIN, TARGET_VAL = 0, 1, 2  # the domain key of each image's rng
TRAIN_CITIES = ("aachen", "bochum", "bremen")
VAL_CITIES = ("frankfurt", "lindau", "munster")  # splits.py: frankfurt selects, the rest report
# A benchmark folder's parts: each domain in the layout (and under the name) of its dataset format, and the
# spec, written last, so that its presence marks a finished benchmark.
SOURCE_FOLDER, TARGET_FOLDER, SPEC_FILE = "gta5", "cityscapes", "benchmark.json"


@dataclass(frozen=True)
class BenchmarkPaths:
    """Where ``generate_benchmark`` put the two domains."""

    source_root: Path  # GTA5 layout: images/, labels/
    target_root: Path  # Cityscapes layout: leftImg8bit/, gtFine/


@dataclass(frozen=True)
class _Job:
    """One image to render and where its two files go."""

    domain: int  # SOURCE, TARGET_TRAIN or TARGET_VAL: the rng's second key
    index: int  # the rng's third key, unique within the domain
    size: tuple[int, int]  # (W, H)
    image: Path
    label: Path


def _render_job(seed: int, job: _Job) -> None:
    rng = np.random.default_rng([seed, job.domain, job.index])
    image, label = scene.render_scene(rng, SRC_STYLE if job.domain == SOURCE else TRG_STYLE, job.size)
    Image.fromarray(image).save(job.image)  # (H, W, 3) uint8 -> RGB PNG
    Image.fromarray(label).save(job.label)  # (H, W) uint8 -> "L" PNG


def _city_jobs(root: Path, domain: int, split: str, per_city: list[tuple[str, int]],
               size: tuple[int, int]) -> list[_Job]:
    jobs: list[_Job] = []
    for city, count in per_city:
        for frame in range(count):
            stem = f"{city}/{city}_000000_{frame:06d}"
            jobs.append(_Job(domain, len(jobs), size,
                             root / "leftImg8bit" / split / f"{stem}_leftImg8bit.png",
                             root / "gtFine" / split / f"{stem}_gtFine_labelIds.png"))
    return jobs


def _plan(root: Path, spec: dict[str, Any]) -> list[_Job]:
    """Every image of the benchmark under ``root``, in a fixed order."""
    src, trg = root / SOURCE_FOLDER, root / TARGET_FOLDER
    source_size, target_size = tuple(spec["source_size"]), tuple(spec["target_size"])
    jobs = [_Job(SOURCE, i, source_size, src / "images" / f"{i + 1:05d}.png",
                 src / "labels" / f"{i + 1:05d}.png") for i in range(spec["num_source"])]
    n = spec["num_target_train"]  # split over the train cities, the first ones take the rest
    train = [(city, n // 3 + int(i < n % 3)) for i, city in enumerate(TRAIN_CITIES)]
    val = [(city, spec["num_target_val_per_city"]) for city in VAL_CITIES]
    return (jobs + _city_jobs(trg, TARGET_TRAIN, "train", train, target_size)
            + _city_jobs(trg, TARGET_VAL, "val", val, target_size))


def _one_thread() -> None:
    cv2.setNumThreads(1)  # the pool already uses every core it was given


def _render_all(root: Path, spec: dict[str, Any], workers: int) -> None:
    jobs = _plan(root, spec)
    folders = {p for job in jobs for p in (job.image.parent, job.label.parent)}
    folders |= {root / TARGET_FOLDER / top / split / city  # every city, even one left empty
                for top in ("leftImg8bit", "gtFine")
                for split, cities in (("train", TRAIN_CITIES), ("val", VAL_CITIES))
                for city in cities}
    for folder in sorted(folders):
        folder.mkdir(parents=True, exist_ok=True)
    work = partial(_render_job, int(spec["seed"]))
    if workers == 1:
        for job in jobs:
            work(job)
        return
    context = multiprocessing.get_context("spawn")  # fork would copy a caller's torch threads
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_one_thread) as pool:
        list(pool.map(work, jobs, chunksize=max(1, len(jobs) // (8 * workers))))


def _readme(spec: dict[str, Any]) -> str:
    (sw, sh), (tw, th) = spec["source_size"], spec["target_size"]
    return (
        f"Synthetic street-scene benchmark written by simtune.data.synth (generator version "
        f"{spec['version']}, seed {spec['seed']}). gta5/ is the labelled source domain in the "
        f"GTA5 layout: {spec['num_source']} images of {sw}x{sh} (images/NNNNN.png, "
        f"labels/NNNNN.png). cityscapes/ is the target domain in the Cityscapes layout, "
        f"{tw}x{th}: {spec['num_target_train']} train images in {', '.join(TRAIN_CITIES)} and "
        f"{spec['num_target_val_per_city']} val images in each of {', '.join(VAL_CITIES)}. "
        "Labels are 8-bit PNGs of Cityscapes label ids (0 = void, the target's ego hood). "
        "The source is saturated and nearly flat, like a game; the target is muted, textured, "
        "noisy and blurred, seen from a higher camera, and its things (cars, people, signs, "
        "lights, bikes) have other shapes and colours, while stuff changes less. benchmark.json "
        "holds the generation arguments; the same arguments give byte-identical files.\n"
    )


def _check_existing(out: Path, spec: dict[str, Any]) -> None:
    """Accept ``out`` only if its benchmark.json matches ``spec`` exactly."""
    try:
        found = json.loads((out / SPEC_FILE).read_text())
    except (OSError, ValueError):
        raise DataError(f"{out} exists but is not a complete benchmark (no readable "
                        "benchmark.json); delete it or choose another --out") from None
    if found != spec:
        keys = sorted(k for k in set(spec) | set(found) if spec.get(k) != found.get(k))
        raise DataError(f"{out} holds a different benchmark (differs in {', '.join(keys)}); "
                        "delete it or choose another --out")


def _validate(spec: dict[str, Any], workers: int) -> None:
    for name in ("num_source", "num_target_train", "num_target_val_per_city", "workers"):
        value = workers if name == "workers" else spec[name]
        if value < 1:
            raise SimtuneError(f"{name} must be >= 1, but got {value}")
    if spec["seed"] < 0:
        raise SimtuneError(f"seed must be >= 0, but got {spec['seed']}")
    for name in ("source_size", "target_size"):
        if len(spec[name]) != 2 or spec[name][0] < 32 or spec[name][1] < 16:
            raise SimtuneError(f"{name} must be (W, H) with W >= 32 and H >= 16, "
                               f"but got {tuple(spec[name])}")


def generate_benchmark(
    out: Path, *, seed: int = 0, num_source: int = 400, num_target_train: int = 300,
    num_target_val_per_city: int = 40, source_size: tuple[int, int] = (320, 180),
    target_size: tuple[int, int] = (256, 128), workers: int = 2,
) -> BenchmarkPaths:
    """Write the synthetic GTA5 -> Cityscapes benchmark to ``out``, atomically and once.

    Everything is drawn into a staging folder beside ``out`` (``files.staging_folder``) and
    renamed at the end (``files.publish_new_folder``), so a killed run never leaves a half
    benchmark at ``out``. If ``out`` already holds
    a benchmark made with the same arguments it is returned untouched.

    Args:
        out: benchmark folder; gets ``gta5/``, ``cityscapes/``, README.txt, benchmark.json.
        seed: the same seed gives byte-identical files, whatever ``workers`` is.
        num_source: source (GTA5-layout) images.
        num_target_train: target train images, split over aachen, bochum, bremen.
        num_target_val_per_city: target val images in each of frankfurt, lindau, munster.
        source_size: source image size (W, H), px.
        target_size: target image size (W, H), px.
        workers: processes drawing images; 1 draws in this process.
    Returns:
        The source and target dataset roots.
    Raises:
        SimtuneError: a count, size, seed or ``workers`` out of range.
        DataError: ``out`` exists but is not this benchmark.
    """
    out = Path(out)
    spec: dict[str, Any] = {
        "generator": "simtune.data.synth", "version": GENERATOR_VERSION, "seed": seed,
        "num_source": num_source, "num_target_train": num_target_train,
        "num_target_val_per_city": num_target_val_per_city,
        "source_size": list(source_size), "target_size": list(target_size),
    }
    _validate(spec, workers)
    paths = BenchmarkPaths(out / SOURCE_FOLDER, out / TARGET_FOLDER)
    if out.exists():
        _check_existing(out, spec)
        return paths
    staging = staging_folder(out)
    try:
        _render_all(staging, spec, workers)
        (staging / "README.txt").write_text(_readme(spec))
        # Written last: its presence marks a finished benchmark.
        (staging / SPEC_FILE).write_text(json.dumps(spec, indent=2, sort_keys=True))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if not publish_new_folder(staging, out):
        _check_existing(out, spec)  # another process finished the same benchmark first
    return paths


def write_source_images(root: Path, *, seed: int, first: int, count: int,
                        size: tuple[int, int] = (320, 180)) -> Path:
    """Write source images ``first .. first + count - 1`` of benchmark ``seed`` in the GTA5
    layout under ``root`` (``images/``, ``labels/``), in this process.

    Image ``i`` is byte-identical to the benchmark's source image ``i`` (file
    ``{i + 1:05d}.png``); indices at or past the benchmark's ``num_source`` give a held-out
    source set drawn from the same distribution, which training never sees.

    Returns:
        ``root``.
    """
    if first < 0 or count < 1:
        raise SimtuneError(f"first must be >= 0 and count >= 1, but got first={first}, count={count}")
    for folder in ("images", "labels"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for i in range(first, first + count):
        name = f"{i + 1:05d}.png"
        _render_job(seed, _Job(SOURCE, i, size, root / "images" / name, root / "labels" / name))
    return root
