"""Builders: turn a ``Config`` into plain objects (datasets, networks, optimizers).

Nothing below the builders sees a ``Config``: models, losses and banks take plain arguments.
The datasets and the segmenter are built where the layers below need them too
(``data.build.datasets_from_config``, ``models.segmenter_from_config``); this module uses
those same functions.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from simtune.data.build import datasets_from_config
from simtune.errors import ConfigError
from simtune.labels import STUFF_IDS, THING_IDS
from simtune.models import Discriminator, Segmenter, build_discriminator, load_init_weights, segmenter_from_config
from simtune.schema import Config, RuntimeConfig, StageConfig
from simtune.sim import SimMatcher

build_datasets = datasets_from_config  # every dataset of a run, checked up front (returns ``DataSets``)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def device_type(name: str) -> str:
    """``runtime.device`` as the device a run trains on: ``auto`` -> ``cuda`` when present, else ``cpu``."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def pick_device(name: str) -> torch.device:
    """``device_type(name)``; ``cuda`` without CUDA is a user error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("runtime.device: 'cuda' requested but torch sees no CUDA device")
    return torch.device(device_type(name))


def configure_device(runtime: RuntimeConfig, device: torch.device) -> None:
    """Torch's process-wide switches for a run: CPU threads, cuDNN autotuning, deterministic kernels.

    ``runtime.deterministic`` makes every op with a deterministic CUDA kernel use it (and turns
    autotuning off, which picks kernels by timing); ops without one, such as the backward of
    bilinear upsampling, warn and stay nondeterministic, so two runs of one seed on one GPU
    still differ a little: measure that floor, do not assume it is zero.
    """
    if runtime.threads:
        torch.set_num_threads(runtime.threads)
    if device.type != "cuda":
        return
    torch.backends.cudnn.benchmark = runtime.cudnn_benchmark and not runtime.deterministic
    torch.backends.cudnn.deterministic = runtime.deterministic
    if runtime.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's condition for repeatable GEMMs
    torch.use_deterministic_algorithms(runtime.deterministic, warn_only=True)


@dataclass
class Nets:
    """The networks of one stage: G, D, and D_aux for the multi-level variant."""

    segmenter: Segmenter
    discriminator: Discriminator
    discriminator_aux: Discriminator | None

    def modules(self) -> dict[str, nn.Module]:
        out: dict[str, nn.Module] = {"segmenter": self.segmenter, "discriminator": self.discriminator}
        if self.discriminator_aux is not None:
            out["discriminator_aux"] = self.discriminator_aux
        return out


def build_nets(cfg: Config, device: torch.device) -> tuple[Nets, str]:
    """Freshly initialised networks: the same weights every call for the same seed.

    Stage 2 calls this again to re-initialise "from the same initial weights" (eq. 13).
    Returns:
        the networks on ``device`` and a one-line report of the weight loading.
    """
    seed_everything(cfg.seed)
    m = cfg.model
    seg = segmenter_from_config(m)
    report = f"initial weights: random (seed {cfg.seed})"
    if m.init_weights:
        report = load_init_weights(seg, Path(m.init_weights)).summary()
    d_width = cfg.discriminator.width
    disc = build_discriminator(m.num_classes, width=d_width)
    disc_aux = build_discriminator(m.num_classes, width=d_width) if m.multi_level else None
    nets = Nets(seg, disc, disc_aux)
    channels_last = device.type == "cuda" and cfg.runtime.channels_last
    for module in nets.modules().values():
        module.to(device)
        if channels_last:
            module.to(memory_format=torch.channels_last)
    return nets, report


def build_optimizers(nets: Nets, stage: StageConfig, cfg: Config) -> dict[str, torch.optim.Optimizer]:
    """SGD Nesterov for G (classifier at ``head_lr_mult``x), Adam for each D."""
    groups = nets.segmenter.param_groups(stage.lr, stage.head_lr_mult)
    out: dict[str, torch.optim.Optimizer] = {
        "segmenter": torch.optim.SGD(groups, lr=stage.lr, momentum=stage.momentum, nesterov=True,
                                     weight_decay=stage.weight_decay),
    }
    d = cfg.discriminator
    for name in ("discriminator", "discriminator_aux"):
        module = nets.modules().get(name)
        if module is not None:
            opt = torch.optim.Adam(module.parameters(), lr=d.lr, betas=d.betas)
            for group in opt.param_groups:
                group["initial_lr"] = d.lr
            out[name] = opt
    return out


def build_matcher(cfg: Config, stage: StageConfig, nets: Nets, device: torch.device) -> SimMatcher:
    """The stuff/instance matcher of one stage, its banks on ``device``."""
    s = cfg.sim
    return SimMatcher(
        num_classes=cfg.model.num_classes,
        stuff_ids=STUFF_IDS,
        thing_ids=THING_IDS,
        feature_channels=nets.segmenter.feature_channels,
        bank_size=stage.bank_size,
        instances_per_image=s.instances_per_image,
        target_regions_per_class=s.target_regions,
        reduction=s.l1,
        skip_until_full=s.skip_until_full,
        self_check=nets.segmenter.classify if s.bank_self_check else None,
        device=device,
    )
