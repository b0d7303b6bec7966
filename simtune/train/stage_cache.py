"""Content-addressed stores of finished stages, shared by runs with identical settings.

Stage 0 (the source-only warm start) is keyed by ``stage0_key``: every run and trial whose
stage-0 settings and seed match (a whole lambda_ci x w sweep, every row of an ablation seed)
trains it once. Stage 1 is keyed by ``stage1_key``: trials whose stage-1 settings and seed are
identical (a thresholds or stage-2 sweep) pay for stage 1 once. The first run computes the
entry while holding the key's lock, the others wait for the lock and then copy the result. Entries are
published by an atomic rename, so a reader never sees half an entry, and a crashed producer leaves only a
stale temp dir.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from simtune.config import config_hash, flatten
from simtune.files import publish_folder, waiting_lock
from simtune.schema import MODES, Config

# Keys that cannot change what stage 1 computes or reports.
_NOT_STAGE1 = ("stage2.", "pseudo_label.", "runtime.checkpoint_every", "runtime.threads", "data.num_workers",
               "runtime.shared_stage_timeout_h", "runtime.cudnn_benchmark", "runtime.deterministic", "mode")

# Keys stage 0's weights and evaluations depend on (it reads its SGD settings from stage1).
_STAGE0 = ("seed", "data.source.", "data.target.", "data.val_split", "model.", "init.", "discriminator.", "select.",
           "eval.max_images", "runtime.device", "runtime.amp", "runtime.channels_last", "stage1.momentum",
           "stage1.weight_decay", "stage1.head_lr_mult", "stage1.poly_power")

CACHED_MODEL, CACHED_HISTORY, CACHED_PREDICTIONS = "model.pt", "history.json", "predictions"  # an entry's files
COMPLETE = "complete"  # written last into an entry: only a complete entry has it


def stage1_key(cfg: Config) -> str:
    """A hash of every setting that stage 1's weights, metrics or target predictions depend on."""
    settings = {k: v for k, v in flatten(cfg).items() if not k.startswith(_NOT_STAGE1)}
    settings["stage1_losses"] = _stage1_losses(cfg)
    settings["pseudo_label.bins"] = cfg.pseudo_label.bins  # the stored histogram's resolution
    return config_hash(settings)


def _stage1_losses(cfg: Config) -> str:
    """The ablation row as stage 1 sees it (``schema.MODES``): ``seg_trg``, ``seg``, ``seg+adv``, ``seg+adv+sim``.

    Rows that differ only after stage 1 (aa_sim and aa_sim_ssl) share their stage 1.
    """
    losses = MODES[cfg.mode]
    if losses.target_labels:
        return "seg_trg"
    return "+".join(["seg", *(["adv"] if losses.adversarial else []), *(["sim"] if losses.matching else [])])


def stage0_key(cfg: Config) -> str:
    """A hash of every setting that stage 0's weights or evaluations depend on."""
    settings = {k: v for k, v in flatten(cfg).items() if k.startswith(_STAGE0)}
    return config_hash({"stage0": settings})


STAGE_KEYS: dict[str, Callable[[Config], str]] = {"stage0": stage0_key, "stage1": stage1_key}  # cached stages


class StageCache:
    """A folder of ``<key>/`` entries: ``model.pt``, ``history.json``, optional ``predictions/``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def entry(self, key: str) -> Path | None:
        path = self.root / key
        return path if (path / COMPLETE).is_file() else None

    def lock_file(self, key: str) -> Path:
        return self.root / f"{key}.lock"

    @contextlib.contextmanager
    def lock(self, key: str, timeout_s: float) -> Iterator[float]:
        """Exclusive per-key lock, released when the holder exits or dies; yields the seconds waited.

        Raises:
            files.LockTimeout: another run held it for ``timeout_s`` (it names that run's pid and host).
        """
        with waiting_lock(self.lock_file(key), timeout_s) as waited:
            yield waited

    def publish(self, key: str, files: dict[str, Path]) -> Path:
        """Copy ``name -> path`` (files or folders) into a new entry and publish it atomically."""
        return publish_folder(self.root / key, files, marker=COMPLETE)
