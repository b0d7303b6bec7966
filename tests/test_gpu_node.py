"""Paper scale on a GPU node, rehearsed on CPU: trials fitted to the cluster's GPUs, a trial start
that does not grow with the dataset, loaders with workers.

The GPU tests here run on a real Ray head that declares GPUs it does not have
(``ray start --num-gpus 4``): Ray places and counts trials by those GPU ids, and the trials
themselves train on the CPU.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conftest import local_cluster
from simtune import config
from simtune.data.build import datasets_from_config
from simtune.data.check import ensure_checked, records_dir
from simtune.data.datasets import list_samples
from simtune.data.loaders import Loading, worker_count
from simtune.errors import ConfigError, DataError
from simtune.rundir import RunDir
from simtune.schema import Config
from simtune.search.plan.resources import Node, fit
from simtune.testing import (FAULT_ENV, SYNTHETIC_EXPERIMENT, make_gta5_tree, simtune, tiny_cfg, tiny_overrides,
                             write_tiny_space)
from simtune.train.stage import eval_metrics
from test_sweep import run_sweep, summary_of


def _cfg(**changes: Any) -> Config:
    return config.build(changes, source="test")


R101 = _cfg(model={"backbone": "resnet101", "random_init": True})
SMALL = _cfg(model={"backbone": "small"})


# ----------------------------------------------------------------------------- fitting trials to a cluster


def test_auto_gives_each_trial_a_gpu_and_its_share_of_the_cpus() -> None:
    node = [Node(cpus=64, gpus=8)]
    fitted = fit("auto", "auto", "auto", node, [R101])
    assert (fitted.gpus, fitted.cpus, fitted.max_concurrent) == (1.0, 8.0, 8)
    assert fitted.describe(node) == "8 CPUs + 1 GPU per trial, up to 8 at once (1 node: 64 CPUs, 8 GPUs)"
    # Half a GPU each: two trials per GPU, the CPUs shared among 16.
    assert (fit("auto", 0.5, "auto", node, [SMALL]).max_concurrent, fit("auto", 0.5, "auto", node, [SMALL]).cpus) \
        == (16, 4.0)
    # Two nodes add up; an explicit limit stays.
    two = [Node(16, 2), Node(16, 4)]
    assert fit("auto", "auto", "auto", two, [SMALL]).max_concurrent == 6
    assert fit("auto", "auto", 3, two, [SMALL]).max_concurrent == 3


def test_auto_on_a_cpu_cluster_runs_one_cpu_trials_and_refuses_resnet101() -> None:
    cpus_only = [Node(cpus=2, gpus=0)]
    fitted = fit("auto", "auto", "auto", cpus_only, [SMALL])
    assert (fitted.gpus, fitted.cpus, fitted.max_concurrent) == (0.0, 1.0, 2)
    with pytest.raises(ConfigError) as refused:
        fit("auto", "auto", "auto", cpus_only, [SMALL, R101])
    assert str(refused.value).startswith("model.backbone: resnet101 on CPU-only trials")
    assert "resources.gpus: 0" in str(refused.value) and "\n" not in str(refused.value)
    assert fit(1, 0, "auto", cpus_only, [R101]).gpus == 0  # the space said so itself


def test_refusals_name_the_setting_and_what_the_cluster_has() -> None:
    with pytest.raises(ConfigError, match=r"^runtime.device: cuda, but the trials get no GPU"):
        fit(1, 0, "auto", [Node(8, 4)], [_cfg(runtime={"device": "cuda"})])
    with pytest.raises(ConfigError, match=r"^resources.gpus: 2 per trial, but the largest node .* has 1 GPU"):
        fit(1, 2, "auto", [Node(8, 1), Node(8, 1)], [SMALL])
    with pytest.raises(ConfigError, match=r"^resources.cpus: 32 per trial, but the largest node .* has 16 CPU"):
        fit(32, "auto", "auto", [Node(16, 2)], [SMALL])


# ----------------------------------------------------------------------------- a head with 4 GPUs it does not have


def _intervals(sweep: Path) -> list[tuple[float, float, list[str]]]:
    """(start, end, GPU ids) of each trial: its placement's start to its finished results file."""
    out = []
    for run in sorted((sweep / "runs").iterdir()):
        placement = json.loads((run / "run.json").read_text())["placement"]
        out.append((placement["start"], (run / "results.json").stat().st_mtime, placement["gpu_ids"]))
    return out


