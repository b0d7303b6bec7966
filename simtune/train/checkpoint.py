"""What a resumable stage checkpoint holds beyond the networks: RNG states; and loading one.

Checkpoints are written atomically by ``simtune.rundir.torch_save`` and hold only tensors
and plain containers, so they load with ``weights_only=True`` (``simtune.rundir.torch_load``)
and a checkpoint handed over by someone else cannot run code.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from simtune.errors import ConfigError
from simtune.rundir import torch_load


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) generator states as tensors, numbers and tuples."""
    name, keys, position, has_gauss, cached = np.random.get_state()  # type: ignore[misc]
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(position), int(has_gauss),
                  float(cached)),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    name, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((name, torch.as_tensor(keys).numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """A resumable checkpoint, loaded safely.

    Raises:
        ConfigError: one line: truncated, corrupted or refused (see ``torch_load``); the
            message says how to restart the stage instead.
    """
    try:
        state = torch_load(path, "checkpoint", map_location=device)
    except ConfigError as exc:
        raise ConfigError(f"{exc}; delete it to restart {path.parent.name} from its beginning") from None
    if not isinstance(state, dict) or not {"nets", "optimizers", "rng"} <= set(state):
        raise ConfigError(f"{path}: not a simtune stage checkpoint (no nets/optimizers/rng); delete it to restart "
                          f"{path.parent.name} from its beginning")
    return state
