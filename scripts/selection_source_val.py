"""Source-validation mIoU of every run's final model: the validator practitioners use by default.

    python scripts/selection_source_val.py /work/grid/lambda_ci_10seeds/runs \
        --out docs/data/lambda_ci_grid_10seeds.source_val.csv [--count 80]

The built-in benchmark has no held-out source split: training reads all of ``gta5/``
(``num_source`` images). The held-out source set is therefore images ``num_source ..
num_source + count - 1`` of the benchmark's own generator and seed
(``simtune.data.synth.write_source_images``): the same distribution, never written to
``data/synthetic``, so no run has read them. They are rendered once into a temporary folder
and every run's final segmenter (``RunDir.weights()``: the last finished stage's ``model.pt``)
is scored on them at the run's source training size, labels at full resolution, on the CPU
with one thread. Only final weights exist, so there is no within-run source-val curve.

Writes one row per run: ``lambda_ci`` (0 for mode aa), ``seed``, ``source_val/miou`` (%).
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from simtune.data.datasets import SegmentationDataset, list_samples
from simtune.data.stats import SOURCE
from simtune.data.synth.write import write_source_images
from simtune.errors import SimtuneError
from simtune.evaluation import evaluate_model
from simtune.heldout import HeldoutRun, heldout_run
from simtune.models import load_trained, segmenter_from_config
from simtune.rundir import RunDir

KEY = "source_val/miou"


def run_key(run_dir: Path) -> tuple[float, int]:
    """(lambda_ci, seed) of a run: lambda_ci 0 for mode aa (no matching), as in ``export_grid.py``."""
    cfg = RunDir(run_dir).config()
    return (cfg.stage1.lambda_ci if cfg.mode != "aa" else 0.0), cfg.seed


def score(run: HeldoutRun, data: SegmentationDataset) -> float:
    """mIoU (%) of ``run``'s final segmenter on the held-out source images."""
    segmenter = load_trained(segmenter_from_config(run.cfg.model), run.weights)
    segmenter.eval()
    with torch.no_grad():
        result = evaluate_model(lambda x: segmenter(x).logits, DataLoader(data), device="cpu")
    return float(result.miou)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs_dir", type=Path, help="a folder of run directories (an ablation's runs/)")
    parser.add_argument("--out", type=Path, required=True, help="CSV to write")
    parser.add_argument("--count", type=int, default=80, help="held-out source images (default 80)")
    args = parser.parse_args(argv)
    folders = sorted(p for p in args.runs_dir.iterdir() if RunDir(p).finished()) if args.runs_dir.is_dir() else []
    if args.count < 1 or not folders:
        print(f"{args.runs_dir}: expected a folder of finished run directories and --count >= 1 "
              f"(got {len(folders)} runs, --count {args.count})", file=sys.stderr)
        return 2
    try:
        runs = [heldout_run(folder) for folder in folders]  # every run checked before any compute
    except SimtuneError as exc:
        print(exc, file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    spec, start = runs[0].benchmark, time.perf_counter()
    rows: list[tuple[float, int, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = write_source_images(Path(tmp), seed=spec["seed"], first=spec["num_source"], count=args.count,
                                   size=(spec["source_size"][0], spec["source_size"][1]))
        data = SegmentationDataset(SOURCE, list_samples(SOURCE, root), size=runs[0].cfg.data.source.size,
                                   label_size="original")
        for folder, run in zip(folders, runs):
            lam, seed = run_key(folder)
            rows.append((lam, seed, score(run, data)))
    rows.sort()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["lambda_ci", "seed", KEY])
        writer.writerows([lam, seed, f"{miou:.4f}"] for lam, seed, miou in rows)
    elapsed = time.perf_counter() - start
    print(f"{len(rows)} runs x {args.count} held-out source images in {elapsed:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
