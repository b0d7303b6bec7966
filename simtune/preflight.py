"""Pre-flight: everything a run would refuse, checked before any compute.

``validate``, ``train``, ``sweep`` and ``retrain`` call ``check`` with every config they are
about to run (a sweep: the base config and one config per grid/choice value and range
end). It refuses, with one line each, what the pipeline would refuse at run time:

- combinations of values that cannot train (``check_combinations``);
- dataset roots and layouts (every file listed; every image and label decoded and its label
  ids checked, once per file list: ``data.check``) and weights files;

The built-in benchmark is an embedded default: a run that points at its default location
(``builtin_benchmark_root()``) while it is missing gets it written there, with one line
saying so, instead of an error. Any other missing root is a ``DataError``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from simtune.data.build import datasets_from_config
from simtune.errors import ConfigError
from simtune.schema import MODES, Config

BUILTIN_SIZES: dict[str, Any] = {}  # generator arguments of the embedded benchmark (its defaults)

Say = Callable[[str], None]


def builtin_benchmark_root() -> Path:
    """Where ``make data`` writes the built-in benchmark and the shipped experiments read it."""
    return Path(__file__).resolve().parents[1] / "data" / "synthetic"


def check_combinations(cfg: Config) -> None:
    """Refuse values that are each valid but cannot train together.

    Raises:
        ConfigError: one line naming the keys and what to set instead.
    """
    from simtune.data.loaders import worker_count
    from simtune.selection.run import check_select

    check_select(cfg.select)
    worker_count(cfg.data.num_workers)
    m = cfg.model
    if m.backbone == "resnet101" and not m.init_weights and not m.random_init:
        raise ConfigError("model.init_weights: the resnet101 backbone needs ImageNet weights (its frozen BatchNorm "
                          "at identity statistics makes a random init diverge); give a weights file, or set "
                          "model.random_init=true to train from random weights anyway")


def check(configs: Iterable[Config], *, inputs: bool = True, write_builtin: bool = True, say: Say = print) -> None:
    """Combinations, datasets and weights files of every config, each distinct input once.

    Args:
        inputs: also check the datasets and weights files (False: combinations only).
        write_builtin: write the built-in benchmark where a config expects it and it is
            missing; False only says that it would be written (``validate``).
        say: where the one-line notes go.
    Raises:
        ConfigError / DataError: the first problem, as one line.
    """
    seen_data: set[tuple[Any, ...]] = set()
    seen_weights: set[str] = set()
    for cfg in configs:
        check_combinations(cfg)
        if not inputs:
            continue
        if cfg.model.init_weights and cfg.model.init_weights not in seen_weights:
            seen_weights.add(cfg.model.init_weights)
            check_weights_file(Path(cfg.model.init_weights))
        key = (cfg.data, MODES[cfg.mode].target_labels)
        if key not in seen_data:
            seen_data.add(key)
            if _builtin_missing(cfg, write_builtin=write_builtin, say=say):
                continue
            datasets_from_config(cfg, say=say)


def check_weights_file(path: Path) -> None:
    """A weights file exists and is a torch file (zip or legacy pickle); its tensors load later.

    Raises:
        ConfigError: missing, or not a torch file.
    """
    if not path.is_file():
        raise ConfigError(f"{path}: model.init_weights file not found")
    with open(path, "rb") as handle:
        head = handle.read(2)
    if head not in (b"PK", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"):
        raise ConfigError(f"{path}: model.init_weights is not a torch weights file (torch.save zip or pickle)")


def builtin_pending(cfg: Config) -> bool:
    """``cfg`` reads the built-in benchmark at its default location, and it is not written yet."""
    from simtune.data.synth.write import SPEC_FILE  # the writer's cv2 loads only when the benchmark is checked

    root = builtin_benchmark_root()
    expects = any(Path(r).parent == root for r in (cfg.data.source.root, cfg.data.target.root))
    return expects and not (root / SPEC_FILE).is_file()


def _builtin_missing(cfg: Config, *, write_builtin: bool, say: Say) -> bool:
    """Write the built-in benchmark if ``cfg`` expects it and it is missing.

    Returns:
        True when it was missing and only announced (``write_builtin`` False).
    """
    if not builtin_pending(cfg):
        return False
    root = builtin_benchmark_root()
    if not write_builtin:
        say(f"the built-in benchmark is missing at {root}; it will be written when a run starts")
        return True
    from simtune.data.synth import generate_benchmark

    say(f"writing the built-in benchmark to {root} (missing; takes about 20-60 s, once)")
    generate_benchmark(root, **BUILTIN_SIZES)
    return False
