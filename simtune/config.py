"""The one configuration schema: every default of the paper's GTA5 -> Cityscapes setting.

An experiment YAML holds only what differs from these defaults and may name a ``base``
file (resolved relative to itself). ``--set a.b=value`` overrides come last. Unknown keys
and wrong types fail with the dotted path and the nearest valid key.

The schema is frozen dataclasses; each field's ``metadata["help"]`` is its one-line meaning.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml

from simtune.errors import ConfigError
from simtune.keys import flat_dict, suggest

DatasetName = Literal["gta5", "synthia", "cityscapes"]
Mode = Literal["source_only", "aa", "aa_sim", "aa_sim_ssl", "target_only"]


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
    num_workers: int = _f(0, "data-loader worker processes (0 = load in the training process)")


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

    enabled: bool = _f(True, "compute select/entropy, im, snd, mixval (and dev) at every evaluation")
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


@dataclass(frozen=True)
class Config:
    """A complete simtune experiment."""

    seed: int = _f(0, "seed of initial weights, data order and the banks")
    mode: Mode = _f("aa_sim_ssl", "ablation row: source_only | aa | aa_sim | aa_sim_ssl | target_only")
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


# ----------------------------------------------------------------------------- building


def build(data: dict[str, Any], *, source: str = "<config>") -> Config:
    """Build a ``Config`` from a nested dict of changes to the defaults.

    Args:
        data: nested mapping, e.g. ``{"stage1": {"lambda_ci": 0.01}}``.
        source: file name used in error messages.
    Raises:
        ConfigError: unknown key (with the nearest valid one) or wrong type.
    """
    return _build_dataclass(Config, data, prefix="", source=source)


def _build_dataclass(cls: type, data: Any, *, prefix: str, source: str) -> Any:
    if not isinstance(data, dict):
        where = prefix.rstrip(".") or "top level"
        raise ConfigError(f"{source}: {where} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    defaults = cls()
    values = {}
    for key, raw in data.items():
        path = f"{prefix}{key}"
        if key not in fields:
            raise ConfigError(f"{source}: unknown key '{path}'{suggest(str(key), list(fields), prefix, list_all=True)}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            if not isinstance(raw, dict):
                raise ConfigError(f"{source}: '{path}' must be a mapping, got {raw!r}")
            merged = deep_merge(dataclasses.asdict(getattr(defaults, key)), raw)
            values[key] = _build_dataclass(typing.cast(type, hint), merged, prefix=path + ".", source=source)
        else:
            values[key] = _coerce(hint, raw, path=path, source=source)
    return dataclasses.replace(defaults, **values)


NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def as_number(raw: Any) -> Any:
    """``"1e-3"`` -> 0.001 (YAML 1.1 reads 1e-3, without dot or sign, as a string); else ``raw``."""
    return float(raw) if isinstance(raw, str) and NUMBER.fullmatch(raw.strip()) else raw


def _coerce(hint: Any, raw: Any, *, path: str, source: str) -> Any:
    """Check ``raw`` against a field's type hint; ints are accepted where floats are."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        choices = typing.get_args(hint)
        if raw not in choices:
            raise ConfigError(f"{source}: '{path}' must be one of {list(choices)}, got {raw!r}")
        return raw
    if origin is tuple:
        return _coerce_tuple(hint, raw, path=path, source=source)
    if hint is bool:
        if not isinstance(raw, bool):
            raise ConfigError(f"{source}: '{path}' must be true or false, got {raw!r}")
        return raw
    if hint is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ConfigError(f"{source}: '{path}' must be an integer, got {raw!r}")
        return raw
    if hint is float:
        raw = as_number(raw)
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise ConfigError(f"{source}: '{path}' must be a number, got {raw!r}")
        return float(raw)
    if hint is str:
        if not isinstance(raw, str):
            raise ConfigError(f"{source}: '{path}' must be a string, got {raw!r}")
        return raw
    raise TypeError(f"unsupported config type {hint!r} at {path}")  # a schema bug, not user input


def _coerce_tuple(hint: Any, raw: Any, *, path: str, source: str) -> tuple[Any, ...]:
    args = typing.get_args(hint)
    if not isinstance(raw, (list, tuple)) or len(raw) != len(args):
        names = ", ".join(a.__name__ for a in args)
        raise ConfigError(f"{source}: '{path}' must be a list [{names}], got {raw!r}")
    return tuple(_coerce(a, v, path=f"{path}[{i}]", source=source) for i, (a, v) in enumerate(zip(args, raw)))


