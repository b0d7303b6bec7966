"""``scripts/gpu_check.sh --dry-run``: every part of the one-run GPU check, end to end on the CPU.

The device run has one try of a few minutes, so the script is exercised here first: each part
must write its JSON, the summary must list each part with its exit status, and a part stopped
by its time limit must leave its partial JSON and no big files. No timing is asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_check.sh"
PARTS = ["env", "gpu_tests", "paper", "bench", "packing"]
PART_JSON = {
    "env": ["env.json"],
    "gpu_tests": ["gpu_tests.json"],
    "paper": ["paper/paper_run.json"],
    "bench": ["bench/bench_gpu.json", "bench/bench_gpu_small.json"],
    "packing": ["bench/packing.json"],
}


def run_check(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run the dry run with OUT in ``tmp_path``; (process, OUT)."""
    out = tmp_path / "out"
    full_env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable, **env}
    full_env.pop("QUICK", None)
    proc = subprocess.run(["bash", str(SCRIPT), "--dry-run"], cwd=REPO, env=full_env, capture_output=True,
                          text=True, timeout=600)
    return proc, out


def load(path: Path) -> Any:
    assert path.is_file(), f"{path} was not written"
    return json.loads(path.read_text())


@pytest.mark.slow
def test_dry_run_runs_every_part_and_writes_its_json(tmp_path: Path) -> None:
    proc, out = run_check(tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]

    summary = load(out / "summary.json")
    assert summary["mode"] == "dry-run" and summary["all_ok"] is True
    assert [p["name"] for p in summary["parts"]] == PARTS
    for part in summary["parts"]:
        assert part["exit"] == 0 and part["timed_out"] is False, part
        assert part["wall_s"] <= part["limit_s"]
        assert part["json"] == PART_JSON[part["name"]]
        for name in part["json"]:
            load(out / name)
    assert (out / "summary.txt").read_text().count(" ok ") == len(PARTS)

    env = load(out / "env.json")
    assert env["ok"] and all(r["ok"] for r in env["imports"].values())
    assert "simtune.train.pipeline" in env["imports"]
    assert env["imports"]["simtune.train.pipeline"]["file"].startswith(str(REPO))  # the source tree's

    tests = load(out / "gpu_tests.json")
    assert tests["exit_code"] == 0 and tests["failed"] == 0 and tests["passed"] + tests["skipped"] >= 1

    paper = load(out / "paper" / "paper_run.json")
    assert paper["status"] == 0 and not paper["errors"] and paper["interrupted"] is None
    assert paper["steps_done"] == ["benchmark", "init", "paper_run", "precision", "deterministic"]
    run = paper["paper_run"]
    assert run["ms_per_iteration"]["stage1"] > 0
    assert run["losses_finite"] is True
    workers = paper["num_workers"]
    assert workers["setting"] == "auto" and isinstance(workers["used"], int) and workers["used"] >= 0
    assert run["settings"]["num_workers"] == workers["used"]
    assert run["settings"]["cudnn_benchmark"] is True and run["settings"]["deterministic"] is False
    assert paper["precision_fp32"]["settings"]["amp"] is False
    assert paper["deterministic_1"]["settings"]["deterministic"] is True
    assert "repeat" in paper["deterministic"]

    packing = load(out / "bench" / "packing.json")
    assert sorted(packing) == ["1", "2"]

    big = [p for p in out.rglob("*") if p.is_file() and p.stat().st_size > 1_000_000]
    assert not big, f"files too big to bring back: {big}"
    assert not Path(summary["work"]).exists(), "the check's folder of big files was not removed"


@pytest.mark.slow
def test_a_part_out_of_time_leaves_its_partial_json_and_no_big_files(tmp_path: Path) -> None:
    proc, out = run_check(tmp_path, PARTS="paper", LIMIT_PAPER="25")
    assert proc.returncode != 0

    summary = load(out / "summary.json")
    assert summary["all_ok"] is False
    (part,) = summary["parts"]
    assert part["name"] == "paper" and part["timed_out"] is True and part["exit"] in (124, 137)

    paper = load(out / "paper" / "paper_run.json")  # written step by step, so the steps done are there
    assert "benchmark" in paper["steps_done"] and paper["running"]
    if part["exit"] == 124:  # stopped by SIGTERM (not killed 5 s later): the script said so
        assert paper["interrupted"].startswith("signal 15")
    assert [p.name for p in (out / "paper").iterdir()] == ["paper_run.json"]
    assert not Path(summary["work"]).exists()
