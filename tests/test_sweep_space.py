"""Search-space files: every mistake is one SearchSpaceError line before Ray starts; shipped files load."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from simtune.cli import main
from simtune.errors import SearchSpaceError
from simtune.search.parse import load_space, override_settings
from simtune.testing import simtune, write_space_file

REPO = Path(__file__).resolve().parents[1]
SHIPPED_SPACES = sorted((REPO / "search_spaces").glob("*.yaml"))
PAPER_EXPERIMENTS = [REPO / "experiments" / "gta5_cityscapes.yaml", REPO / "experiments" / "synthia_cityscapes.yaml"]


SpaceWriter = Callable[[dict[str, Any]], Path]


@pytest.fixture
def small_space(tmp_path: Path) -> SpaceWriter:
    """Writes a space file over a small base experiment beside it (``exp.yaml``) from a mapping."""
    (tmp_path / "exp.yaml").write_text("model: {backbone: small}\nstage1: {iters: 40}\nstage2: {iters: 20}\n"
                                       "eval: {every: 10}\n")
    return lambda body: write_space_file(tmp_path, {"base": "exp.yaml", **body})


BAD_SPACES = {
    "unknown key with suggestion": (
        {"params": {"stage1.lamda_ci": {"grid": [0.01]}}}, "did you mean 'stage1.lambda_ci'"),
    "bounds reversed": (
        {"search": {"algorithm": "random"}, "params": {"stage1.lambda_adv": {"uniform": [3, 1]}}},
        "low <= high must hold, but got low=3, high=1"),
    "log of zero": (
        {"search": {"algorithm": "optuna"}, "params": {"stage1.lambda_ci": {"loguniform": [0, 0.1]}}},
        "'loguniform' needs low > 0, but got low=0"),
    "grid with optuna": (
        {"search": {"algorithm": "optuna"}, "params": {"stage1.lambda_ci": {"grid": [0.1, 0.01]}}},
        "'grid' cannot be used with search.algorithm optuna"),
    "non-grid with grid search": (
        {"params": {"stage1.lambda_ci": {"choice": [0.1, 0.01]}}}, "search.algorithm grid needs every parameter"),
    "wrong value type": (
        {"params": {"stage1.bank_size": {"grid": [10, "big"]}}}, "'stage1.bank_size' must be an integer, got 'big'"),
    "float range on an int key": (
        {"search": {"algorithm": "random"}, "params": {"stage1.bank_size": {"uniform": [10, 100]}}},
        "'stage1.bank_size' must be an integer"),
    "unknown literal": (
        {"params": {"pseudo_label.method": {"grid": ["sim", "cbsst"]}}}, "must be one of ['sim', 'cbst']"),
    "unknown kind": (
        {"params": {"stage1.lambda_ci": {"normal": [0, 1]}}}, "expected one of {grid: ..."),
    "unknown top-level key": (
        {"paramz": {}, "params": {"seed": {"grid": [0, 1]}}}, "unknown key 'paramz'; did you mean 'params'"),
    "empty params": ({"params": {}}, "'params' must be a non-empty mapping"),
    "selection on the report split": (
        {"metric": "report/miou", "params": {"seed": {"grid": [0, 1]}}}, "report/ is the held-out report split"),
    "stage-2 key without stage 2": (
        {"set": {"mode": "aa_sim"}, "params": {"pseudo_label.quantile": {"grid": [0.3, 0.5]}}},
        "has no effect in mode aa_sim"),
    "bad set override": (
        {"set": {"stage1.iterz": 5}, "params": {"seed": {"grid": [0, 1]}}}, "did you mean 'stage1.iters'"),
    "starting point off the space": (
        {"search": {"algorithm": "random", "points_to_evaluate": [{"stage1.bank_size": 10}]},
         "params": {"stage1.lambda_ci": {"uniform": [0.001, 0.1]}}}, "'stage1.bank_size' is not a swept parameter"),
    "grace period past max_t": (
        {"scheduler": {"type": "asha", "grace_period": 100, "max_t": 60}, "params": {"seed": {"grid": [0, 1]}}},
        "grace_period <= max_t must hold, but got grace_period=100, max_t=60"),
    "randint with float bounds": (
        {"search": {"algorithm": "random"}, "params": {"seed": {"randint": [0, 2.5]}}}, "integer bounds"),
    "negative gpus": (
        {"resources": {"gpus": -1}, "params": {"seed": {"grid": [0, 1]}}}, "'resources.gpus' must be a number >= 0"),
}


@pytest.mark.parametrize("case", list(BAD_SPACES))
def test_bad_space_is_one_line_naming_file_and_key(small_space: SpaceWriter, case: str) -> None:
    body, expected = BAD_SPACES[case]
    path = small_space(body)
    with pytest.raises(SearchSpaceError) as info:
        load_space(path)
    message = str(info.value)
    assert expected in message
    assert str(path) in message or path.name in message
    assert "\n" not in message


def test_missing_base_file_is_a_search_space_error(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text("base: nowhere.yaml\nparams: {seed: {grid: [0, 1]}}\n")
    with pytest.raises(SearchSpaceError, match="nowhere.yaml: file not found"):
        load_space(path)


def test_set_on_a_swept_key_is_refused(small_space: SpaceWriter) -> None:
    path = small_space({"params": {"stage1.lambda_ci": {"grid": [0.1, 0.01]}}})
    with pytest.raises(SearchSpaceError, match="--set stage1.lambda_ci conflicts with the swept parameter"):
        load_space(path, ["stage1.lambda_ci=0.5"])


def test_validate_cli_prints_one_line_and_exits_2(small_space: SpaceWriter, capsys: pytest.CaptureFixture[str]) -> None:
    path = small_space({"params": {"stage1.lambda_ci": {"uniform": [3, 1]}}, "search": {"algorithm": "random"}})
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "low <= high must hold, but got low=3, high=1" in err[0]


def test_validate_cli_in_a_fresh_process(small_space: SpaceWriter) -> None:
    path = small_space({"params": {"stage1.lamda_ci": {"grid": [0.1]}}})
    proc = simtune("validate", str(path), cwd=path.parent, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "did you mean 'stage1.lambda_ci'" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("path", SHIPPED_SPACES, ids=lambda p: p.name)
def test_shipped_spaces_validate(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    space = load_space(path)
    assert space.base.is_file() and space.params
    assert space.metric == "val/miou"
    assert main(["validate", str(path)]) == 0
    assert f"{len(space.params)} parameters" in capsys.readouterr().out


@pytest.mark.parametrize("path", PAPER_EXPERIMENTS, ids=lambda p: p.name)
def test_paper_experiments_validate(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(path), "--config-only"]) == 0
    # Without the user's data and weights the run would be refused, so validate refuses it too.
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and ("not found" in err or "does not exist" in err)


def test_paper_sizes_and_backbone() -> None:
    from simtune import config

    gta5, synthia = (config.load(p) for p in PAPER_EXPERIMENTS)
    assert gta5.model.backbone == synthia.model.backbone == "resnet101"
    assert gta5.data.source.size == (1280, 720) and synthia.data.source.size == (1280, 760)
    assert gta5.data.target.size == synthia.data.target.size == (1024, 512)
    assert synthia.data.source.dataset == "synthia" and gta5.model.init_weights


def test_lambda_w_grid_is_the_papers_and_the_demo_a_subset() -> None:
    full = load_space(REPO / "search_spaces" / "lambda_w_full.yaml").params
    demo = load_space(REPO / "search_spaces" / "lambda_w.yaml").params
    assert set(full["stage1.lambda_ci"].values) == {0.1, 0.05, 0.01, 0.005, 0.001}
    assert set(full["stage1.bank_size"].values) == {10, 50, 200, 800, 1600}
    for key, param in demo.items():
        assert set(param.values) <= set(full[key].values)
    # A bank of w >= the stage's iterations never drops a sample: two such w would be one computation.
    demo_iters = load_space(REPO / "search_spaces" / "lambda_w.yaml").base_config.stage1.iters
    assert sum(w >= demo_iters for w in demo["stage1.bank_size"].values) <= 1


def test_trial_config_takes_sampled_values_over_set_and_base(small_space: SpaceWriter) -> None:
    path = small_space({"set": {"stage1.iters": 30}, "search": {"algorithm": "random"},
                        "params": {"stage1.bank_size": {"randint": [10, 20]}, "stage1.lambda_ci": {"uniform": [0, 1]}}})
    space = load_space(path, ["stage2.iters=7"])
    cfg = space.config_for({"stage1.bank_size": np.int64(12), "stage1.lambda_ci": np.float64(0.25)})
    assert (cfg.stage1.bank_size, cfg.stage1.lambda_ci) == (12, 0.25)
    assert (cfg.stage1.iters, cfg.stage2.iters, cfg.eval.every) == (30, 7, 10)  # set, --set, base
    assert space.total_iters() == 37


def test_defaults_and_command_line_settings(small_space: SpaceWriter) -> None:
    space = load_space(small_space({"scheduler": {"type": "asha"}, "params": {"seed": {"grid": [0, 1]}}}))
    assert (space.num_samples, space.max_failures, space.mode) == (1, 2, "max")
    assert (space.scheduler.grace_period, space.scheduler.max_t) == (10, 60)  # eval.every, both stages
    assert (space.resources.cpus, space.resources.gpus, space.max_concurrent) == ("auto", "auto", "auto")
    changed = override_settings(space, num_samples=3, gpus=0.25, cpus=2, max_concurrent=4)
    assert (changed.num_samples, changed.resources.gpus, changed.resources.cpus, changed.max_concurrent) == \
        (3, 0.25, 2.0, 4)
    with pytest.raises(SearchSpaceError, match="must be a number > 0"):
        override_settings(space, cpus=0)


def test_relative_paths_in_set_and_overrides_become_absolute(small_space: SpaceWriter, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    path = small_space({"set": {"data.source.root": "gta"}, "params": {"seed": {"grid": [0, 1]}}})
    monkeypatch.chdir(tmp_path / "..")
    space = load_space(path, ["data.target.root=city"])
    cfg = space.base_config
    assert cfg.data.source.root == str(tmp_path / "gta")  # relative to the space file
    assert cfg.data.target.root == str((tmp_path / ".." / "city").resolve())  # relative to where simtune runs
