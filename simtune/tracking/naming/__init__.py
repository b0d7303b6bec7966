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
  model versions; ``mlflow.source.name`` (the command name) and ``mlflow.user``;
- **every metric key** (``METRICS``; the two evaluations' names come from ``simtune.keys``, which
  the layers below tracking read); **every tag key** (``naming.tags``); the experiment's tags for
  MLflow's UI (training view, two saved views per sweep, ``views``); the ``simtune ui`` command and
  the links to a sweep's views.
"""

from __future__ import annotations

import getpass
import math
import re
import urllib.parse
import os
import shlex
import shutil
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from simtune.keys import REPORT_METRIC, SELECTION_METRIC
from simtune.tracking.naming.tags import TAG_COMMAND, TAG_EXPERIMENT_KIND, TAG_SOURCE_NAME, TAG_SOURCE_TYPE, TAG_USER

MODEL_PREFIX = "simtune-"
CHAMPION = "champion"
PREVIOUS = "previous"
UI_PORT = 5000

# MLflow 3.17's UI: the experiment kind (``tags.TAG_EXPERIMENT_KIND``; its UI follows ``?workflowType=`` first).
TRAINING_KIND = "custom_model_development"  # the UI's "Machine learning" view: runs, models, registry
TRAINING_WORKFLOW = "machine_learning"

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


# ----------------------------------------------------------------------------- metric names
# One name per quantity. A bare name (``val/miou``) is one run's own number: one trial, one seed.
# A number over seeds is ``<scope>/<metric>_mean`` (``_std``), with n as ``<scope>/n_seeds``;
# the scope says whose seeds. ``METRICS`` is the list docs/mlflow.md prints (a test compares).

SELECTION = SELECTION_METRIC  # the oracle selection metric: Cityscapes val, frankfurt
REPORT = REPORT_METRIC  # the held-out report split: lindau + munster; never selects anything
CONFIG, BEST_CONFIG, RUNNER_UP_CONFIG = "config", "best_config", "runner_up_config"  # over the sweep's seeds
BEST_TRIAL = "best_trial"  # one trial's numbers, copied to the sweep's parent run
CONFIRM, CONFIRM_RUNNER_UP = "confirm", "confirm_runner_up"  # over retrain's fresh seeds
SWEEP_SCOPES = {"best": BEST_CONFIG, "runner_up": RUNNER_UP_CONFIG}  # a retrain candidate's sweep estimate
FRESH_SCOPES = {"best": CONFIRM, "runner_up": CONFIRM_RUNNER_UP}  # and its fresh-seed confirmation
_SEEDS = "trial, retrain seed"
METRICS: tuple[tuple[str, str, str], ...] = (  # (name, the runs that carry it, what it is)
    (SELECTION, _SEEDS, "mIoU on the selection split (frankfurt) at each evaluation; one seed"),
    (REPORT, _SEEDS, "mIoU on the report split (lindau + munster) at each evaluation; one seed"),
    ("val/iou/<class>, report/iou/<class>", _SEEDS, "per-class IoU on each split; one seed"),
    ("select/<validator>", _SEEDS, "label-free validator score (docs/selection.md); one seed"),
    ("loss/<name>, lr, stage", _SEEDS, "training losses, learning rate, the stage (0, 1, 2)"),
    ("stage1/val/miou, stage2/val/miou (and report/)", _SEEDS,
     "the same evaluations, one series per stage: a chart that does not join stage 1's last point to stage 2's first"),
    ("config/<metric>_mean, config/<metric>_std", "configuration", "mean and sample std of its trials' last "
                                                                    "evaluations, over the sweep's seeds"),
    ("config/n_seeds", "configuration", "n: how many seeds those are over"),
    ("config/<metric>_adjusted, …_adjusted_se", "configuration", "seed-adjusted estimate of the selection metric "
                                                                 "and its standard error: what ranks configurations "
                                                                 "that ran different seeds"),
    ("best_config/<metric>_mean, …_std, …/n_seeds", "sweep, retrain", "the best configuration over the sweep's "
                                                                      "seeds: the estimate it was chosen on"),
    ("runner_up_config/<metric>_mean, …_std, …/n_seeds", "retrain (`--compare-runner-up`)",
     "the runner-up configuration over the sweep's seeds"),
    ("best_trial/val/miou, best_trial/report/miou", "sweep", "the best trial (`summary.json` `best`, whose "
                                                             "checkpoint is logged): one seed, last evaluation"),
    ("confirm/<metric>_mean, …_std, …/n_seeds", "retrain", "the best configuration on fresh seeds: the confirmation"),
    ("confirm_runner_up/<metric>_mean, …_std, …/n_seeds", "retrain (`--compare-runner-up`)",
     "the runner-up on the same fresh seeds"),
    ("trials/total, trials/finished, trials/failed", "sweep", "trial counts"),
    ("system/*", "sweep, retrain", "MLflow's samples of the driver machine (CPU, memory, disk, network)"),
)


STAGED = (SELECTION, REPORT)  # evaluations also logged per stage (``stage_copies``)


def stage_copies(values: Mapping[str, Any], stage: str) -> dict[str, float]:
    """The ``STAGED`` evaluations of one record once more under their stage (``"stage2"`` ->
    ``stage2/val/miou``), so their chart has no line across the stage boundary (``val/miou`` itself
    runs over every stage, on one global step)."""
    return {f"{stage}/{key}": float(values[key]) for key in STAGED if key in values}


def mean_key(scope: str, metric: str) -> str:
    """``config/val/miou_mean``: the mean of ``metric`` over the seeds ``scope`` names."""
    return f"{scope}/{metric}_mean"


def adjusted_key(scope: str, metric: str) -> str:
    """``config/val/miou_adjusted``: the seed-adjusted estimate (``stats.additive``); ``…_adjusted_se`` its error."""
    return f"{scope}/{metric}_adjusted"


def std_key(scope: str, metric: str) -> str:
    """``config/val/miou_std``: the sample std (ddof = 1) over those seeds."""
    return f"{scope}/{metric}_std"


def seeds_key(scope: str) -> str:
    """``config/n_seeds``: n, the number of seeds behind ``scope``'s means."""
    return f"{scope}/n_seeds"


