"""Fail fast, fail loud, load safely: through the real CLI, on real runs and real sweeps.

Each test is a promise of the README's "bad input" paragraph or of ``simtune sweep --help``:
one line and exit code 2 before any compute, a sweep's exit code that says whether every
trial finished, user errors inside a trial never retried, no code run from a file a user
hands us, one sweep per name at a time, and a diverged run that ends in one line.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from simtune.cli import main
from simtune.rundir import RunDir
from simtune.errors import EXIT_DIVERGED, EXIT_TRIALS_FAILED, EXIT_USER_ERROR, ConfigError
from simtune.sweep.options import CALLBACKS_ENV, trial_callbacks
from simtune.testing import (FAULT_ENV, REPO_ROOT, SYNTHETIC_EXPERIMENT, FaultInjector, simtune, tiny_overrides,
                             write_tiny_space)

SPACES = REPO_ROOT / "search_spaces"


def cli_args(command: str, *args: str, bench: tuple[Path, Path], extra: tuple[str, ...] = ()) -> list[str]:
    out = [command, *args]
    for item in tiny_overrides(*bench, *extra):
        out += ["--set", item]
    return out


def one_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{text}"
    return lines[0]


@pytest.fixture(scope="module")
def finished_run(tiny_bench: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished two-stage tiny run; tests copy it before tampering with it."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main(cli_args("train", str(SYNTHETIC_EXPERIMENT), "--out", str(out), "--no-progress",
                         bench=tiny_bench)) == 0
    return out


# ----------------------------------------------------------------------------- pre-flight


def test_sweep_with_a_missing_dataset_root_is_one_line_before_ray(tmp_path: Path,
                                                                  tiny_bench: tuple[Path, Path]) -> None:
    space = write_tiny_space(tmp_path / "space", tiny_bench, {"stage1.lambda_ci": {"grid": [0.1, 0.01]}})
    missing = tmp_path / "nowhere" / "gta5"
    start = time.perf_counter()
    proc = simtune("sweep", str(space), "--storage", str(tmp_path / "sweeps"), "--name", "x",
                   "--set", f"data.source.root={missing}", cwd=tmp_path)
    assert proc.returncode == EXIT_USER_ERROR
    line = one_line(proc.stderr)
    assert str(missing) in line and "does not exist" in line
    assert not (tmp_path / "sweeps" / "x").exists()  # nothing written
    assert "Ray" not in proc.stdout + proc.stderr  # Ray never started
    assert time.perf_counter() - start < 60


def test_validate_refuses_every_combination_the_pipeline_refuses(tmp_path: Path,
                                                                 tiny_bench: tuple[Path, Path],
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # resnet101 from random weights diverges (frozen BN at identity statistics): refused up front,
    # for the one grid value that makes it, even though the base config is fine.
    space = write_tiny_space(tmp_path / "space", tiny_bench, {"model.backbone": {"grid": ["small", "resnet101"]}})
    assert main(["validate", str(space)]) == EXIT_USER_ERROR
    err = one_line(capsys.readouterr().err)
    assert "model.init_weights" in err and "resnet101" in err and "model.random_init" in err
    # ... and accepted when the user says explicitly that a random init is wanted.
    space = write_tiny_space(tmp_path / "space2", tiny_bench, {"model.backbone": {"grid": ["small", "resnet101"]}},
                       set={"model.random_init": True})
    assert main(["validate", str(space)]) == 0


def test_train_refuses_resnet101_without_weights_before_writing(tmp_path: Path, tiny_bench: tuple[Path, Path],
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code = main(cli_args("train", str(SYNTHETIC_EXPERIMENT), "--out", str(out), "--no-progress",
                         bench=tiny_bench, extra=("model.backbone=resnet101",)))
    assert code == EXIT_USER_ERROR
    assert "model.init_weights" in one_line(capsys.readouterr().err)
    assert not out.exists()


def test_validate_checks_the_weights_file_and_data(tmp_path: Path, tiny_bench: tuple[Path, Path],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump({"base": str(SYNTHETIC_EXPERIMENT),
                                   "model": {"init_weights": str(tmp_path / "missing.pth")}}))
    assert main(cli_args("validate", str(exp), bench=tiny_bench)) == EXIT_USER_ERROR
    assert "missing.pth" in one_line(capsys.readouterr().err)


def test_numbers_in_exponent_notation_are_numbers(tmp_path: Path, tiny_bench: tuple[Path, Path],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """YAML 1.1 reads ``1e-3`` as a string; the paper's grids are written that way."""
    space = write_tiny_space(tmp_path / "space", tiny_bench, {"stage1.lambda_ci": {"grid": ["1e-3", 1.0e-2]}})
    space.write_text(space.read_text().replace("'1e-3'", "1e-3"))
    assert main(["validate", str(space), "--set", "stage1.lr=1e-2"]) == 0
    assert main(["validate", str(space), "--set", "stage1.lr=fast"]) == EXIT_USER_ERROR
    assert "'stage1.lr' must be a number" in capsys.readouterr().err


