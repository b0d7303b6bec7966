"""Where a sweep runs and is stored: the options every sweep function shares, and the extra
callbacks its trials run (``trial_callbacks``)."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simtune.errors import ConfigError
from simtune.tracking.store import sweep_store
from simtune.train.loop import Callback

CALLBACKS_ENV = "SIMTUNE_TRIAL_CALLBACKS"

# A trial's extra training callbacks: (run directory, swept values) -> callbacks. Sent to every trial: it must pickle.
CallbackFactory = Callable[[Path, Mapping[str, Any]], list[Callback]]


def trial_callbacks() -> tuple[CallbackFactory, ...]:
    """The callback factories of the hooks ``SIMTUNE_TRIAL_CALLBACKS`` names; () when it is unset.

    It holds comma-separated ``module:function`` items; each function is called here, in the
    driver, without arguments, and returns a ``CallbackFactory`` that every trial calls.
    Raises:
        ConfigError: an item does not name a function that can be imported.
    """
    factories: list[CallbackFactory] = []
    for item in filter(None, (part.strip() for part in os.environ.get(CALLBACKS_ENV, "").split(","))):
        module, _, name = item.partition(":")
        try:
            hook = getattr(importlib.import_module(module), name) if name else None
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"{CALLBACKS_ENV}: cannot import {item!r} ({exc})") from None
        if not callable(hook):
            raise ConfigError(f"{CALLBACKS_ENV}: {item!r} is not a function; expected module:function")
        factories.append(hook())
    return tuple(factories)


@dataclass(frozen=True)
class SweepOptions:
    """Where a sweep runs and is stored; ``storage`` is absolute."""

    name: str
    storage: Path
    storage_explicit: bool = False  # given by the user (required on a multi-node cluster)
    resume: bool = False
    address: str | None = None  # an existing Ray cluster; None = RAY_ADDRESS or a local one
    tracking_uri: str | None = None
    share_stage1: bool = True  # trials with identical stage-1 settings share one stage-1 result
    share_stage0: bool = True  # trials with identical stage-0 settings share one stage-0 warm start

    @property
    def sweep_dir(self) -> Path:
        return self.storage / self.name

    @property
    def tracking_store(self) -> str:
        """The MLflow store: the one a resumed sweep recorded, else ``tracking_uri``, else the folder's default.

        Raises:
            TrackingError: ``tracking_uri`` differs from the store the sweep recorded.
        """
        return sweep_store(self.sweep_dir, self.tracking_uri)
