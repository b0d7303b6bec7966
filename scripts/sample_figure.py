"""Draw docs/benchmark_samples.png: one source and one target scene of the built-in
benchmark, each beside its colourised label map.

Usage: python scripts/sample_figure.py [--seed N] [--index I] [--out PATH]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from simtune.data.synth import generate_benchmark  # noqa: E402
from simtune.labels import CITYSCAPES_ID_TO_TRAIN, colorize, lookup_table  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "docs" / "benchmark_samples.png"


def sample_pairs(root: Path, index: int) -> list[tuple[str, Path, Path]]:
    """(title, image, label) of the index-th source image and target train image."""
    source = root / "gta5"
    name = f"{index + 1:05d}.png"
    target = sorted((root / "cityscapes" / "leftImg8bit" / "train").rglob("*.png"))[index]
    stem, city = target.name.removesuffix("_leftImg8bit.png"), target.parent.name
    target_label = root / "cityscapes" / "gtFine" / "train" / city / f"{stem}_gtFine_labelIds.png"
    return [("source (GTA5 layout)", source / "images" / name, source / "labels" / name),
            (f"target (Cityscapes layout, {city})", target, target_label)]


def draw_figure(pairs: list[tuple[str, Path, Path]], out: Path) -> None:
    """A 2x2 grid: rows are domains, columns are image and colourised label (train ids)."""
    to_train = lookup_table(CITYSCAPES_ID_TO_TRAIN, 256)
    fig, axes = plt.subplots(2, 2, figsize=(10, 5.6), constrained_layout=True)
    for row, (title, image_path, label_path) in zip(axes, pairs):
        label = colorize(to_train[np.asarray(Image.open(label_path))])  # (H, W, 3)
        row[0].imshow(np.asarray(Image.open(image_path)))
        row[0].set_title(f"{title}: image")
        row[1].imshow(label, interpolation="nearest")
        row[1].set_title(f"{title}: label")
        for ax in row:
            ax.set_axis_off()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="benchmark seed")
    parser.add_argument("--index", type=int, default=0, help="which image of each domain")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="PNG to write")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        count = args.index + 1
        root = Path(tmp) / "bench"
        generate_benchmark(root, seed=args.seed, num_source=count, num_target_train=3 * count,
                           num_target_val_per_city=1, workers=1)
        draw_figure(sample_pairs(root, args.index), args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