# ----------------------------------------------------------------------------- files and overrides


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping with ``yaml.safe_load``; one-line ``ConfigError`` on any problem."""
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}:{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    return data


def experiment_changes(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The nested changes an experiment file makes, with its ``base`` chain merged in.

    Relative dataset roots and weight paths are made absolute against the file that
    names them, because Ray trials run in their own working directory.
    """
    path = path.resolve()
    if path in _seen:
        raise ConfigError(f"{path}: 'base' chain loops back to this file")
    data = read_yaml(path)
    base_name = data.pop("base", None)
    _absolutise_paths(data, path.parent)
    if base_name is None:
        return data
    if not isinstance(base_name, str):
        raise ConfigError(f"{path}: 'base' must be a file name, got {base_name!r}")
    base = experiment_changes(path.parent / base_name, (*_seen, path))
    return deep_merge(base, data)


# Dotted keys holding file paths: made absolute against the file that names them.
PATH_KEYS: tuple[str, ...] = ("data.source.root", "data.target.root", "data.source.list_file",
                              "data.target.list_file", "model.init_weights")


def _absolutise_paths(data: dict[str, Any], folder: Path) -> None:
    for keys in (key.split(".") for key in PATH_KEYS):
        node: Any = data
        for key in keys[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(keys[-1]), str) and node[keys[-1]]:
            node[keys[-1]] = str((folder / node[keys[-1]]).resolve())


def deep_merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` laid over it, recursively for nested mappings."""
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_override(text: str) -> dict[str, Any]:
    """``'stage1.lambda_ci=0.01'`` -> ``{"stage1": {"lambda_ci": 0.01}}`` (value parsed as YAML)."""
    key, sep, value = text.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE with a dotted key, e.g. stage1.lambda_ci=0.01")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return nest(key, parsed)


def nest(path: str, value: Any) -> dict[str, Any]:
    """``("stage1.lambda_ci", 0.01)`` -> ``{"stage1": {"lambda_ci": 0.01}}``."""
    nested: dict[str, Any] = {}
    node = nested
    parts = path.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return nested


def load(path: Path | None, overrides: Sequence[str] = ()) -> Config:
    """The resolved config of an experiment file plus ``--set`` overrides."""
    changes = experiment_changes(path) if path is not None else {}
    for text in overrides:
        changes = deep_merge(changes, parse_override(text))
    return build(changes, source=str(path) if path is not None else "--set")


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict of a config (tuples become lists), for YAML/JSON."""
    return _plain(dataclasses.asdict(cfg))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def flatten(cfg: Config) -> dict[str, Any]:
    """``{"stage1.lambda_ci": 0.01, ...}`` for every leaf field."""
    return flat_dict(to_dict(cfg))


def leaf_types() -> dict[str, Any]:
    """Dotted path -> type hint of every leaf field of the schema."""
    out: dict[str, Any] = {}

    def walk(cls: type, prefix: str) -> None:
        for name, hint in typing.get_type_hints(cls).items():
            if dataclasses.is_dataclass(hint):
                walk(hint, f"{prefix}{name}.")  # type: ignore[arg-type]
            else:
                out[f"{prefix}{name}"] = hint

    walk(Config, "")
    return out


def check_value(path: str, value: Any, *, source: str) -> Any:
    """Validate one value for a dotted path; ``ConfigError`` names the path."""
    types_ = leaf_types()
    if path not in types_:
        raise ConfigError(f"{source}: unknown config key '{path}'{suggest(path, list(types_))}")
    return _coerce(types_[path], value, path=path, source=source)


def help_table() -> list[tuple[str, Any, str]]:
    """(dotted key, default, meaning) for every leaf field, for ``simtune config --help``."""
    rows: list[tuple[str, Any, str]] = []
    defaults = flatten(Config())

    def walk(cls: type, prefix: str) -> None:
        for f in dataclasses.fields(cls):
            hint = typing.get_type_hints(cls)[f.name]
            if dataclasses.is_dataclass(hint):
                walk(hint, f"{prefix}{f.name}.")  # type: ignore[arg-type]
            else:
                key = f"{prefix}{f.name}"
                rows.append((key, defaults[key], f.metadata.get("help", "")))

    walk(Config, "")
    return rows

