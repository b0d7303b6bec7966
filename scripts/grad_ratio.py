"""How strong is the adversarial loss against the segmentation loss? The ratio of the
gradient norms ||d(lambda_adv L_adv)/dG|| / ||d(lambda_seg L_seg)/dG|| over the segmenter's
parameters, measured during a real +AA stage 1 (G and D both training).

Usage:
    python scripts/grad_ratio.py EXP.yaml [--weights stage0/model.pt] [--iters 200] [--every 20]
        [--set KEY=VALUE ...]

Prints the ratio at each measurement and its median; the ratio scales linearly with
``stage1.lambda_adv``, so the lambda_adv giving ratio r is lambda_adv * r / median.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from simtune import config, schema
from simtune.data.loaders import Loading
from simtune.models import load_trained
from simtune.seeds import derived_seed
from simtune.train.builders import build_datasets, build_nets, build_optimizers, pick_device
from simtune.train.steps import adaptation_step, gan_loss, seg_loss, step_weights, upsampled_softmax, SOURCE_LABEL
from simtune.train.streams import stream


def grad_norm(loss: torch.Tensor, params: list[torch.nn.Parameter]) -> float:
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return float(torch.stack([(g.float() ** 2).sum() for g in grads if g is not None]).sum().sqrt())


def measure(cfg: schema.Config, weights: Path | None, iters: int, every: int) -> list[float]:
    """Train +AA for ``iters`` steps; every ``every`` steps, the adversarial / segmentation ratio."""
    device = pick_device(cfg.runtime.device)
    data = build_datasets(cfg)
    nets, _ = build_nets(cfg, device)
    if weights is not None:
        load_trained(nets.segmenter, weights)
    optimizers = build_optimizers(nets, cfg.stage1, cfg)
    w = step_weights(cfg.stage1, "aa", cfg.discriminator.gan)
    params = [p for p in nets.segmenter.parameters() if p.requires_grad]
    src = stream(data.source, seed=derived_seed(cfg.seed, "seg_stream"), start=0, count=iters, loading=Loading(),
                 device=device)
    trg = stream(data.target, seed=derived_seed(cfg.seed, "target_stream"), start=0, count=iters, loading=Loading(),
                 device=device)
    ratios = []
    for i, (s, t) in enumerate(zip(src, trg)):
        if i % every == 0:
            src_out, trg_out = nets.segmenter(s["image"]), nets.segmenter(t["image"])
            seg = w.lambda_seg * seg_loss(src_out.logits, s["label"])
            d_out = nets.discriminator(upsampled_softmax(trg_out.logits, tuple(t["image"].shape[-2:])))
            adv = w.lambda_adv * gan_loss(d_out, SOURCE_LABEL, w.gan)
            ratios.append(grad_norm(adv, params) / grad_norm(seg, params))
            print(f"iteration {i}: ratio {ratios[-1]:.3e}", flush=True)
        adaptation_step(nets, optimizers, w, s["image"], s["label"], t["image"])
    return ratios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", type=Path)
    parser.add_argument("--weights", type=Path, default=None, help="segmenter weights to start from")
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--every", type=int, default=20)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    cfg = config.load(args.experiment, args.overrides)
    torch.manual_seed(cfg.seed)
    if cfg.runtime.threads:
        torch.set_num_threads(cfg.runtime.threads)
    ratios = measure(cfg, args.weights, args.iters, args.every)
    print(f"lambda_adv {cfg.stage1.lambda_adv}: median gradient ratio adv/seg {statistics.median(ratios):.3e} "
          f"over {len(ratios)} measurements")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
