"""scripts/ablation.py: the paired protocol end to end on the tiny benchmark."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from types import ModuleType
from pathlib import Path

import pytest
import yaml

from simtune import config
from simtune.testing import REPO_ROOT, SYNTHETIC_EXPERIMENT, tiny_overrides


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ablation", REPO_ROOT / "scripts" / "ablation.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_chosen_modes_give_only_their_rows_and_comparisons() -> None:
    ablation = load_script()
    cfg = config.load(SYNTHETIC_EXPERIMENT)
    table = ablation.rows(cfg, (0.1,), ("aa", "aa_sim"))
    assert table == {"+ AA": ("aa", []), "+ AA + SIM (lambda_ci 0.1)": ("aa_sim", ["stage1.lambda_ci=0.1"])}
    results = {row: [] for row in table}
    assert ablation.comparisons(results, "+ AA + SIM (lambda_ci 0.01)") == [
        ("SIM - AA at lambda_ci 0.1", "+ AA + SIM (lambda_ci 0.1)", "+ AA")]
    assert "+ AA + SIM (lambda_ci 0.01)" in ablation.rows(cfg, (0.1,))  # + SSL's stage 1 joins with + SSL


@pytest.mark.slow
def test_every_row_of_a_seed_starts_from_that_seeds_stage0(tiny_bench: tuple[Path, Path], tmp_path: Path) -> None:
    sets = [a for item in tiny_overrides(*tiny_bench, "init.source_pretrain.iters=2") for a in ("--set", item)]
    out = tmp_path / "ablation"

    def ablation(*lambdas: str) -> None:
        subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "ablation.py"), str(SYNTHETIC_EXPERIMENT),
                        "--seeds", "2", "--out", str(out), "--lambdas", *lambdas, "--jobs", "2", *sets],
                       check=True, capture_output=True, text=True)

    ablation("0.1")
    payload = json.loads((out / "ablation.json").read_text())
    rows = payload["results"]
    assert list(rows) == ["source only", "+ AA", "+ AA + SIM (lambda_ci 0.1)", "+ AA + SIM (lambda_ci 0.01)",
                          "+ AA + SIM + SSL", "source only (as long as + SSL)", "+ AA (as long as + SSL)",
                          "target only"]
    assert all(len(runs) == 2 for runs in rows.values())
    for run in rows["+ AA"]:
        assert set(run) >= {"report/miou", "val/miou", "report/things", "report/stuff"}
        assert min(run["report/things"], run["report/stuff"]) <= run["report/miou"] <= max(
            run["report/things"], run["report/stuff"])
    entries = [p for p in (out / "stage0_cache").iterdir() if p.is_dir()]
    assert len(entries) == 2  # one stage 0 per seed, shared by all eight rows of that seed
    for run in (out / "runs").iterdir():
        assert (run / "stage0" / "done.json").is_file()
        resolved = yaml.safe_load((run / "config.yaml").read_text())
        assert resolved["stage2"]["iters"] == 4  # stage 2 as long as stage 1
        # the equal-length controls train stage 1 + stage 2's iterations in one stage
        assert resolved["stage1"]["iters"] == (8 if "as_long_as" in run.name else 4)
    table = (out / "ablation.md").read_text()
    for label in ("AA - source", "SIM - AA", "SSL - SIM", "full - source", "SSL - AA, equal length",
                  "full - source, equal length", "SIM - AA at lambda_ci 0.1"):
        assert f"| {label} |" in table
    assert "Verdict:" in table

    # A second call with another lambda_ci reuses every finished run and adds the new row.
    finished = {done: done.stat().st_mtime_ns for done in (out / "runs").glob("*/*/done.json")}
    ablation("0.1", "0.05")
    rows = json.loads((out / "ablation.json").read_text())["results"]
    assert "+ AA + SIM (lambda_ci 0.05)" in rows and len(rows["+ AA + SIM (lambda_ci 0.05)"]) == 2
    assert all(done.stat().st_mtime_ns == mtime for done, mtime in finished.items())  # nothing retrained
    assert "--lambdas 0.1 0.05" in (out / "ablation.md").read_text()

    # The matched-region diagnostic reads the same run dirs (shares in percent, means over runs).
    aa_runs = sorted(str(run) for run in (out / "runs").glob("p_AA-seed*"))
    printed = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "region_purity.py"), *aa_runs,
                              "--stage", "stage0"], check=True, capture_output=True, text=True).stdout
    assert printed.startswith("2 runs (stage0), selection split")
    shares = [float(cell[:-1]) for line in printed.splitlines()[2:] for cell in line.split() if cell.endswith("%")]
    assert shares and all(0 <= share <= 100 for share in shares)