def test_missing_builtin_benchmark_is_written_instead_of_failing(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from simtune import preflight

    default = tmp_path / "data" / "synthetic"
    monkeypatch.setattr(preflight, "builtin_benchmark_root", lambda: default)
    monkeypatch.setattr(preflight, "BUILTIN_SIZES", {"num_source": 8, "num_target_train": 6,
                                                    "num_target_val_per_city": 2})
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump({"base": str(SYNTHETIC_EXPERIMENT), "data": {
        "source": {"root": str(default / "gta5")}, "target": {"root": str(default / "cityscapes")}}}))
    overrides = [a for item in tiny_overrides(default / "gta5", default / "cityscapes") for a in ("--set", item)]
    assert main(["validate", str(exp), "--data", *overrides]) == 0
    assert "will be written" in capsys.readouterr().out and not default.exists()
    assert main(["train", str(exp), "--out", str(tmp_path / "run"), "--no-progress", *overrides]) == 0
    printed = capsys.readouterr()
    assert "writing the built-in benchmark" in printed.err + printed.out
    assert (default / "benchmark.json").is_file() and RunDir(tmp_path / "run").results.is_file()


# ----------------------------------------------------------------------------- loading safely


def test_eval_refuses_a_crafted_pickle_without_running_it(finished_run: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, (f"touch {marker}",))

    torch.save({"nets": {"segmenter": Payload()}}, RunDir(run).model("stage2"))
    assert main(["eval", str(run)]) == EXIT_USER_ERROR
    err = one_line(capsys.readouterr().err)
    assert "model.pt" in err and "refused" in err
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncated", "wrong_keys", "not_torch"])
def test_eval_of_a_damaged_model_is_one_line(finished_run: Path, tmp_path: Path, damage: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    model = RunDir(run).model("stage2")
    if damage == "truncated":
        model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    elif damage == "wrong_keys":
        torch.save({"conv.weight": torch.zeros(3)}, model)
    else:
        model.write_text("not a checkpoint")
    assert main(["eval", str(model)]) == EXIT_USER_ERROR
    assert "model.pt" in one_line(capsys.readouterr().err)


def test_resumable_checkpoints_hold_only_plain_data(finished_run: Path) -> None:
    run = RunDir(finished_run)
    files = [path for stage in ("stage1", "stage2") for path in (run.model(stage), run.checkpoint(stage))]
    assert [path for path in files if not path.is_file()] == []
    for path in files:
        torch.load(path, map_location="cpu", weights_only=True)  # raises on anything but plain data


def test_resume_from_a_truncated_checkpoint_is_one_line(tiny_bench: tuple[Path, Path], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    args = cli_args("train", str(SYNTHETIC_EXPERIMENT), "--out", str(out), "--no-progress", bench=tiny_bench,
                    extra=("mode=source_only",))
    assert main(args) == 0
    checkpoint = RunDir(out).checkpoint("stage1")
    RunDir(out).done("stage1").unlink()  # as if the run had been killed before the stage ended
    RunDir(out).results.unlink()
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    capsys.readouterr()
    assert main([*args, "--resume"]) == EXIT_USER_ERROR
    assert "checkpoint.pt" in one_line(capsys.readouterr().err)


# ----------------------------------------------------------------------------- divergence


def test_diverged_train_ends_in_one_line_and_leaves_the_run_inspectable(tiny_bench: tuple[Path, Path],
                                                                        tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code = main(cli_args("train", str(SYNTHETIC_EXPERIMENT), "--out", str(out), "--no-progress",
                         bench=tiny_bench, extra=("stage1.lr=1e8",)))
    assert code == EXIT_DIVERGED
    line = one_line(capsys.readouterr().err)
    assert "stage1" in line and "iteration" in line and "loss/seg_src" in line and str(out) in line
    assert RunDir(out).config_file.is_file() and RunDir(out).history_file("stage1").is_file()
    assert json.loads((out / "failure.json").read_text())["stage"] == "stage1"


# ----------------------------------------------------------------------------- sweeps


def test_trials_run_only_the_hooks_their_caller_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CALLBACKS_ENV)
    monkeypatch.setenv(FAULT_ENV, "nan_at=2@stage1.lambda_ci=0.03")
    assert trial_callbacks() == ()  # SIMTUNE_FAULT alone injects nothing
    monkeypatch.setenv(CALLBACKS_ENV, "simtune.testing:fault_hook")
    (make,) = trial_callbacks()
    monkeypatch.delenv(FAULT_ENV)  # read once, in the driver: a trial on another node need not see it
    make = pickle.loads(pickle.dumps(make))  # as every trial receives it
    (hook,) = make(tmp_path, {"stage1.lambda_ci": 0.03})
    assert isinstance(hook, FaultInjector) and hook.at == {"nan_at": 2}
    assert make(tmp_path, {"stage1.lambda_ci": 0.01}) == []


@pytest.mark.parametrize("item", ["simtune.nowhere:hook", "simtune.testing:no_such_hook", "simtune.testing",
                                  "simtune.testing:FAULT_ENV"])
def test_a_trial_hook_that_is_no_function_is_refused(item: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CALLBACKS_ENV, item)
    with pytest.raises(ConfigError, match=f"{CALLBACKS_ENV}: .*{item}"):
        trial_callbacks()



@pytest.mark.ray_sweep
def test_sweep_exit_code_counts_failed_trials_and_user_errors_are_not_retried(
        tmp_path: Path, tiny_bench: tuple[Path, Path]) -> None:
    space = write_tiny_space(tmp_path / "space", tiny_bench, {"pseudo_label.quantile": {"grid": [0.3, 0.5, 0.7]}},
                       max_failures=2)
    fault = "config_error_at=2@pseudo_label.quantile=0.3;nan_at=4@pseudo_label.quantile=0.5"
    proc = simtune("sweep", str(space), "--storage", str(tmp_path / "sweeps"), "--name", "f", cwd=tmp_path,
                   env={**os.environ, FAULT_ENV: fault})
    assert proc.returncode == EXIT_TRIALS_FAILED, proc.stdout[-2000:] + proc.stderr[-2000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert "2 of 3 trials failed" in last and "ConfigError" in last
    summary = json.loads((tmp_path / "sweeps" / "f" / "summary.json").read_text())
    for trial in summary["trials"]:
        starts = (tmp_path / "sweeps" / "f" / "runs" / trial["trial_id"] / "attempts.jsonl").read_text()
        assert len(starts.splitlines()) == 1  # neither the user error nor the divergence was retried


def test_second_sweep_of_the_same_name_is_refused_while_the_first_runs(tmp_path: Path,
                                                                       tiny_bench: tuple[Path, Path]) -> None:
    from simtune.sweep.lock import SweepLock

    space = write_tiny_space(tmp_path / "space", tiny_bench, {"stage1.lambda_ci": {"grid": [0.1]}})
    storage = tmp_path / "sweeps"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from simtune.sweep.lock import SweepLock\n"
        f"lock = SweepLock(Path({str(storage)!r}), 'x'); lock.acquire(); print('held', flush=True); time.sleep(120)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        proc = simtune("sweep", str(space), "--storage", str(storage), "--name", "x", cwd=tmp_path)
        assert proc.returncode == EXIT_USER_ERROR
        line = one_line(proc.stderr)
        assert f"pid {holder.pid}" in line and socket.gethostname() in line
    finally:
        holder.kill()
        holder.wait()
    # The holder died without releasing: its lock is stale, taken over and reported.
    lock = SweepLock(storage, "x")
    note = lock.acquire()
    assert note is not None and f"pid {holder.pid}" in note
    lock.release()


@pytest.mark.parametrize("space_file", sorted(p.name for p in SPACES.glob("*.yaml")))
def test_every_shipped_space_passes_the_preflight(space_file: str, tiny_bench: tuple[Path, Path],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Every trial config a shipped space can produce (grid values, range ends) is one the pipeline accepts.
    (Real sweeps of each search algorithm, on tiny spaces, are in test_sweep.py and test_sweep_racing.py.)"""
    assert main(cli_args("validate", str(SPACES / space_file), "--data", bench=tiny_bench)) == 0, \
        capsys.readouterr().err
