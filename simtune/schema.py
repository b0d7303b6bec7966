"""The one configuration schema: every default of the paper's GTA5 -> Cityscapes setting.

Frozen dataclasses; each field's ``metadata["help"]`` is its one-line meaning. Reading YAML,
``--set`` overrides and type checking against this schema live in ``simtune.config``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

DatasetName = Literal["gta5", "synthia", "cityscapes"]
Direction = Literal["max", "min"]  # which side of a metric is better
DIRECTIONS: tuple[Direction, ...] = ("max", "min")
Mode = Literal["source_only", "aa", "aa_sim", "aa_sim_ssl", "target_only"]


@dataclass(frozen=True)
class ModeLosses:
    """What one ablation row (paper Table 2) trains with, besides L_seg."""

    adversarial: bool  # output-space L_adv and the discriminator update (eq. 2, 3)
    matching: bool  # stuff and instance matching, L_stf + L_ins (weight lambda_ci, eq. 12)
    self_training: bool  # stage 2 on the stage-1 pseudo-labels (eq. 13)
    target_labels: bool  # L_seg on labelled target images instead of the source (the upper bound)

    @property
    def target_images(self) -> bool:
        """A stage-1 loss reads unlabelled target images (adversarial or matching)."""
        return self.adversarial or self.matching


# The one table of modes: each ablation row, in the paper's order, and the losses it turns on.
MODES: dict[Mode, ModeLosses] = {
    "source_only": ModeLosses(adversarial=False, matching=False, self_training=False, target_labels=False),
    "aa": ModeLosses(adversarial=True, matching=False, self_training=False, target_labels=False),
    "aa_sim": ModeLosses(adversarial=True, matching=True, self_training=False, target_labels=False),
    "aa_sim_ssl": ModeLosses(adversarial=True, matching=True, self_training=True, target_labels=False),
    "target_only": ModeLosses(adversarial=False, matching=False, self_training=False, target_labels=True),
}


def direction_sign(direction: str) -> float:
    """+1 where larger is better (``"max"``), -1 where smaller is (``"min"``): ``sign * value`` grows
    with quality, so every ranking, rung and race compares oriented values the same way.

    Raises:
        ValueError: ``direction`` is neither ``"max"`` nor ``"min"``.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"mode must be 'max' or 'min', but got {direction!r}")
    return 1.0 if direction == "max" else -1.0