def single_key(scope: str, metric: str) -> str:
    """``best_trial/val/miou``: one run's number, copied to another run under its scope."""
    return f"{scope}/{metric}"


def metrics_table() -> str:
    """``METRICS`` as the markdown table of docs/mlflow.md."""
    rows = ["| metric | on runs | what it is |", "| --- | --- | --- |"]
    rows += [f"| `{name}` | {runs} | {meaning} |" for name, runs, meaning in METRICS]
    return "\n".join(rows)


# ----------------------------------------------------------------------------- links and descriptions


TRAINING_QUERY = f"?workflowType={TRAINING_WORKFLOW}"  # keeps the UI in its training view


def run_link(experiment_id: str, run_id: str, text: str) -> str:
    """A markdown link to a run, relative to the UI's address (works on any host and port)."""
    return f"[{text}](#/experiments/{experiment_id}/runs/{run_id}{TRAINING_QUERY})"


def model_link(name: str, version: str | int, text: str | None = None) -> str:
    """A markdown link to a registered model version, in the training view."""
    return f"[{text or f'{name} version {version}'}](#/models/{name}/versions/{version}{TRAINING_QUERY})"


def config_diff(values: Mapping[str, Any], base: Mapping[str, Any]) -> list[str]:
    """``key: base -> value`` for each key whose value differs from the flattened base config."""
    return [f"`{key}`: {value_text(base[key]) if key in base else 'unset'} → {value_text(value)}"
            for key, value in values.items() if key not in base or base[key] != value]


def description(title: str, lines: Iterable[str] = (), links: Iterable[str] = ()) -> str:
    """A run description: a bold title, then a bullet per line, then a ``Links`` list, one link a line.

    ``lines`` are markdown (``plain`` escapes free text); the title is escaped here."""
    text = [f"**{plain(title)}**", ""]
    text += [f"- {line}" for line in lines]
    links = list(links)
    if links:
        text += ["", "Links:", *(f"- {link}" for link in links)]
    return "\n".join(text).strip() + "\n"


_MARKDOWN = re.compile(r"([\\`*_\[\]<>~@#|])")
# MLflow's UI renders descriptions with showdown's GitHub flavour: ``@word`` after a space becomes
# a link to github.com/word (its ``ghMentions``) unless written ``\@word``.
GH_MENTION = re.compile(r"(^|\s)(\\)?(@([a-z\d]+(?:[a-z\d.-]+?[a-z\d]+)*))", re.IGNORECASE | re.MULTILINE)


def plain(text: str) -> str:
    """``text`` as markdown that renders as itself: the characters markdown (and showdown's GitHub
    flavour: ``@mentions``) would act on are backslash-escaped."""
    return _MARKDOWN.sub(r"\\\1", text)


def source_tags(command: str | None = None) -> dict[str, str]:
    """``mlflow.source.name`` (the command's name), the whole command line, type and user.

    MLflow's Source column shows what follows the last ``/`` of ``mlflow.source.name``, so it
    holds ``simtune sweep`` and the command line goes to ``simtune.command``.

    Args:
        command: the command line to record; None = this process's ``simtune ...`` command line.
    """
    line = command or command_line()
    return {TAG_SOURCE_NAME: command_name(line), TAG_COMMAND: line, TAG_SOURCE_TYPE: "LOCAL", TAG_USER: user()}


