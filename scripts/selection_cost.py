"""Time the label-free validators against one evaluation, on the built-in benchmark.

    python scripts/selection_cost.py experiments/synthetic.yaml [--set k=v ...] [--repeats 5]

Trains nothing: the model is the experiment's network at initialisation, or the segmenter
weights of a finished run (``--weights RUN/stage2/model.pt``; DEV's logistic regression may
take more L-BFGS steps on trained features).
Prints the median wall time of an evaluation (selection + report parts, as ``simtune train``
runs it) and of ``compute_validators`` with and without DEV, timed in turn within each repeat,
and the median of the per-repeat ratios; one torch thread.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from simtune.config import load
from simtune.models import load_trained
from simtune.selection.compute import compute_validators, load_subset
from simtune.train.builders import build_datasets, build_nets
from simtune.train.stage import eval_metrics


def seconds(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("experiment", type=Path)
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--pixels", type=int, default=256)
    parser.add_argument("--source-images", type=int, default=6)
    parser.add_argument("--weights", type=Path, default=None, help="a run's model.pt")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cfg = load(args.experiment, args.set)
    data = build_datasets(cfg)
    device = torch.device("cpu")
    nets, _ = build_nets(cfg, device)
    if args.weights is not None:
        load_trained(nets.segmenter, args.weights)
    nets.segmenter.eval()
    start = time.perf_counter()
    with_dev = load_subset(data.target, images=args.images, pixels=args.pixels, seed=0,
                           source=data.source, source_images=args.source_images)
    load_s = time.perf_counter() - start
    no_dev = load_subset(data.target, images=args.images, pixels=args.pixels, seed=0)
    rows = []  # interleaved, so a change of machine load hits all three alike
    for _ in range(args.repeats):
        evaluation = seconds(lambda: eval_metrics(nets, data.val, device, False))
        nets.segmenter.eval()
        rows.append((evaluation, seconds(lambda: compute_validators(nets.segmenter, no_dev)),
                     seconds(lambda: compute_validators(nets.segmenter, with_dev))))
    evaluation = statistics.median(r[0] for r in rows)
    plain_ratio = statistics.median(r[1] / r[0] for r in rows)
    full_ratio = statistics.median(r[2] / r[0] for r in rows)
    plain, full = statistics.median(r[1] for r in rows), statistics.median(r[2] for r in rows)
    print(f"val images: {sum(len(v) for v in data.val.values())}; subset: {args.images} target "
          f"images x {args.pixels} SND pixels, {args.source_images} source images for DEV")
    print(f"evaluation            {evaluation:.3f} s")
    print(f"validators, no DEV    {plain:.3f} s  (median ratio +{100 * plain_ratio:.1f}%)")
    print(f"validators with DEV   {full:.3f} s  (median ratio +{100 * full_ratio:.1f}%)")
    print(f"loading the subset    {load_s:.3f} s  (once per stage)")
    print(compute_validators(nets.segmenter, with_dev))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
