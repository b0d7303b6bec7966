"""Where a sweep runs and is stored: the options every sweep function shares."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from simtune.tracking.store import sweep_store


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
