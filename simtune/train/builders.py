"""Builders: turn a ``Config`` into plain objects (datasets, networks, optimizers).

Nothing below the builders sees a ``Config``: models, losses and banks take plain arguments.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from simtune.schema import Config, DomainConfig, StageConfig
from simtune.data.datasets import Sample, SegmentationDataset, check_samples, list_samples, split_samples
from simtune.errors import ConfigError
from simtune.labels import STUFF_IDS, THING_IDS
from simtune.models import Discriminator, Segmenter, build_discriminator, build_segmenter, load_init_weights
from simtune.sim import SimMatcher

VAL_PARTS = ("selection", "report")


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; ``cuda`` without CUDA is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("runtime.device: 'cuda' requested but torch sees no CUDA device")
    return torch.device(name)


def domain_samples(domain: DomainConfig, *, split: str | None = None, with_labels: bool = True) -> list[Sample]:
    """Samples of one domain; raises ``DataError`` on a missing root or a broken layout."""
    if not domain.root:
        raise ConfigError(f"data: the {domain.dataset} root is not set (data.source.root / data.target.root)")
    return list_samples(
        domain.dataset,
        Path(domain.root),
        split or domain.split,
        images_dir=domain.images_dir,
        list_file=Path(domain.list_file) if domain.list_file else None,
        with_labels=with_labels,
    )


@dataclass(frozen=True)
class DataSets:
    """Every dataset one pipeline run touches, checked up front."""

    source: SegmentationDataset
    target: SegmentationDataset
    target_labelled: SegmentationDataset | None  # target train with labels: target_only mode
    val: dict[str, SegmentationDataset]  # "selection" / "report", labels at full resolution


def build_datasets(cfg: Config, *, check_files: int | None = None) -> DataSets:
    """All datasets of a run, with their layouts and label ids checked before any compute.

    Args:
        check_files: label files per dataset opened by the up-front check (None = all).
    """
    src, trg = cfg.data.source, cfg.data.target
    src_samples = domain_samples(src)
    trg_samples = domain_samples(trg, with_labels=cfg.mode == "target_only")
    val_samples = domain_samples(trg, split=cfg.data.val_split)
    check_samples(src.dataset, src_samples, max_files=check_files)
    check_samples(trg.dataset, val_samples, max_files=check_files)
    val = {}
    for part in VAL_PARTS:
        chosen = split_samples(val_samples, part)
        if cfg.eval.max_images:
            chosen = chosen[: cfg.eval.max_images]
        val[part] = SegmentationDataset(trg.dataset, chosen, size=trg.size, label_size="original")
    labelled = None
    if cfg.mode == "target_only":
        check_samples(trg.dataset, trg_samples, max_files=check_files)
        labelled = SegmentationDataset(trg.dataset, trg_samples, size=trg.size)
    return DataSets(
        source=SegmentationDataset(src.dataset, src_samples, size=src.size),
        target=SegmentationDataset(trg.dataset, trg_samples, size=trg.size),
        target_labelled=labelled,
        val=val,
    )


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
    seg = build_segmenter(m.backbone, m.num_classes, aspp_all_branches=m.aspp_all_branches,
                          multi_level=m.multi_level, width=m.width)
    report = "initial weights: random (seed %d)" % cfg.seed
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
