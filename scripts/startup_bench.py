"""Time from a trial's start to its first training iteration, against the size of the source folder.

    python scripts/startup_bench.py [--sizes 200,2000] [--repeats 3]

Writes GTA5-layout folders of each size with images at GTA5's own size (1914x1052 RGB PNGs and
their palette labels) and a small Cityscapes-layout target, then times, in this process:

- ``trial``: what a sweep trial does at its start (``run_pipeline(..., check_files=2)``, the
  dataset already checked by the command's pre-flight), up to the end of one stage-1 iteration;
- ``first check``: what every trial start did before (``datasets_from_config`` with every file
  decoded), and what a command's pre-flight now does once per file list;
- ``recorded check``: the pre-flight of a later command on the same files (a record is found:
  one ``stat`` per file, nothing decoded).

16 distinct images are written per folder; the other names are hard links to them, so decoding
costs what it would for distinct files but the page cache is warm (disk reads are not timed).
The run is the small network at 160x96 for one iteration: what is timed is the start, not training.
Prints one line per size and the ratios; medians over ``--repeats``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from simtune import config
from simtune.data.build import datasets_from_config
from simtune.data.check import FILES_OPENED, records_dir
from simtune.testing import SYNTHETIC_EXPERIMENT, make_cityscapes_tree, write_png
from simtune.train.loop import Callback
from simtune.train.pipeline import run_pipeline

GTA5_SIZE = (1914, 1052)  # (W, H) of GTA5's images
DISTINCT = 16
LABEL_IDS = np.array([7, 8, 11, 17, 21, 23, 24, 26], dtype=np.uint8)


class FirstIteration(Exception):
    """Raised by ``StopAtFirstEval`` to end the run once stage 1 has trained one iteration."""


class StopAtFirstEval(Callback):
    def on_eval(self, stage: str, step: int, metrics: dict[str, float], checkpoint: Path | None) -> None:
        if stage == "stage1":
            raise FirstIteration


def street_like(rng: np.random.Generator, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """An (H, W, 3) image with gradients, edges and noise (compresses like a render) and its label ids."""
    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    blocks = ((x // rng.integers(40, 120)) + (y // rng.integers(30, 90))) % len(LABEL_IDS)
    base = np.stack([x * 255 // width, y * 255 // height, blocks * 30], axis=-1)
    image = np.clip(base + rng.integers(-12, 13, size=base.shape), 0, 255).astype(np.uint8)
    return image, LABEL_IDS[blocks]


def gta5_folder(root: Path, count: int, rng: np.random.Generator) -> Path:
    """``count`` samples in the GTA5 layout, ``DISTINCT`` real files and hard links to them."""
    for index in range(1, count + 1):
        image, label = root / "images" / f"{index:05d}.png", root / "labels" / f"{index:05d}.png"
        if index <= DISTINCT:
            pixels, ids = street_like(rng, GTA5_SIZE)
            write_png(image, pixels)
            write_png(label, ids, palette=True)
        else:
            source = (index - 1) % DISTINCT + 1
            os.link(root / "images" / f"{source:05d}.png", image)
            os.link(root / "labels" / f"{source:05d}.png", label)
    return root


def timed(action: object) -> float:
    start = time.perf_counter()
    with contextlib.suppress(FirstIteration):
        action()  # type: ignore[operator]
    return time.perf_counter() - start


def measure(source: Path, target: Path, work: Path, repeats: int) -> dict[str, float]:
    cfg = config.load(SYNTHETIC_EXPERIMENT, [
        f"data.source.root={source}", f"data.target.root={target}", "stage1.iters=1", "eval.every=1",
        "eval.max_images=1", "init.source_pretrain.iters=0", "mode=aa_sim", "data.num_workers=0",
        "runtime.threads=1"])
    trial, first, recorded = [], [], []
    for repeat in range(repeats):
        for record in records_dir().glob("*.json"):
            record.unlink()
        first.append(timed(lambda: datasets_from_config(cfg)))
        recorded.append(timed(lambda: datasets_from_config(cfg)))
        trial.append(timed(functools.partial(run_pipeline, cfg, work / f"run{repeat}", callbacks=[StopAtFirstEval()],
                                             check_files=FILES_OPENED)))
    return {"trial_s": statistics.median(trial), "first_check_s": statistics.median(first),
            "recorded_check_s": statistics.median(recorded)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="200,2000", help="source images per folder (comma-separated)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="simtune-startup-") as tmp:
        folder = Path(tmp)
        os.environ["XDG_CACHE_HOME"] = str(folder / "cache")  # records of this benchmark only
        target = folder / "cityscapes"
        make_cityscapes_tree(target, "train", size=(256, 128))
        make_cityscapes_tree(target, "val", size=(256, 128))
        rng = np.random.default_rng(0)
        rows = {}
        for size in sizes:
            source = gta5_folder(folder / f"gta5_{size}", size, rng)
            rows[size] = measure(source, target, folder / f"work_{size}", args.repeats)
            r = rows[size]
            print(f"{size:6d} source images: trial start to first iteration {r['trial_s']:6.2f} s | "
                  f"first check (decode all) {r['first_check_s']:7.2f} s | "
                  f"recorded check {r['recorded_check_s']:5.2f} s", flush=True)
    small, large = rows[sizes[0]], rows[sizes[-1]]
    print(f"ratio {sizes[-1]} / {sizes[0]}: trial start {large['trial_s'] / small['trial_s']:.2f}, "
          f"first check {large['first_check_s'] / small['first_check_s']:.2f}, "
          f"recorded check {large['recorded_check_s'] / small['recorded_check_s']:.2f}")


if __name__ == "__main__":
    main()
