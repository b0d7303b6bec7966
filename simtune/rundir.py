"""A run directory: every file it holds, written atomically, read back typed.

``simtune train``, every sweep trial and every retrain seed write one::

    config.yaml  run.json          resolved config; revision, versions, seed
    stage0/  ...                   (init.source_pretrain.iters > 0: the source-only warm start)
    stage1/  checkpoint.pt  history.json  model.pt  done.json
    pseudo/  predictions/  labels/  thresholds.json   (predictions/: histogram.npy, one .npz an image)
    stage2/  ...                   (mode aa_sim_ssl only)
    results.json                   last evaluation of each stage
    failure.json  attempts.jsonl   a diverged trial's reason; one line per start of a trial

This module is the only place that spells these names.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from simtune import config
from simtune.schema import Config
from simtune.errors import ConfigError
from simtune.files import write_with

STAGES = ("stage0", "stage1", "stage2")  # stage0: the optional source-only warm start
CONFIG = "config.yaml"
HISTOGRAM = "histogram.npy"  # in a predictions folder: the confidence histogram of the target pass
RUN_FILES = (CONFIG, "run.json", "results.json", "failure.json", "attempts.jsonl")  # the run's own records


# ----------------------------------------------------------------------------- atomic writes


def write_text(path: Path, text: str) -> None:
    write_with(path, lambda tmp: tmp.write_text(text))


def write_json(path: Path, payload: Any) -> None:
    write_text(path, json.dumps(payload, indent=1, default=str))


def write_yaml(path: Path, payload: Any) -> None:
    write_text(path, yaml.safe_dump(payload, sort_keys=False))


def write_config(cfg: Config, path: Path) -> None:
    """The resolved config as YAML (``simtune train`` accepts the file)."""
    write_yaml(path, config.to_dict(cfg))


def torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` atomically."""
    import torch

    write_with(path, lambda tmp: torch.save(obj, tmp))


def torch_load(path: Path, what: str = "torch file", *, map_location: Any = "cpu") -> Any:
    """``torch.load`` of a file a user may hand us: tensors and plain containers only, never code.

    ``weights_only=True`` refuses any pickled Python object that is not a tensor, number,
    string or container, so a crafted file cannot run code when it is loaded.

    Args:
        what: what the file is, for the error message ("checkpoint", "init weights").
    Raises:
        ConfigError: one line: the file is missing, truncated, not a torch file, or holds
            Python objects (refused unread).
    """
    import pickle

    import torch

    if not Path(path).is_file():
        raise ConfigError(f"{path}: {what} not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ConfigError(f"{path}: {_refusal(str(exc), what)}") from None
    except Exception as exc:  # torch raises zip, runtime and EOF errors alike for damaged files
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"{path}: cannot read {what}: truncated or corrupted ({first[:160]})") from None


def _refusal(message: str, what: str) -> str:
    """Why ``weights_only`` refused a file, in one line."""
    found = re.search(r"GLOBAL ([\w.]+)", message)
    if found:
        return (f"refused: it holds a Python object ({found.group(1)}) that would run code when loaded; "
                f"simtune loads only tensors and plain containers")
    return f"cannot read {what}: not a torch file of tensors and plain containers"


def read_json(path: Path) -> Any:
    """The JSON in ``path``, or None when the file does not exist."""
    return json.loads(path.read_text()) if path.is_file() else None


# ----------------------------------------------------------------------------- the layout