def _most_at_once(intervals: list[tuple[float, float, list[str]]]) -> tuple[int, int]:
    """The most trials running at one instant, and the most on one GPU id at one instant."""
    most = most_per_gpu = 0
    for start, _, _ in intervals:
        running = [ids for s, e, ids in intervals if s <= start < e]
        most = max(most, len(running))
        per_id: dict[str, int] = {}
        for ids in running:
            for gpu in ids:
                per_id[gpu] = per_id.get(gpu, 0) + 1
        most_per_gpu = max([most_per_gpu, *per_id.values()])
    return most, most_per_gpu


@pytest.mark.slow
def test_a_head_with_four_gpus_runs_eight_half_gpu_trials_at_once_and_four_with_auto(
        tmp_path: Path, tiny_bench: tuple[Path, Path]) -> None:
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "RAY_AUTH_MODE": "disabled"}
    values = [0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7]
    with local_cluster(tmp_path / "ray", env, head=("--num-cpus=12", "--num-gpus=4")) as cluster:
        # gpus: 0.5 -> eight trials at once (two per GPU id), never more: the ninth waits.
        half = write_tiny_space(tmp_path / "half", tiny_bench, {"pseudo_label.quantile": {"grid": values}},
                                resources={"cpus": 1, "gpus": 0.5}, max_concurrent="auto")
        # No shared stage 1: a trial waiting for another's would never reach the meeting.
        proc = run_sweep(half, tmp_path / "sweeps", "half", "--address", cluster.address, "--no-stage1-cache",
                         timeout=900, env={**env, FAULT_ENV: "meet=8"})
        assert "trials: 1 CPU + 0.5 GPUs per trial, up to 8 at once (1 node: 12 CPUs, 4 GPUs)" in proc.stderr
        sweep = tmp_path / "sweeps" / "half"
        assert summary_of(sweep)["counts"]["finished"] == 9
        assert _most_at_once(_intervals(sweep)) == (8, 2)
        placement = json.loads((sweep / "runs" / sorted(os.listdir(sweep / "runs"))[0] / "run.json").read_text())
        assert placement["placement"]["device"] == "cpu" and placement["device"] == "cpu"  # no CUDA here
        assert placement["placement"]["cuda_visible_devices"] in {"0", "1", "2", "3"}
        assert placement["placement"]["num_workers"] == 0  # 1 CPU: the training loop's own

        # auto -> one GPU and three CPUs each (12 / 4): four at once, one loader worker each.
        auto = write_tiny_space(tmp_path / "auto", tiny_bench, {"pseudo_label.quantile": {"grid": values[:5]}},
                                resources={"cpus": "auto", "gpus": "auto"}, max_concurrent="auto")
        proc = run_sweep(auto, tmp_path / "sweeps", "auto", "--address", cluster.address, "--no-stage1-cache",
                         timeout=900, env={**env, FAULT_ENV: "meet=4"})
        assert "trials: 3 CPUs + 1 GPU per trial, up to 4 at once" in proc.stderr
        sweep = tmp_path / "sweeps" / "auto"
        assert _most_at_once(_intervals(sweep)) == (4, 1)
        run = json.loads((sweep / "runs" / sorted(os.listdir(sweep / "runs"))[0] / "run.json").read_text())
        assert run["placement"]["cpus"] == 3 and run["placement"]["num_workers"] == 1 and run["num_workers"] == 1

        # Refused once the cluster is known, before the sweep folder or an MLflow run is written.
        cuda = write_tiny_space(tmp_path / "cuda", tiny_bench, {"pseudo_label.quantile": {"grid": [0.3]}},
                                resources={"cpus": 1, "gpus": 0})
        cuda.write_text(cuda.read_text().replace("set:\n", "set:\n  runtime.device: cuda\n"))
        proc = run_sweep(cuda, tmp_path / "sweeps", "cuda", "--address", cluster.address, expect=2, env=env)
        assert proc.stderr.strip().splitlines()[-1].startswith("simtune sweep: error: runtime.device: cuda, but")
        assert not (tmp_path / "sweeps" / "cuda").exists()
        greedy = write_tiny_space(tmp_path / "greedy", tiny_bench, {"pseudo_label.quantile": {"grid": [0.3]}},
                                  resources={"cpus": 1, "gpus": 8})
        proc = run_sweep(greedy, tmp_path / "sweeps", "greedy", "--address", cluster.address, expect=2, env=env)
        assert "resources.gpus: 8 per trial, but the largest node of the Ray cluster has 4 GPU(s)" in proc.stderr


