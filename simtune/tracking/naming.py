"""How runs, experiments and models are named, described and linked in MLflow.

One home for every name a user reads in the MLflow UI:

- experiment: one per search space, named after the space file (``lambda_w``);
- registered model: one per search space, ``simtune-<space>``, aliases ``champion`` and
  ``previous``;
- runs: a sweep's parent is named after the sweep; a trial after its swept values and its
  index (``λ_ci=0.01 w=200 · 00004``); a retrain ``retrain · <values>`` with children
  ``seed 2 · <values>``;
- descriptions (``mlflow.note.content``, markdown shown on the run page) with the
  configuration's difference from the base and links between sweep, trials, retrains and
  model versions; ``mlflow.source.name`` (the command) and ``mlflow.user``;
- the ``mlflow ui`` command that opens a store.
"""

from __future__ import annotations

import getpass
import math
import os
import shlex
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

MODEL_PREFIX = "simtune-"
CHAMPION = "champion"
PREVIOUS = "previous"
UI_PORT = 5000

TAG_NOTE = "mlflow.note.content"  # the run's description (markdown) in the UI
TAG_SOURCE_NAME = "mlflow.source.name"
TAG_SOURCE_TYPE = "mlflow.source.type"
TAG_USER = "mlflow.user"

# The paper's symbols for the keys the shipped spaces sweep; other keys use their last part.
SHORT_NAMES = {
    "stage1.lambda_ci": "λ_ci",
    "stage1.bank_size": "w",
    "stage1.lambda_adv": "λ_adv",
    "stage2.lambda_ci": "λ_ci²",
    "stage2.lambda_adv": "λ_adv²",
    "pseudo_label.quantile": "q",
    "pseudo_label.cap": "cap",
    "pseudo_label.portion": "p",
    "pseudo_label.spatial_prior": "prior",
    "sim.num_instances": "z",
    "seed": "seed",
}


# ----------------------------------------------------------------------------- names


def experiment_name(space_file: Path | str) -> str:
    """The experiment of a search space: its file name without ``.yaml`` (``lambda_w``)."""
    return Path(space_file).stem


def model_name(experiment: str) -> str:
    """The registered model of a search space: ``simtune-<space>``."""
    return f"{MODEL_PREFIX}{experiment}"


def short_name(key: str) -> str:
    """``stage1.lambda_ci`` -> ``λ_ci``; an unknown key -> its last dotted part."""
    return SHORT_NAMES.get(key, key.rsplit(".", 1)[-1])


def value_text(value: Any) -> str:
    """A swept value as short text: 4 significant digits for floats, ``true``/``false``."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


def config_label(values: Mapping[str, Any]) -> str:
    """The swept values of one configuration: ``λ_ci=0.01 w=200`` (in the order given)."""
    return " ".join(f"{short_name(key)}={value_text(value)}" for key, value in values.items())


def trial_index(trial_id: str) -> str:
    """The trial's number within its sweep: Tune's ``614c1_00004`` -> ``00004``."""
    return trial_id.rsplit("_", 1)[-1]


def trial_run_name(values: Mapping[str, Any], trial_id: str) -> str:
    """``λ_ci=0.01 w=200 · 00004``: what the trial tried, then which trial it is."""
    label = config_label(values)
    return f"{label} · {trial_index(trial_id)}" if label else trial_id


def seed_run_name(seed: int, values: Mapping[str, Any], role: str = "best") -> str:
    """``seed 2 · λ_ci=0.01 w=200`` (``runner-up`` is said when it is not the best)."""
    prefix = f"seed {seed}" + ("" if role == "best" else f" {role.replace('_', '-')}")
    label = config_label(values)
    return f"{prefix} · {label}" if label else prefix


def retrain_run_name(values: Mapping[str, Any]) -> str:
    label = config_label(values)
    return f"retrain · {label}" if label else "retrain"


# ----------------------------------------------------------------------------- links and descriptions


def run_link(experiment_id: str, run_id: str, text: str) -> str:
    """A markdown link to a run, relative to the UI's address (works on any host and port)."""
    return f"[{text}](#/experiments/{experiment_id}/runs/{run_id})"


def model_link(name: str, version: str | int, text: str | None = None) -> str:
    return f"[{text or f'{name} version {version}'}](#/models/{name}/versions/{version})"


def config_diff(values: Mapping[str, Any], base: Mapping[str, Any]) -> list[str]:
    """``key: base -> value`` for each key whose value differs from the flattened base config."""
    return [f"`{key}`: {value_text(base[key]) if key in base else 'unset'} → {value_text(value)}"
            for key, value in values.items() if key not in base or base[key] != value]


def description(title: str, lines: Iterable[str] = (), links: Iterable[str] = ()) -> str:
    """A run description: a bold title, then a bullet per line, then a ``Links`` list."""
    text = [f"**{title}**", ""]
    text += [f"- {line}" for line in lines]
    links = list(links)
    if links:
        text += ["", "Links:", *(f"- {link}" for link in links)]
    return "\n".join(text).strip() + "\n"


def source_tags(command: str | None = None) -> dict[str, str]:
    """``mlflow.source.name`` (the command line), ``mlflow.source.type`` and ``mlflow.user``.

    Args:
        command: the command to record; None = this process's ``simtune ...`` command line.
    """
    return {TAG_SOURCE_NAME: command or command_line(), TAG_SOURCE_TYPE: "LOCAL", TAG_USER: user()}


def command_line(argv: list[str] | None = None) -> str:
    """This process's command as a user would type it: ``simtune sweep search_spaces/lambda_w.yaml``."""
    argv = list(sys.argv if argv is None else argv)
    if not argv:
        return "simtune"
    program = Path(argv[0]).name
    words = ["simtune", *argv[1:]] if program in ("simtune", "cli.py", "__main__.py", "-m") else argv
    return shlex.join(words)[:500]


def user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return os.environ.get("USER", "unknown")


# ----------------------------------------------------------------------------- opening the UI


def ui_command(tracking_uri: str, port: int = UI_PORT) -> str:
    """The one command that opens ``tracking_uri`` in the MLflow UI.

    A SQLite store is opened by its database file; a server already serves a UI, so its
    address is returned instead.
    """
    if tracking_uri.startswith(("http://", "https://")):
        return f"open {tracking_uri.rstrip('/')} (an MLflow server)"
    return f"mlflow ui --backend-store-uri {shlex.quote(tracking_uri)} --port {port}"


def ui_url(tracking_uri: str, experiment_id: str | None = None, run_id: str | None = None,
           port: int = UI_PORT) -> str:
    """The UI address of a run (or an experiment) once ``ui_command`` runs."""
    base = tracking_uri.rstrip("/") if tracking_uri.startswith(("http://", "https://")) else f"http://127.0.0.1:{port}"
    if experiment_id is None:
        return base
    return f"{base}/#/experiments/{experiment_id}" + (f"/runs/{run_id}" if run_id else "")


def ui_lines(tracking_uri: str, experiment_id: str | None = None, run_id: str | None = None) -> list[str]:
    """What every command that wrote to MLflow prints last: where to look, then the one command."""
    lines = []
    if experiment_id is not None:
        lines.append(f"MLflow: {ui_url(tracking_uri, experiment_id, run_id)} once the UI runs:")
    return [*lines, ui_command(tracking_uri)]