@dataclass(frozen=True)
class RunDir:
    """Paths of one run directory (nothing is created until written)."""

    root: Path

    @property
    def config_file(self) -> Path:
        return self.root / CONFIG

    @property
    def run_file(self) -> Path:
        return self.root / "run.json"

    @property
    def results(self) -> Path:
        return self.root / "results.json"

    @property
    def failure(self) -> Path:
        return self.root / "failure.json"

    @property
    def attempts(self) -> Path:
        return self.root / "attempts.jsonl"

    def stage(self, name: str) -> Path:
        return self.root / name

    def checkpoint(self, stage: str) -> Path:
        """The resumable mid-stage checkpoint (networks, optimizers, banks, RNG)."""
        return self.root / stage / "checkpoint.pt"

    def model(self, stage: str) -> Path:
        """The stage's final segmenter weights."""
        return self.root / stage / "model.pt"

    def history_file(self, stage: str) -> Path:
        return self.root / stage / "history.json"

    def done(self, stage: str) -> Path:
        return self.root / stage / "done.json"

    @property
    def pseudo(self) -> Path:
        return self.root / "pseudo"

    @property
    def predictions(self) -> Path:
        return self.pseudo / "predictions"

    @property
    def histogram(self) -> Path:
        """The stage-1 confidence histogram over the target train set (written last by the target pass)."""
        return self.predictions / HISTOGRAM

    @property
    def labels(self) -> Path:
        return self.pseudo / "labels"

    @property
    def thresholds(self) -> Path:
        return self.pseudo / "thresholds.json"

    # ------------------------------------------------------------------------- reading

    def has_config(self) -> bool:
        return self.config_file.is_file()

    def config(self) -> Config:
        """The run's resolved config.

        Raises:
            ConfigError: missing or invalid ``config.yaml`` (the message names the file).
        """
        return config.build(config.read_yaml(self.config_file), source=str(self.config_file))

    def history(self, stage: str) -> list[dict[str, Any]]:
        """The stage's evaluation records (``[{"step": s, "val/miou": ...}, ...]``), [] if none."""
        return read_json(self.history_file(stage)) or []

    def histories(self) -> dict[str, list[dict[str, Any]]]:
        """``{"stage1": [eval records], "stage2": [...]}`` for the stages that evaluated."""
        return {stage: records for stage in STAGES if (records := self.history(stage))}

    def records(self) -> list[dict[str, Any]]:
        """Every evaluation record of every stage, in order."""
        return [record for records in self.histories().values() for record in records]

    def last_evaluation(self) -> tuple[str, dict[str, Any]] | None:
        """(stage, record) of the last evaluation of the last stage that evaluated."""
        return last_evaluation(self.histories())

    def finished(self) -> bool:
        """``results.json`` written: every stage ran to its end."""
        return self.results.is_file()

    def failure_reason(self) -> str | None:
        found = read_json(self.failure)
        return found.get("reason") if found is not None else None

    def final_models(self) -> dict[str, Path]:
        """``{"stage1": model.pt, ...}`` of the stages that finished."""
        return {stage: self.model(stage) for stage in STAGES if self.model(stage).is_file()}

    def weights(self) -> Path:
        """The last finished stage's ``model.pt``, else its resumable ``checkpoint.pt``.

        Raises:
            ConfigError: neither exists in any stage.
        """
        for stage in reversed(STAGES):
            for path in (self.model(stage), self.checkpoint(stage)):
                if path.is_file():
                    return path
        raise ConfigError(f"{self.root}: no stage1/ or stage2/ model.pt or checkpoint.pt in this run directory")


def last_evaluation(histories: dict[str, list[dict[str, Any]]]) -> tuple[str, dict[str, Any]] | None:
    """(stage, record) of the last evaluation of the last stage in ``histories`` that evaluated."""
    for stage in reversed(STAGES):
        if histories.get(stage):
            return stage, histories[stage][-1]
    return None


def locate(path: Path) -> tuple[RunDir, Path]:
    """(run directory, segmenter weights file) for a run dir, a ``model.pt`` or a ``checkpoint.pt``.

    A run directory resolves to its last finished stage's ``model.pt``.
    """
    path = path.resolve()
    if path.is_dir():
        run = RunDir(path)
        return run, run.weights()
    if not path.is_file():
        raise ConfigError(f"{path}: checkpoint not found")
    run = RunDir(path.parent.parent)
    if not run.has_config():
        raise ConfigError(f"{path}: expected it inside a run directory with {CONFIG} two levels up")
    return run, path


def load_segmenter_state(weights: Path) -> dict[str, Any]:
    """Segmenter weights from a ``model.pt`` or from the ``nets`` of a resumable checkpoint.

    Raises:
        ConfigError: the file is unreadable, refused (``torch_load``) or holds no state dict.
    """
    state = torch_load(weights, "model weights")
    if isinstance(state, dict) and isinstance(state.get("nets"), dict) and "segmenter" in state["nets"]:
        state = state["nets"]["segmenter"]
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise ConfigError(f"{weights}: expected a state dict of the segmenter (tensor name -> tensor), "
                          f"got {type(state).__name__}")
    return state


@dataclass(frozen=True)
class RunsFolder:
    """A folder of run directories that share stage-0 and stage-1 caches (a sweep, an ablation)."""

    root: Path

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def stage0_cache(self) -> Path:
        return self.root / "stage0_cache"

    @property
    def stage1_cache(self) -> Path:
        return self.root / "stage1_cache"
