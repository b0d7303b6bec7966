"""What a resumable stage checkpoint holds beyond the networks: RNG states; and loading one.

Checkpoints are written atomically by ``simtune.rundir.torch_save``.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(),
                             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Load a checkpoint this program wrote (trusted, so not ``weights_only``)."""
    return torch.load(path, map_location=device, weights_only=False)
