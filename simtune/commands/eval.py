"""``simtune eval``: score a folder of prediction PNGs, or a simtune checkpoint."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from simtune.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("eval", help="mIoU of a checkpoint or of a folder of train-id prediction PNGs")
    parser.add_argument("checkpoint", type=Path, nargs="?",
                        help="a run directory, or a model.pt / checkpoint.pt inside one")
    parser.add_argument("--predictions", type=Path, help="folder of train-id PNGs named like the ground truth")
    parser.add_argument("--dataset", default="cityscapes", choices=["cityscapes", "gta5", "synthia"])
    parser.add_argument("--root", type=Path, help="dataset root (with --predictions)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--part", default="all", choices=["all", "selection", "report"],
                        help="val part: selection (frankfurt), report (lindau + munster) or all")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if (args.checkpoint is None) == (args.predictions is None):
        raise ConfigError("give either a CHECKPOINT or --predictions DIR (with --root)")
    if args.predictions is not None:
        return _eval_predictions(args)
    return _eval_checkpoint(args)


def _eval_predictions(args: argparse.Namespace) -> int:
    from simtune.evaluation import evaluate_predictions_dir

    if args.root is None:
        raise ConfigError("--predictions needs --root (the ground-truth dataset root)")
    result = evaluate_predictions_dir(args.predictions, args.dataset, args.root, split=args.split, part=args.part)
    _print(result.to_json(), args.json)
    return 0


def _eval_checkpoint(args: argparse.Namespace) -> int:
    from simtune.train.pipeline import evaluate_checkpoint

    metrics = evaluate_checkpoint(args.checkpoint)
    _print(metrics, args.json)
    return 0


def _print(payload: dict, as_json: bool) -> None:  # type: ignore[type-arg]
    if as_json:
        print(json.dumps(payload))
        return
    for key, value in payload.items():
        if isinstance(value, dict):
            for name, iou in value.items():
                print(f"  {key}/{name:<12} {iou:6.2f}")
        else:
            print(f"{key:<20} {value:.2f}" if isinstance(value, float) else f"{key:<20} {value}")