def command_name(line: str) -> str:
    """``simtune sweep search_spaces/a.yaml --set x=1`` -> ``simtune sweep``; another program: its name."""
    words = line.split()
    if words[:1] == ["simtune"]:
        return " ".join(words[:2])
    return Path(words[0]).name if words else "simtune"


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


# ----------------------------------------------------------------------------- the UI's views


def experiment_tags() -> dict[str, str]:
    """Tags that make MLflow's UI open an experiment in its training view (runs, models, registry)."""
    return {TAG_EXPERIMENT_KIND: TRAINING_KIND}


def view_key(sweep: str) -> str:
    """The saved configurations view of a sweep (``?viewStateShareKey=``): its name, as characters a
    tag key allows (``views.configurations_view``)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", sweep)[:190] or "sweep"


def trials_view_key(sweep: str) -> str:
    """The saved chart view of a sweep's trials (``views.trials_view``)."""
    return f"{view_key(sweep)}-trials"


# ----------------------------------------------------------------------------- opening the UI


def ui_command(tracking_uri: str, port: int = UI_PORT) -> str:
    """``mlflow ui`` on ``tracking_uri``: what ``simtune ui`` runs, with the environment's mlflow.

    A server already serves a UI, so its address is returned instead.
    """
    if tracking_uri.startswith(("http://", "https://")):
        return f"open {tracking_uri.rstrip('/')} (an MLflow server)"
    return f"mlflow ui --backend-store-uri {shlex.quote(tracking_uri)} --port {port}"


def simtune_program(argv0: str | None = None) -> str:
    """How to call simtune again as this process was called: ``simtune`` when that name on PATH is
    this program, else its path (a virtualenv not activated), else ``python -m simtune.cli``."""
    path = Path(argv0 if argv0 is not None else sys.argv[0])
    if path.name == "simtune":
        found = shutil.which("simtune")
        return "simtune" if found and Path(found).resolve() == path.resolve() else shlex.quote(str(path.resolve()))
    if path.name == "cli.py":
        return f"{shlex.quote(sys.executable)} -m simtune.cli"
    return "simtune"


def simtune_ui_command(storage: Path | str, argv0: str | None = None) -> str:
    """``simtune ui --storage <folder>``: the MLflow UI on a folder of sweeps' store, from simtune's
    own environment (``simtune_program``)."""
    return f"{simtune_program(argv0)} ui --storage {shlex.quote(str(storage))}"


def ui_url(tracking_uri: str, experiment_id: str | None = None, run_id: str | None = None,
           port: int = UI_PORT, *, sweep: str | None = None, charts: bool = False) -> str:
    """The UI address in its training view: with ``sweep`` the sweep's configurations table, or with
    ``charts`` its trials' chart view (``views``); else the run's page or the experiment's runs."""
    base = tracking_uri.rstrip("/") if tracking_uri.startswith(("http://", "https://")) else f"http://127.0.0.1:{port}"
    if experiment_id is None:
        return base
    query: dict[str, str] = {"workflowType": TRAINING_WORKFLOW}
    if sweep:
        query["viewStateShareKey"] = trials_view_key(sweep) if charts else view_key(sweep)
        if charts:
            query["compareRunsMode"] = "CHART"
    page = f"runs/{run_id}" if run_id and not sweep else "runs"
    return f"{base}/#/experiments/{experiment_id}/{page}?{urllib.parse.urlencode(query)}"


def ui_lines(tracking_uri: str, experiment_id: str | None = None, run_id: str | None = None, *,
             sweep: str | None = None, storage: Path | str | None = None, port: int = UI_PORT) -> list[str]:
    """What every command that wrote to MLflow prints last: the links (a sweep's two views, else the
    run), then the command that serves them: ``simtune ui`` on the folder of sweeps (for a SQLite
    store: ``storage``, else the database's folder), or the server's address."""
    lines = []
    if experiment_id is not None and sweep:
        lines += ["MLflow, once the UI below runs:",
                  f"  configurations: {ui_url(tracking_uri, experiment_id, port=port, sweep=sweep)}",
                  f"  every trial, charted: {ui_url(tracking_uri, experiment_id, port=port, sweep=sweep, charts=True)}"]
        if run_id:
            lines.append(f"  this run: {ui_url(tracking_uri, experiment_id, run_id, port=port)}")
    elif experiment_id is not None:
        lines.append(f"MLflow, once the UI below runs: {ui_url(tracking_uri, experiment_id, run_id, port=port)}")
    if tracking_uri.startswith(("http://", "https://")):
        return [*lines, ui_command(tracking_uri)]
    folder = storage if storage is not None else Path(tracking_uri.removeprefix("sqlite:///")).parent
    return [*lines, simtune_ui_command(folder)]