# ----------------------------------------------------------------------------- data checked once per file list


def test_every_file_is_decoded_once_per_file_list(tmp_path: Path) -> None:
    make_gta5_tree(tmp_path / "gta", n=6)
    samples = list_samples("gta5", tmp_path / "gta")
    assert ensure_checked("gta5", samples) is True  # decoded now
    assert ensure_checked("gta5", samples) is False  # recorded: nothing decoded
    assert len(list(records_dir().glob("*.json"))) >= 1

    # A file that changes (size or mtime) makes a new file list: checked again, and refused.
    broken = samples[4].image_path
    broken.write_bytes(broken.read_bytes()[:40])
    with pytest.raises(DataError, match=f"^{broken}: cannot read image"):
        ensure_checked("gta5", samples)
    with pytest.raises(DataError):  # nothing was recorded for the broken list
        ensure_checked("gta5", samples)


def test_a_trial_opens_two_files_per_dataset_the_command_all(tmp_path: Path, tiny_bench: tuple[Path, Path]) -> None:
    """Trials (``check_files=2``) start without decoding the dataset; the pre-flight decodes all of it."""
    import shutil

    source = tmp_path / "src"
    shutil.copytree(tiny_bench[0], source)
    cfg = tiny_cfg((source, tiny_bench[1]))
    last = sorted((source / "images").iterdir())[-1]
    last.write_bytes(last.read_bytes()[:40])  # the last source image is truncated
    assert len(datasets_from_config(cfg, check_files=2).source) == 8  # a trial's start: not opened
    with pytest.raises(DataError, match="cannot read image"):
        datasets_from_config(cfg)  # the command's check: every file


def test_a_bad_worker_count_is_refused_before_compute(tmp_path: Path, tiny_bench: tuple[Path, Path]) -> None:
    assert (worker_count("auto", cpus=8), worker_count("auto", cpus=2), worker_count(3)) == (3, 0, 3)
    proc = simtune("train", str(SYNTHETIC_EXPERIMENT), "--out", str(tmp_path / "run"),
                   *sum((["--set", o] for o in tiny_overrides(*tiny_bench)), []), "--set", "data.num_workers=-1",
                   cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and not (tmp_path / "run").exists()
    assert proc.stderr.strip() == "simtune train: error: data.num_workers must be an integer >= 0 or 'auto', got -1"


# ----------------------------------------------------------------------------- loaders with workers


@pytest.mark.slow
def test_workers_change_no_number(tiny_bench: tuple[Path, Path], tmp_path: Path) -> None:
    """Evaluation and a whole run give the same numbers with 0 and 2 loader workers."""
    from simtune.train.builders import build_nets
    from simtune.train.pipeline import run_pipeline

    cfg = tiny_cfg(tiny_bench)
    nets, _ = build_nets(cfg, torch.device("cpu"))
    data = datasets_from_config(cfg)
    scores = [eval_metrics(nets, data.val, torch.device("cpu"), False, loading=Loading(workers=w)) for w in (0, 2)]
    assert scores[0] == scores[1]
    runs = {w: run_pipeline(tiny_cfg(tiny_bench, f"data.num_workers={w}"), tmp_path / f"w{w}") for w in (0, 2)}
    assert runs[0].stages == runs[2].stages
    assert np.array_equal(*(np.load(RunDir(tmp_path / f"w{w}").predictions / "histogram.npy")
                            for w in (0, 2)))


# ----------------------------------------------------------------------------- storage


@pytest.mark.parametrize("command", ["sweep", "retrain", "report"])
def test_an_object_store_uri_as_storage_is_refused_with_one_line(tmp_path: Path, command: str) -> None:
    args = {"sweep": ["sweep", str(SYNTHETIC_EXPERIMENT.parents[1] / "search_spaces" / "lambda_w.yaml")],
            "retrain": ["retrain", "--best"], "report": ["report"]}[command]
    proc = simtune(*args, "--storage", "s3://bucket/sweeps", cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and not (tmp_path / "s3:").exists()
    assert proc.stderr.strip() == (f"simtune {command}: error: --storage s3://bucket/sweeps: a URI is not supported; "
                                   "give a folder that every node mounts at the same path (e.g. NFS), see "
                                   "docs/sweeps.md#clusters")