def _f(default: Any, help: str) -> Any:
    """A dataclass field with a default and a one-line meaning."""
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        return field(default_factory=lambda: default, metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class DomainConfig:
    """One domain's dataset on disk."""

    dataset: DatasetName = _f("gta5", "on-disk format: gta5 | synthia | cityscapes")
    root: str = _f("", "dataset root directory (absolute, or relative to the experiment file)")
    split: str = _f("train", "split used for training (cityscapes: leftImg8bit/<split>)")
    images_dir: str = _f("images", "gta5 only: images folder, e.g. a CycleGAN-translated copy")
    list_file: str = _f("", "optional text file of sample names, one per line")
    size: tuple[int, int] = _f((1280, 720), "training input size (W, H) in pixels")


@dataclass(frozen=True)
class DataConfig:
    """Source (labelled) and target (unlabelled) domains."""

    source: DomainConfig = _f(DomainConfig(), "labelled source domain (synthetic)")
    target: DomainConfig = _f(
        DomainConfig(dataset="cityscapes", size=(1024, 512)),
        "unlabelled target domain; evaluated on its val split",
    )
    val_split: str = _f("val", "target split that is evaluated (split by city into selection/report)")
    num_workers: int | Literal["auto"] = _f(
        "auto", "worker processes per data loader (two load at once); auto = (CPUs - 1) // 2 of the run's CPUs")


@dataclass(frozen=True)
class ModelConfig:
    """Segmentation network G = C o F."""

    backbone: Literal["resnet101", "small"] = _f("resnet101", "DeepLab-v2 ResNet-101, or the small CPU net")
    init_weights: str = _f("", "weights file: torchvision ResNet-101 or 'Scale.'-keyed DeepLab init")
    random_init: bool = _f(False, "resnet101 without init_weights: allowed only when true (it diverges)")
    aspp_all_branches: bool = _f(True, "sum all four ASPP rates; false = the authors' code (rates 6, 12)")
    multi_level: bool = _f(False, "add the AdaptSegNet aux head on res4 with its own discriminator")
    width: int = _f(32, "small backbone only: channels of its first stage")
    num_classes: int = _f(19, "output classes (Cityscapes train ids)")


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Output-space discriminator D."""

    gan: Literal["bce", "lsgan"] = _f("bce", "adversarial objective: BCE-with-logits or least squares")
    lr: float = _f(1e-4, "Adam learning rate of D")
    betas: tuple[float, float] = _f((0.9, 0.99), "Adam betas of D")
    width: int = _f(64, "channels of D's first conv (64, 128, 256, 512 at paper size)")


@dataclass(frozen=True)
class SimConfig:
    """Stuff and instance matching options shared by both stages."""

    instances_per_image: int = _f(10, "z: largest source regions per class pushed per image")
    target_regions: int = _f(10, "largest target regions per thing class matched per image")
    l1: Literal["sum", "channel_mean"] = _f(
        "channel_mean", "L1 over channels: the authors' mean (lambda_ci in the paper's units), or sum; "
        "sum = channel_mean x C (C = feature channels: 2048 R101, 8 x width small), so lambda_ci(sum) = "
        "lambda_ci(channel_mean) / C")
    skip_until_full: bool = _f(False, "authors' code: skip a class until its bank is full")
    bank_self_check: bool = _f(False, "authors' code: push only if C(pooled vector) predicts its class")


@dataclass(frozen=True)
class StageConfig:
    """One training stage (eq. 12 for stage 1, eq. 13 for stage 2)."""

    iters: int = _f(150_000, "training iterations (1 source + 1 target image each)")
    schedule_iters: int = _f(250_000, "length of the poly schedule (the paper stops early)")
    lr: float = _f(2.5e-4, "SGD learning rate of the backbone; the classifier gets 10x")
    head_lr_mult: float = _f(10.0, "classifier learning-rate multiplier")
    momentum: float = _f(0.9, "SGD Nesterov momentum")
    weight_decay: float = _f(5e-4, "SGD weight decay")
    poly_power: float = _f(0.9, "poly decay power: lr * (1 - it / schedule_iters) ** power")
    lambda_seg: float = _f(1.0, "lambda_seg: weight of the segmentation cross-entropy")
    lambda_adv: float = _f(0.001, "lambda_adv: weight of the output-space adversarial loss")
    lambda_d: float = _f(1.0, "lambda_D: weight of the discriminator loss")
    lambda_ci: float = _f(0.01, "lambda_ci: weight of L_stf + L_ins (stuff and instance matching)")
    bank_size: int = _f(50, "w: source stuff samples stored per class (instances: z * w)")
    lambda_seg_aux: float = _f(0.1, "multi-level only: weight of the res4 head's cross-entropy")
    lambda_adv_aux: float = _f(0.0002, "multi-level only: weight of the res4 head's adversarial loss")


@dataclass(frozen=True)
class PseudoLabelConfig:
    """Pseudo-labels from the stage-1 model on the target train set."""

    method: Literal["sim", "cbst"] = _f("sim", "sim: per-class min(quantile, cap); cbst: class-balanced portion")
    quantile: float = _f(0.5, "sim: confidence quantile of the pixels predicted as a class")
    cap: float = _f(0.9, "sim: upper bound on every class threshold")
    portion: float = _f(0.2, "cbst: fraction p of each class's most confident pixels kept")
    spatial_prior: bool = _f(False, "cbst: multiply a smoothed source class-frequency prior into p")
    bins: int = _f(2000, "confidence histogram bins on [0, 1] (threshold precision 1/bins)")


@dataclass(frozen=True)
class EvalConfig:
    """Periodic evaluation on the target val split."""

    every: int = _f(5000, "evaluate every this many iterations of a stage (and at its end)")
    max_images: int = _f(0, "evaluate at most this many images per split part (0 = all)")


@dataclass(frozen=True)
class SelectConfig:
    """Label-free validators ``select/<name>`` at every evaluation (docs/selection.md)."""

    enabled: bool = _f(False, "compute select/entropy, im, snd, mixval (and dev) at every evaluation; off by "
                              "default (+~20% per evaluation); a sweep whose metric is select/* turns it on")
    images: int = _f(12, "unlabelled target train images in the fixed subset (>= 2 for mixval)")
    pixels: int = _f(256, "pixels per image sampled for SND (>= 2)")
    source_images: int = _f(6, "labelled source images for DEV (0 = no select/dev; else >= 2)")
    seed: int = _f(0, "seed of the subset draw: the same images and pixels in every trial")


@dataclass(frozen=True)
class SourcePretrainConfig:
    """Stage 0: source-only training before stage 1, shared by every run with the same settings."""

    iters: int = _f(0, "source-only iterations (seg loss only); 0 = off, start from model.init_weights")
    lr: float = _f(0.01, "SGD learning rate of stage 0 (poly to 0 over iters; other SGD settings from stage1)")


@dataclass(frozen=True)
class InitConfig:
    """Where stage 1 and stage 2 start from."""

    source_pretrain: SourcePretrainConfig = _f(
        SourcePretrainConfig(), "stage 0: a source-only warm start both stages load (the small net's stand-in "
        "for an ImageNet init)")


@dataclass(frozen=True)
class RuntimeConfig:
    """Where and how to run."""

    device: Literal["auto", "cpu", "cuda"] = _f("auto", "auto = CUDA when present")
    amp: bool = _f(True, "bf16 autocast on CUDA (ignored on CPU)")
    channels_last: bool = _f(True, "channels_last memory format on CUDA (ignored on CPU)")
    checkpoint_every: int = _f(1000, "write a resumable checkpoint every this many iterations")
    threads: int = _f(0, "torch CPU threads (0 = torch default)")
    cudnn_benchmark: bool = _f(True, "cuDNN picks the fastest kernels for the (fixed) input sizes; CUDA only")
    deterministic: bool = _f(False, "deterministic CUDA kernels (slower): a paired seed repeats exactly on one GPU")
    shared_stage_timeout_h: float = _f(48.0, "hours a run waits for another training the same shared stage, then fails")


@dataclass(frozen=True)
class Config:
    """A complete simtune experiment."""

    seed: int = _f(0, "seed of initial weights, data order and the banks")
    mode: Mode = _f("aa_sim_ssl", f"ablation row: {' | '.join(MODES)}")
    data: DataConfig = _f(DataConfig(), "datasets")
    model: ModelConfig = _f(ModelConfig(), "segmentation network")
    init: InitConfig = _f(InitConfig(), "initial weights of both stages (stage 0)")
    discriminator: DiscriminatorConfig = _f(DiscriminatorConfig(), "output-space discriminator")
    sim: SimConfig = _f(SimConfig(), "stuff and instance matching")
    stage1: StageConfig = _f(StageConfig(), "stage 1, eq. 12")
    pseudo_label: PseudoLabelConfig = _f(PseudoLabelConfig(), "pseudo-labels between the stages")
    stage2: StageConfig = _f(StageConfig(lambda_ci=0.001), "stage 2, eq. 13 (authors: lambda_ci 0.001)")
    eval: EvalConfig = _f(EvalConfig(), "evaluation")
    select: SelectConfig = _f(SelectConfig(), "label-free validators on unlabelled target train images")
    runtime: RuntimeConfig = _f(RuntimeConfig(), "device and checkpoints")
