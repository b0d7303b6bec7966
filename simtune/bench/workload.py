"""What the benchmark runs: size presets, input scenes, and the training-step variants.

Every variant is the real ``adaptation_step`` on its own networks, built by the training
builders from one config (same seed, so the same initial weights); they differ only in the
step's switches, the matcher and the precision.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from simtune import config
from simtune.bench.reference import ReferenceStyleMatcher
from simtune.schema import Config, Mode
from simtune.data.datasets import image_to_tensor
from simtune.data.synth import SRC_STYLE, TRG_STYLE, render_scene
from simtune.labels import CITYSCAPES_ID_TO_TRAIN, lookup_table
from simtune.sim import SimMatcher
from simtune.train.builders import Nets, build_matcher, build_nets, build_optimizers
from simtune.train.steps import StepWeights, adaptation_step, step_weights


@dataclass(frozen=True)
class SizePreset:
    """Networks and input sizes of one benchmark size (sizes are (W, H) in pixels)."""

    name: str
    backbone: str
    width: int  # small backbone's first-stage channels (ignored for resnet101)
    disc_width: int
    src_size: tuple[int, int]
    trg_size: tuple[int, int]
    lr: float  # stage-1 SGD learning rate (its cost is the same at any value)
    pseudo_images: tuple[int, int]  # the two target-set sizes of the pseudo-label pass


PRESETS: dict[str, SizePreset] = {
    # The paper's setting: DeepLab-v2 R101, GTA5 1280x720 + Cityscapes 1024x512, batch 1 + 1.
    "paper": SizePreset("paper", "resnet101", 32, 64, (1280, 720), (1024, 512), 2.5e-4, (32, 128)),
    # The built-in benchmark (experiments/synthetic.yaml): the small CPU net.
    "small": SizePreset("small", "small", 16, 16, (160, 96), (192, 96), 0.01, (16, 64)),
}
NUM_PAIRS = 2  # distinct source/target scenes, cycled through the steps


def preset_config(preset: SizePreset, *, channels_last: bool, seed: int = 0) -> Config:
    """The training config of a preset (stage 1, mode aa_sim), validated like any experiment."""
    changes = {
        "seed": seed, "mode": "aa_sim",
        "data": {"source": {"size": list(preset.src_size)}, "target": {"size": list(preset.trg_size)}},
        "model": {"backbone": preset.backbone, "width": preset.width},
        "discriminator": {"width": preset.disc_width},
        "stage1": {"lr": preset.lr},
        "runtime": {"channels_last": channels_last},
    }
    return config.build(changes, source="simtune bench")


@dataclass(frozen=True)
class ScenePair:
    """One source and one target image on the device, with their ground truth (train ids)."""

    src_image: Tensor  # (1, 3, Hs, Ws)
    src_label: Tensor  # (1, Hs, Ws) int64
    trg_image: Tensor  # (1, 3, Ht, Wt)
    trg_label: Tensor  # (1, Ht, Wt) int64: for the matcher-only inputs, never trained on


def _scene(seed: int, index: int, target: bool, size: tuple[int, int],
           device: torch.device) -> tuple[Tensor, Tensor]:
    rng = np.random.default_rng([seed, 1 if target else 0, index])
    rgb, label_ids = render_scene(rng, TRG_STYLE if target else SRC_STYLE, size)
    train_ids = lookup_table(CITYSCAPES_ID_TO_TRAIN, 256)[label_ids].astype(np.int64)
    return image_to_tensor(rgb)[None].to(device), torch.from_numpy(train_ids)[None].to(device)


def make_pairs(preset: SizePreset, device: torch.device, seed: int = 0) -> list[ScenePair]:
    """``NUM_PAIRS`` street scenes of the built-in benchmark's generator at the preset's sizes."""
    pairs = []
    for i in range(NUM_PAIRS):
        src_image, src_label = _scene(seed, i, False, preset.src_size, device)
        trg_image, trg_label = _scene(seed, i, True, preset.trg_size, device)
        pairs.append(ScenePair(src_image, src_label, trg_image, trg_label))
    return pairs


@dataclass(frozen=True)
class VariantSpec:
    """How one variant differs: the ablation row, the matcher, precision and layout."""

    description: str
    mode: Mode  # source_only | aa | aa_sim (schema.MODES)
    matcher: str | None  # None | "ours" | "reference"
    fast: bool  # bf16 autocast + channels_last when the device has them (CUDA)
    cuda_only: bool = False


VARIANTS: dict[str, VariantSpec] = {
    "source_only": VariantSpec("source only (L_seg)", "source_only", None, True),
    "aa": VariantSpec("AA: + output-space adversarial loss and D update", "aa", None, True),
    "aa_sim": VariantSpec("AA + SIM, ours", "aa_sim", "ours", True),
    # Splits ours-vs-reference into the precision gain and the matching gain; same as aa_sim off CUDA.
    "aa_sim_fp32": VariantSpec("AA + SIM, ours in fp32", "aa_sim", "ours", False, cuda_only=True),
    "aa_sim_reference": VariantSpec("AA + SIM, reference style (fp32, a sync per region)", "aa_sim",
                                    "reference", False),
}


def default_variants(amp: bool) -> tuple[str, ...]:
    """Every variant that means something on this device (aa_sim_fp32 only with bf16)."""
    return tuple(name for name, spec in VARIANTS.items() if amp or not spec.cuda_only)


@dataclass
class Variant:
    """One timed training step: networks, optimizers, switches, matcher and precision."""

    name: str
    spec: VariantSpec
    cfg: Config
    nets: Nets
    optimizers: dict[str, torch.optim.Optimizer]
    weights: StepWeights
    matcher: SimMatcher | ReferenceStyleMatcher | None
    autocast: bool
    pairs: list[ScenePair]
    calls: int = 0  # steps run so far

    def step(self, i: int) -> dict[str, Tensor]:
        """The ``i``-th training step (scene pair ``i mod NUM_PAIRS``)."""
        pair = self.pairs[i % len(self.pairs)]
        self.calls += 1
        needs_target = self.weights.adversarial or self.weights.matching
        # The reference-style matcher duck-types SimMatcher.step, which is all the step calls.
        return adaptation_step(self.nets, self.optimizers, self.weights, pair.src_image, pair.src_label,
                               pair.trg_image if needs_target else None, None,
                               cast(SimMatcher | None, self.matcher), self.autocast)

    def new_matcher(self) -> SimMatcher:
        """A fresh ``SimMatcher`` (empty banks) as training would build it for these networks."""
        return build_matcher(self.cfg, self.cfg.stage1, self.nets, next(self.nets.segmenter.parameters()).device)

    def source_vectors_pushed(self) -> int:
        """Source stuff + instance vectors pushed to the banks so far (0 without a matcher)."""
        if isinstance(self.matcher, SimMatcher):
            return int(self.matcher.stuff_bank.counts.sum() + self.matcher.thing_bank.counts.sum())
        return 0


def build_variants(preset: SizePreset, device: torch.device, names: tuple[str, ...], *, amp: bool,
                   seed: int = 0) -> dict[str, Variant]:
    """The named variants (``VARIANTS``), each on its own networks with the same initial weights.

    ``amp``: bf16 autocast + channels_last for the variants marked fast (CUDA).
    """
    pairs = make_pairs(preset, device, seed)
    variants = {}
    for name in names:
        spec = VARIANTS[name]
        fast = amp and spec.fast
        cfg = preset_config(preset, channels_last=fast, seed=seed)
        nets, _ = build_nets(cfg, device)
        nets.segmenter.train()
        matcher: SimMatcher | ReferenceStyleMatcher | None = None
        if spec.matcher is not None:
            matcher = build_matcher(cfg, cfg.stage1, nets, device)
            if spec.matcher == "reference":
                matcher = ReferenceStyleMatcher.like(matcher)
        variants[name] = Variant(name, spec, cfg, nets, build_optimizers(nets, cfg.stage1, cfg),
                                 step_weights(cfg.stage1, spec.mode, cfg.discriminator.gan), matcher, fast, pairs)
    return variants


MatcherInputs = tuple[Tensor, Tensor, Tensor, Tensor]


def _feature_map(label: Tensor, size: tuple[int, ...]) -> Tensor:
    return F.interpolate(label[:, None].float(), size=size, mode="nearest")[:, 0].long()


@torch.no_grad()
def matcher_inputs(variant: Variant) -> list[MatcherInputs]:
    """Fixed inputs of ``SimMatcher.step`` for each scene pair, from the variant's networks.

    Features are fp32; the label maps are the scenes' ground truth at feature resolution,
    so every class of the scene has its regions whatever the (untrained) network predicts.
    """
    out = []
    for pair in variant.pairs:
        src = variant.nets.segmenter(pair.src_image).features.float()
        trg = variant.nets.segmenter(pair.trg_image).features.float()
        out.append((src, _feature_map(pair.src_label, tuple(src.shape[-2:])), trg,
                    _feature_map(pair.trg_label, tuple(trg.shape[-2:]))))
    return out


def matcher_step(matcher: SimMatcher | ReferenceStyleMatcher,
                 inputs: list[MatcherInputs]) -> Callable[[int], object]:
    """One matcher step (push, losses, backward into the target features) on fixed inputs."""

    def step(i: int) -> object:
        src_f, src_l, trg_f, trg_l = inputs[i % len(inputs)]
        trg = trg_f.detach().requires_grad_(True)
        losses = matcher.step(src_f, src_l, trg, trg_l)
        total = losses["loss/stuff_trg"] + losses["loss/inst_trg"]
        if total.requires_grad:
            total.backward()
        return total

    return step
