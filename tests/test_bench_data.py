"""``simtune bench --data`` through the real CLI: the table's rows, the JSON, the files it writes, user errors.

No rate is asserted beyond being positive: the machine running the tests may be shared.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from simtune.cli import main
from simtune.bench.data.files import write_datasets
from simtune.bench.data.measure import cores_per_gpu
from simtune.bench.data.settings import DataBenchSettings
from simtune.data.datasets import SegmentationDataset, list_samples, read_png8
from simtune.testing import REPO_ROOT, simtune

SMALL = ["--size", "small", "--images", "12", "--distinct", "3", "--iterations", "6"]


def test_bench_data_prints_a_row_per_worker_count_and_the_cores_line(tmp_path: Path) -> None:
    out = tmp_path / "data.json"
    done = simtune("bench", "--data", "--workers", "0,1", *SMALL, "--out", str(out), cwd=REPO_ROOT,
                   timeout=120)  # the real CLI, in its own process
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:1] == ["workers"])
    assert "iterations/s" in lines[header] and "ms/iteration" in lines[header] and "speed-up vs 0" in lines[header]
    rows = [line.split() for line in lines[header + 2:header + 4]]
    assert [row[0] for row in rows] == ["0", "1"]
    assert all(float(row[2]) > 0 and float(row[3]) > 0 for row in rows)
    assert rows[0][4] == "1.00x"
    assert any(line.startswith("cores per GPU at 35 ms per step") for line in lines)
    assert any(line.startswith("machine: ") for line in lines)
    assert "page cache is warm" in done.stdout

    result = json.loads(out.read_text())
    assert [row["workers"] for row in result["loader"]] == [0, 1]
    assert [row["processes"] for row in result["loader"]] == [0, 2]
    assert all(row["iterations_per_s"] > 0 and row["iterations"] == 6 for row in result["loader"])
    cores = result["cores_per_gpu"]
    assert result["loader"][0]["worker_cpu_ms_per_iteration"] is None
    one = result["loader"][1]
    assert one["source_worker_cpu_ms_per_item"] > 0 and one["target_worker_cpu_ms_per_item"] > 0
    assert one["worker_cpu_ms_per_iteration"] == pytest.approx(
        one["source_worker_cpu_ms_per_item"] + one["target_worker_cpu_ms_per_item"])
    assert cores["cores"] == cores["workers"] + 1 >= 2 and cores["from"] == "the 1-worker run's worker CPU time"
    assert result["per_sample"]["source"]["ms"]["pil_decode"] > 0
    assert result["per_sample"]["cv2_label_channels"] == 3  # cv2 turns the palette into colours


def test_bench_data_json_on_stdout_and_step_ms(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--data", "--workers", "0", "--step-ms", "0.001", "--json", *SMALL]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [row["workers"] for row in result["loader"]] == [0] and result["loader"][0]["speedup_vs_0"] == 1.0
    cores = result["cores_per_gpu"]
    assert cores["from"] == "the 0-worker run's wall time" and cores["step_ms"] == 0.001
    assert cores["workers"] > 1000  # milliseconds of loading per microsecond step


def test_bench_data_bad_workers_exits_2_with_one_line() -> None:
    done = simtune("bench", "--data", "--workers", "0,x", cwd=REPO_ROOT, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "simtune bench: error: --workers must be comma-separated integers >= 0, e.g. 0,1,2,4, but got '0,x'"]


@pytest.mark.parametrize("args, message", [
    (["--data", "--workers", "1,-1"], "--workers must be distinct integers >= 0"),
    (["--data", "--workers", "1", "--step-ms", "0"], "--step-ms must be a number > 0"),
    (["--data", "--size", "huge"], "--size must be one of"),
    (["--workers", "1"], "--workers times the loaders; it needs --data"),
])
def test_bench_data_bad_arguments_exit_2_with_one_line(args: list[str], message: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1 and message in captured.err


def test_written_datasets_have_the_real_layouts_and_label_ids(tmp_path: Path) -> None:
    settings = DataBenchSettings(size="small", images=5, distinct=2)
    files = write_datasets(tmp_path, settings, log=lambda line: None)
    gta5 = list_samples("gta5", tmp_path / "gta5")
    cityscapes = list_samples("cityscapes", tmp_path / "cityscapes", "train", with_labels=False)
    assert [s.name for s in gta5] == [f"{i:05d}.png" for i in range(1, 6)]
    assert len(cityscapes) == 5 and cityscapes[0].name == "aachen/aachen_000000_000000_leftImg8bit.png"
    assert (tmp_path / "gta5/images/00003.png").stat().st_ino == (tmp_path / "gta5/images/00001.png").stat().st_ino
    ids = read_png8(tmp_path / "gta5/labels/00001.png", "label")
    assert ids.shape == (132, 240) and set(np.unique(ids).tolist()) <= {7, 8, 11, 12, 17, 20, 21, 23, 24, 26}
    item = SegmentationDataset("gta5", gta5, size=(160, 90))[0]
    assert item["image"].shape == (3, 90, 160) and item["label"].shape == (90, 160)
    assert files["gta5"]["mean_image_mb"] > 0 and files["gta5"]["distinct"] == 2


def test_cores_per_gpu_prefers_the_workers_cpu_time() -> None:
    costs: dict[str, Any] = {"source": {"ms": {"item": 60.0}}, "target": {"ms": {"item": 40.0}}}
    rows: list[dict[str, Any]] = [{"workers": 1, "ms_per_iteration": 150.0, "worker_cpu_ms_per_iteration": 101.0,
                                   "source_worker_cpu_ms_per_item": 71.0, "target_worker_cpu_ms_per_item": 30.0},
            {"workers": 0, "ms_per_iteration": 145.0, "worker_cpu_ms_per_iteration": None}]
    c = cores_per_gpu(rows, costs, 35.0)
    assert (c["workers"], c["cores"], c["num_workers_per_stream"]) == (3, 4, 3)
    assert c["from"] == "the 1-worker run's worker CPU time"
    c = cores_per_gpu(rows[1:], costs, 35.0)
    assert (c["workers"], c["from"], c["num_workers_per_stream"]) == (5, "the 0-worker run's wall time", 2)
    c = cores_per_gpu([], costs, 50.0)
    assert (c["workers"], c["cores"], c["from"]) == (2, 3, "the per-item timings")
