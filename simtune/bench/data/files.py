"""Paper-size images in the GTA5 and Cityscapes layouts, written for ``simtune bench --data``."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


from simtune.bench.data.settings import CITIES, DATA_SIZES, DataBenchSettings, GTA5_LABEL_IDS, PAGE_CACHE_NOTE

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
                 "mean_image_mb": float(np.mean(image_bytes)) / 1e6,
                 "mean_label_kb": float(np.mean(label_bytes)) / 1e3},
        "cityscapes": {"root": str(cityscapes), "files": s.images, "distinct": distinct,
                       "size": list(sizes.target_file), "mean_image_mb": float(np.mean(target_bytes)) / 1e6},
        "page_cache": PAGE_CACHE_NOTE,
    }


