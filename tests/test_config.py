"""The config schema: paper defaults, experiment files with bases, --set overrides, errors."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest

from simtune import config, schema
from simtune.cli import main
from simtune.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]

REQUIRED_KEYS = [
    "seed", "data.source.dataset", "data.source.root", "data.target.dataset", "data.target.root",
    "model.backbone", "model.init_weights", "stage1.iters", "stage1.lambda_adv", "stage1.lambda_ci",
    "stage1.bank_size", "pseudo_label.method", "pseudo_label.quantile", "pseudo_label.cap",
    "pseudo_label.portion", "stage2.iters", "stage2.lambda_ci", "eval.every",
]


def test_defaults_are_the_papers_gta5_setting() -> None:
    cfg = schema.Config()
    stage1 = cfg.stage1
    assert (stage1.lr, stage1.momentum, stage1.weight_decay, stage1.poly_power) == (2.5e-4, 0.9, 5e-4, 0.9)
    assert cfg.stage1.head_lr_mult == 10.0
    assert (cfg.discriminator.lr, cfg.discriminator.betas) == (1e-4, (0.9, 0.99))
    assert (cfg.stage1.lambda_ci, cfg.stage1.bank_size, cfg.sim.instances_per_image) == (0.01, 50, 10)
    assert cfg.stage2.lambda_ci == 0.001  # the authors' stage-2 value
    assert (cfg.pseudo_label.quantile, cfg.pseudo_label.cap) == (0.5, 0.9)
    assert cfg.data.source.size == (1280, 720) and cfg.data.target.size == (1024, 512)
    assert cfg.model.backbone == "resnet101" and cfg.model.aspp_all_branches


def test_required_dotted_keys_exist_and_every_field_has_a_meaning() -> None:
    rows = {key: meaning for key, _, meaning in config.help_table()}
    for key in REQUIRED_KEYS:
        assert key in rows
    assert all(meaning for meaning in rows.values())


def test_config_is_frozen() -> None:
    cfg = schema.Config()
    with pytest.raises(AttributeError):
        cfg.stage1.lambda_ci = 1.0  # type: ignore[misc]


def test_experiment_base_chain_and_overrides(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("stage1: {lambda_ci: 0.05, iters: 10}\ndata: {source: {root: src}}\n")
    (tmp_path / "exp.yaml").write_text("base: base.yaml\nstage1: {iters: 20}\nseed: 3\n")
    cfg = config.load(tmp_path / "exp.yaml", ["stage1.bank_size=200", "seed=4"])
    assert cfg.stage1.lambda_ci == 0.05  # from the base
    assert cfg.stage1.iters == 20  # the file beats its base
    assert cfg.seed == 4 and cfg.stage1.bank_size == 200  # --set beats the file
    assert cfg.data.source.root == str((tmp_path / "src").resolve())  # relative roots resolve against the file
    assert cfg.stage1.lr == 2.5e-4  # untouched defaults survive


def test_int_accepted_where_float_expected() -> None:
    assert config.load(None, ["stage1.lambda_adv=1"]).stage1.lambda_adv == 1.0


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("stage1.lamda_ci=0.1", "unknown key 'stage1.lamda_ci'; did you mean 'stage1.lambda_ci'?"),
        ("stage1.iters=1.5", "'stage1.iters' must be an integer, got 1.5"),
        ("stage1.lambda_ci=abc", "'stage1.lambda_ci' must be a number, got 'abc'"),
        ("pseudo_label.method=median", "'pseudo_label.method' must be one of ['sim', 'cbst'], got 'median'"),
        ("model.aspp_all_branches=yes please", "'model.aspp_all_branches' must be true or false"),
        ("data.source.size=[1]", "'data.source.size' must be a list [int, int]"),
        ("stage1.iters", "expected KEY=VALUE"),
    ],
)
def test_bad_overrides_name_the_key(override: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        config.load(None, [override])
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("stage1:\n  lambda_ci: [0.1\n", "line"),
        ("- just\n- a list\n", "expected a mapping"),
        ("stage1: {bank_sise: 3}\n", "did you mean 'stage1.bank_size'"),
        ("base: missing.yaml\n", "missing.yaml: file not found"),
        ("!!python/object:os.system {}\n", "exp.yaml"),
    ],
)
def test_bad_files_fail_with_one_line(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_validate_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = REPO / "experiments" / "synthetic.yaml"
    assert main(["validate", str(good)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("stage1: {lambda_cii: 0.1}\n")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "stage1.lambda_cii" in err and "did you mean 'stage1.lambda_ci'" in err


def test_flatten_round_trips_through_build() -> None:
    cfg = config.load(None, ["stage1.lambda_ci=0.05", "data.target.size=[64, 32]"])
    flat = config.flatten(cfg)
    assert flat["stage1.lambda_ci"] == 0.05 and flat["data.target.size"] == [64, 32]
    assert config.build(config.to_dict(cfg)) == cfg


def test_config_hash_is_canonical_and_pinned() -> None:
    """Stage caches and sweeps on disk are found by this hash: it must not move between versions."""
    assert config.config_hash({"b": 1, "a": (1, 2)}) == config.config_hash({"a": [1, 2], "b": 1})
    assert config.config_hash({"b": 1, "a": [1, 2]}) != config.config_hash({"b": 2, "a": [1, 2]})
    # SHA-256 of '{"a": [1, 2], "b": 1}', the first 16 hex digits.
    assert config.config_hash({"b": 1, "a": [1, 2]}) == "3813f9409eb0095b"


def test_the_table_of_modes_covers_every_mode() -> None:
    """``schema.MODES`` is the one table of modes: every ``Mode`` has its row, in the paper's order."""
    assert tuple(schema.MODES) == typing.get_args(schema.Mode)
    assert [m for m, losses in schema.MODES.items() if losses.matching] == ["aa_sim", "aa_sim_ssl"]
    assert [m for m, losses in schema.MODES.items() if losses.self_training] == ["aa_sim_ssl"]
    assert not schema.MODES["target_only"].target_images and schema.MODES["aa"].target_images


def test_direction_sign_orients_a_metric() -> None:
    assert [schema.direction_sign(d) * 3.0 for d in schema.DIRECTIONS] == [3.0, -3.0]
    with pytest.raises(ValueError, match="mode must be 'max' or 'min', but got 'maximize'"):
        schema.direction_sign("maximize")
