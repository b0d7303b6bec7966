"""Loading initial or trained weights into a ``Segmenter`` and counting parameters.

Accepted files (read with ``torch.load(weights_only=True)``; ``{"state_dict": ...}`` or
``{"model": ...}`` wrappers and ``module.`` prefixes are unwrapped):

- a torchvision ResNet-101 state dict: ``conv1.weight``, ``bn1.*``, ``layer1.0.conv1.weight``,
  ..., ``fc.*`` (the ImageNet ``fc`` is skipped);
- the authors' DeepLab init checkpoint: ``Scale.conv1.weight``, ``Scale.layer1.0...``, and
  the ASPP as ``Scale.layer5.conv2d_list.{i}.*`` (branch i of the classifier). In a
  multi-level AdaptSegNet checkpoint ``layer5`` is the res4 head and ``layer6`` the res5
  head. Heads with another class count are skipped with the reason;
- a simtune segmenter state dict (``backbone.*``, ``classifier.*``, ``aux_classifier.*``).

The ResNet-101 backbone is switched to the layout the file was trained with (Caffe for
``Scale.`` keys, torchvision for torchvision keys); see ``simtune.models.deeplab``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch
from torch import Tensor, nn

from simtune.errors import ConfigError
from simtune.models.deeplab import ResNet101Backbone, Segmenter
from simtune.rundir import load_segmenter_state, torch_load

TORCHVISION_BACKBONE = ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4")
SIMTUNE_MODULES = ("backbone", "classifier", "aux_classifier")
HEADS = ("classifier", "aux_classifier")
CAFFE_HEAD = re.compile(r"layer([56])\.conv2d_list\.(\d+)\.(\w+)$")
WRAPPER_KEYS = ("state_dict", "model")  # checkpoint dicts that hold the state dict one level down
UNUSED_BUFFER = "num_batches_tracked"  # frozen BN never reads it, so its absence is not "missing"

ModuleT = TypeVar("ModuleT", bound=nn.Module)


@dataclass(frozen=True)
class LoadReport:
    """What ``load_init_weights`` did.

    Attributes:
        path: the weights file.
        loaded: model tensor names that were filled from the file.
        skipped: ``"<file key>: <reason>"`` for each file entry that was not used.
        missing: model tensor names the file did not provide (``num_batches_tracked`` aside).
        total: number of entries in the file.
        layout: backbone layout chosen to match the file ("caffe", "torchvision"), or "".
    """

    path: str
    loaded: tuple[str, ...]
    skipped: tuple[str, ...]
    missing: tuple[str, ...]
    total: int = 0
    layout: str = ""

    def summary(self) -> str:
        """One line, e.g. ``loaded 312/316 tensors from X; skipped 4 (classifier: 21 classes != 19)``."""
        parts = [f"loaded {len(self.loaded)}/{self.total} tensors from {self.path}"]
        if self.skipped:
            reasons = Counter(entry.split(": ", 1)[1] for entry in self.skipped)
            parts.append(f"skipped {len(self.skipped)} ({_count_list(reasons)})")
        if self.missing:
            modules = Counter(name.split(".", 1)[0] for name in self.missing)
            parts.append(f"not in file: {_count_list(modules, always_count=True)}")
        if self.layout:
            parts.append(f"backbone layout: {self.layout}")
        return "; ".join(parts)


def _count_list(counts: Counter[str], *, always_count: bool = False) -> str:
    """``"a"`` for one kind, ``"4 a, 1 b"`` for several (or always with ``always_count``)."""
    if len(counts) == 1 and not always_count:
        return next(iter(counts))
    return ", ".join(f"{n} {what}" for what, n in counts.most_common())


def count_parameters(module: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameter elements of ``module`` (only ``requires_grad`` ones if asked)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def read_state_dict(path: Path) -> dict[str, object]:
    """The name -> tensor mapping stored in ``path``, unwrapped and without ``module.`` prefixes.

    Raises:
        ConfigError: the file is missing, unreadable or holds no state dict.
    """
    obj = torch_load(path, "init weights file")
    while isinstance(obj, Mapping) and any(isinstance(obj.get(k), Mapping) for k in WRAPPER_KEYS):
        obj = next(obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping))
    if not isinstance(obj, Mapping) or not all(isinstance(k, str) for k in obj):
        raise ConfigError(f"{path}: expected a state dict (tensor name -> tensor), "
                          f"got {type(obj).__name__}")
    return {_strip_module(key): value for key, value in obj.items()}


def _strip_module(key: str) -> str:
    """Drop the ``module.`` prefixes that DataParallel/DistributedDataParallel add."""
    while key.startswith("module."):
        key = key[len("module."):]
    return key


def _caffe_name(rest: str, has_layer6: bool) -> tuple[str | None, str]:
    """Model name for a DeepLab key without its ``Scale.`` prefix, or None and why not."""
    head = CAFFE_HEAD.match(rest)
    if head is not None:
        level, branch, param = head.groups()
        # AdaptSegNet's multi-level model puts the res4 head in layer5 and res5's in layer6
        module = "aux_classifier" if level == "5" and has_layer6 else "classifier"
        return f"{module}.branches.{branch}.{param}", "caffe"
    if rest.split(".", 1)[0] in ("layer5", "layer6"):
        return None, "unexpected"
    return f"backbone.{rest}", "caffe"


def _model_name(key: str, has_layer6: bool) -> tuple[str | None, str]:
    """Model name and source format ("caffe", "torchvision", "simtune") of a file key.

    Returns ``(None, reason)`` for keys that have no place in a segmenter.
    """
    if key.startswith("Scale."):
        return _caffe_name(key[len("Scale."):], has_layer6)
    first = key.split(".", 1)[0]
    if first == "fc":
        return None, "ImageNet fc layer, not part of DeepLab"
    if first in TORCHVISION_BACKBONE:
        return f"backbone.{key}", "torchvision"
    if first in SIMTUNE_MODULES:
        return key, "simtune"
    return None, "unexpected"


def _mismatch(name: str, src: Tensor, dst: Tensor) -> str | None:
    """Why ``src`` cannot be copied into ``dst`` (None if it can)."""
    if src.shape == dst.shape:
        return None
    head = name.split(".", 1)[0]
    if head in HEADS and src.dim() == dst.dim() and src.shape[1:] == dst.shape[1:]:
        return f"{head}: {src.shape[0]} classes != {dst.shape[0]}"
    return "shape mismatch"


@dataclass
class _Plan:
    """Which file entries go where (built before anything is copied)."""

    copies: dict[str, Tensor]  # model name -> file tensor
    formats: set[str]  # source formats of the backbone tensors in ``copies``
    skipped: list[str]


def _skip_reason(name: str | None, how: str, value: object, targets: Mapping[str, Tensor],
                 model_name: str) -> str | None:
    """Why a file entry mapped to ``name`` (by ``_model_name``) is not loaded, or None."""
    if name is None:
        return how
    if not isinstance(value, Tensor):
        return "not a tensor"
    if name not in targets:
        return f"not in the {model_name} model"
    return _mismatch(name, value, targets[name])


def _plan(state: Mapping[str, object], targets: Mapping[str, Tensor], model_name: str) -> _Plan:
    """Match file entries to model tensors by name and shape."""
    has_layer6 = any(k.startswith("Scale.layer6.") for k in state)
    plan = _Plan(copies={}, formats=set(), skipped=[])
    for key, value in state.items():
        name, how = _model_name(key, has_layer6)
        reason = _skip_reason(name, how, value, targets, model_name)
        if reason is not None or name is None or not isinstance(value, Tensor):
            plan.skipped.append(f"{key}: {reason}")
            continue
        plan.copies[name] = value
        if name.startswith("backbone."):
            plan.formats.add(how)
    return plan


def _expected_keys(model: Segmenter) -> str:
    """The hint for a file that matched nothing."""
    if model.name == "resnet101":
        return "expected torchvision ResNet-101 keys or 'Scale.'-prefixed DeepLab keys"
    return f"expected a state dict saved from a simtune '{model.name}' segmenter"


def _set_layout(model: Segmenter, formats: set[str]) -> str:
    """Switch a ResNet-101 backbone to the layout its weights were trained with."""
    if not isinstance(model.backbone, ResNet101Backbone) or len(formats) != 1:
        return ""
    layout = next(iter(formats))
    if layout not in ("caffe", "torchvision"):
        return ""
    model.backbone.set_caffe_layout(layout == "caffe")
    return layout


def load_init_weights(model: Segmenter, path: Path) -> LoadReport:
    """Copy matching tensors of the weights file at ``path`` into ``model`` (in place).

    Raises:
        ConfigError: the file is missing or unreadable, or no backbone tensor matched.
    """
    state = read_state_dict(Path(path))
    targets = model.state_dict()
    plan = _plan(state, targets, model.name)
    if not any(name.startswith("backbone.") for name in plan.copies):
        raise ConfigError(f"{path}: no tensor matched the {model.name} model ({_expected_keys(model)})")
    with torch.no_grad():
        for name, value in plan.copies.items():
            targets[name].copy_(value)
    layout = _set_layout(model, plan.formats)
    missing = tuple(n for n in targets if n not in plan.copies and not n.endswith(UNUSED_BUFFER))
    return LoadReport(path=str(path), loaded=tuple(plan.copies), skipped=tuple(plan.skipped),
                      missing=missing, total=len(state), layout=layout)


def load_module_state(module: nn.Module, state: Mapping[str, object], source: Path | str) -> None:
    """``module.load_state_dict(state)`` with a mismatch reported as one line.

    Raises:
        ConfigError: keys missing from or unexpected in ``state``, or tensors of another
            shape; the message names ``source`` and the first offending keys.
    """
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    reshaped = [k for k in own if k in state and tuple(getattr(state[k], "shape", ())) != tuple(own[k].shape)]
    problems = [f"{len(keys)} {what} (e.g. {keys[0]})" for keys, what in
                ((missing, "missing"), (unexpected, "unexpected"), (reshaped, "of another shape")) if keys]
    if problems:
        raise ConfigError(f"{source}: does not fit the {type(module).__name__} of this run's config: tensors "
                          + ", ".join(problems))
    module.load_state_dict(state)  # type: ignore[arg-type]


def load_trained(segmenter: ModuleT, weights: Path) -> ModuleT:
    """``segmenter`` with a trained run's weights: a stage's ``model.pt`` or the networks of its
    ``checkpoint.pt`` (``rundir.RunDir.weights``, ``model``), read as tensors only (``weights_only``).

    The one way a trained segmenter is loaded, for evaluation, figures, a stage's start and scripts.

    Raises:
        ConfigError: one line: the file is unreadable, refused (``rundir.torch_load``), holds no
            segmenter state, or its tensors do not fit ``segmenter`` (``load_module_state``).
    """
    load_module_state(segmenter, load_segmenter_state(weights), weights)
    return segmenter
