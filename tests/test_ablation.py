"""``simtune ablation``: the paired protocol end to end on the tiny benchmark, pooling, bad input."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from simtune import config
from simtune.cli import main
from simtune.rundir import RunDir
from simtune.stats import paired_difference
from simtune.testing import REPO_ROOT, SYNTHETIC_EXPERIMENT, tiny_overrides
from simtune.workflows.ablation import rows
from simtune.workflows.ablation.record import AblationDir, AblationRecord, comparisons, write_record


def sets(bench: tuple[Path, Path], *extra: str) -> list[str]:
    return [a for item in tiny_overrides(*bench, "init.source_pretrain.iters=2", *extra) for a in ("--set", item)]


def ablation(out: Path, bench: tuple[Path, Path], *args: str) -> int:
    return main(["ablation", str(SYNTHETIC_EXPERIMENT), "--out", str(out), *args, *sets(bench)])


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_chosen_modes_give_only_their_rows_and_comparisons() -> None:
    cfg = config.load(SYNTHETIC_EXPERIMENT)
    table = rows(cfg, (0.1,), ("aa", "aa_sim"))
    assert table == {"+ AA": ("aa", []), "+ AA + SIM (lambda_ci 0.1)": ("aa_sim", ["stage1.lambda_ci=0.1"])}
    assert comparisons(list(table), "+ AA + SIM (lambda_ci 0.01)") == [
        ("SIM - AA at lambda_ci 0.1", "+ AA + SIM (lambda_ci 0.1)", "+ AA")]
    full = rows(cfg, (0.1,))
    assert "+ AA + SIM (lambda_ci 0.01)" in full  # + SSL's stage 1 joins with + SSL
    labels = [label for label, _, _ in comparisons(list(full), "+ AA + SIM (lambda_ci 0.01)")]
    # the equal-length controls are compared with + SSL and with their own short rows
    assert {"SSL - AA, equal length", "full - source, equal length", "AA as long as SSL - AA",
            "source as long as SSL - source", "AA - source, both as long as SSL"} <= set(labels)


@pytest.mark.slow
def test_every_row_of_a_seed_starts_from_that_seeds_stage0(tiny_bench: tuple[Path, Path], tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = AblationDir(tmp_path / "ablation")
    assert ablation(out.root, tiny_bench, "--seeds", "2", "--lambdas", "0.1", "--jobs", "2") == 0
    printed = capsys.readouterr().out
    results = json.loads(out.record.read_text())["results"]
    assert list(results) == ["source only", "+ AA", "+ AA + SIM (lambda_ci 0.1)", "+ AA + SIM (lambda_ci 0.01)",
                             "+ AA + SIM + SSL", "source only (as long as + SSL)", "+ AA (as long as + SSL)",
                             "target only"]
    assert all([run["seed"] for run in runs] == [0, 1] for runs in results.values())
    for run in results["+ AA"]:
        assert min(run["report/things"], run["report/stuff"]) <= run["report/miou"] <= max(
            run["report/things"], run["report/stuff"])
    assert len([p for p in out.stage0_cache.iterdir() if p.is_dir()]) == 2  # one stage 0 per seed, for all rows
    for row in results:
        for seed in (0, 1):
            run = RunDir(out.run(row, seed))
            assert run.done("stage0").is_file()
            cfg = run.config()
            assert cfg.seed == seed and cfg.stage2.iters == 4  # stage 2 as long as stage 1
            # the equal-length controls train stage 1 + stage 2's iterations in one stage
            assert cfg.stage1.iters == (8 if "as long as" in row else 4)
    table = out.table.read_text()
    for label in ("AA - source", "SIM - AA", "SSL - SIM", "full - source", "SSL - AA, equal length",
                  "full - source, equal length", "AA as long as SSL - AA", "source as long as SSL - source",
                  "AA - source, both as long as SSL", "SIM - AA at lambda_ci 0.1"):
        assert f"| {label} |" in table
        assert f"\n{label} " in printed  # the terminal table has the same lines
    assert "Verdict:" in table and "simtune ablation " in table and "2 seeds (0-1)" in table

    # A second call with another lambda_ci reuses every finished run and adds the new row.
    finished = {done: done.stat().st_mtime_ns for done in out.runs.glob("*/*/done.json")}
    assert ablation(out.root, tiny_bench, "--seeds", "2", "--lambdas", "0.1", "0.05", "--jobs", "1") == 0
    results = json.loads(out.record.read_text())["results"]
    assert len(results["+ AA + SIM (lambda_ci 0.05)"]) == 2
    assert all(done.stat().st_mtime_ns == mtime for done, mtime in finished.items())  # nothing retrained
    assert "--lambdas 0.1 0.05" in out.table.read_text()

    # The matched-region diagnostic reads the same run dirs (shares in percent, means over runs).
    capsys.readouterr()
    aa_runs = [str(out.run("+ AA", seed)) for seed in (0, 1)]
    assert load_script("region_purity").main([*aa_runs, "--stage", "stage0"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("2 runs (stage0), selection split")
    shares = [float(cell[:-1]) for line in printed.splitlines()[2:] for cell in line.split() if cell.endswith("%")]
    assert shares and all(0 <= share <= 100 for share in shares)


@pytest.mark.slow
def test_pool_combines_folders_over_disjoint_seeds(tiny_bench: tuple[Path, Path], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    first, confirm, pooled = tmp_path / "ablation", tmp_path / "confirm", tmp_path / "pooled"
    assert ablation(first, tiny_bench, "--seeds", "1", "--modes", "aa", "aa_sim", "--lambdas", "0.1",
                    "--jobs", "1") == 0
    assert ablation(confirm, tiny_bench, "--first-seed", "1", "--seeds", "1", "--modes", "aa", "aa_sim",
                    "--lambdas", "0.1", "--jobs", "1") == 0
    capsys.readouterr()
    assert main(["ablation", "--pool", str(first), str(confirm), "--out", str(pooled)]) == 0
    printed = capsys.readouterr().out
    record = json.loads(AblationDir(pooled).record.read_text())
    assert {row: [run["seed"] for run in runs] for row, runs in record["results"].items()} == {
        "+ AA": [0, 1], "+ AA + SIM (lambda_ci 0.1)": [0, 1]}
    parts = [json.loads(AblationDir(folder).record.read_text())["results"] for folder in (first, confirm)]
    sim = [part["+ AA + SIM (lambda_ci 0.1)"][0]["report/miou"] for part in parts]
    aa = [part["+ AA"][0]["report/miou"] for part in parts]
    d = paired_difference(sim, aa)  # paired by seed over both folders
    line = next(line for line in printed.splitlines() if line.startswith("SIM - AA at lambda_ci 0.1 "))
    assert f"{d.mean:+.2f} [{d.low:+.2f}, {d.high:+.2f}]" in line
    assert "(paired, n = 2)" in printed and "2 seeds (0-1)" in printed
    assert f"Pooled from: {first}, {confirm}" in AblationDir(pooled).table.read_text()


def fake_record(folder: Path, seeds: list[int], **config: object) -> Path:
    """A finished ablation folder's record without training: + AA and one + SIM row."""
    def runs(offset: float) -> list[dict[str, float]]:
        return [{"seed": s, "report/miou": 20 + offset + s % 3, "val/miou": 19 + offset, "report/things": 10 + offset,
                 "report/stuff": 30 + offset} for s in seeds]

    record = AblationRecord(results={"+ AA": runs(0), "+ AA + SIM (lambda_ci 0.1)": runs(0.5)},
                            config={"stage1.iters": 600, **config}, default_sim="+ AA + SIM (lambda_ci 0.01)",
                            command="simtune ablation ...", wall_seconds=60)
    folder.mkdir(parents=True)
    write_record(AblationDir(folder), record)
    return folder


def test_pool_of_records_pairs_by_seed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = fake_record(tmp_path / "a", [0, 1, 2]), fake_record(tmp_path / "b", [3, 4])
    assert main(["ablation", "--pool", str(a), str(b), "--out", str(tmp_path / "pooled")]) == 0
    printed = capsys.readouterr().out
    assert "5 seeds (0-4)" in printed and "+0.50 [+0.50, +0.50]" in printed and "(paired, n = 5)" in printed


@pytest.mark.parametrize("case, message", [
    ("shared seed", "both hold seed 2"),
    ("other settings", "different settings (stage1.iters: 600 vs 300)"),
    ("one folder", "--pool needs two or more ablation folders"),
    ("run option", "--seeds does not apply"),
    ("no record", "no ablation.json"),
    ("same folder twice", "is given twice"),
])
def test_pool_refuses_bad_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str,
                                  message: str) -> None:
    a, b = fake_record(tmp_path / "a", [0, 1, 2]), tmp_path / "b"
    others = {"shared seed": lambda: [str(fake_record(b, [2, 3]))],
              "other settings": lambda: [str(fake_record(b, [3, 4], **{"stage1.iters": 300}))],
              "one folder": list, "run option": lambda: [str(fake_record(b, [3])), "--seeds", "3"],
              "no record": lambda: [str(tmp_path)], "same folder twice": lambda: [str(a)]}
    out = tmp_path / "pooled"
    assert main(["ablation", "--pool", str(a), *others[case](), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    (["missing.yaml"], "missing.yaml: file not found"),
    ([str(SYNTHETIC_EXPERIMENT), "--modes", "aa", "bogus"], "--modes: unknown mode 'bogus'"),
    ([str(SYNTHETIC_EXPERIMENT), "--seeds", "0"], "--seeds must be >= 1"),
    ([str(SYNTHETIC_EXPERIMENT), "--lambdas", "-0.1"], "--lambdas: every lambda_ci must be finite and > 0"),
    ([str(SYNTHETIC_EXPERIMENT), "--set", "stage1.lamda_ci=0.1"], "did you mean 'stage1.lambda_ci'"),
    ([str(SYNTHETIC_EXPERIMENT), "--set", "data.source.root=/nonexistent/gta5"], "/nonexistent/gta5"),
])
def test_bad_input_is_refused_before_any_compute(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 args: list[str], message: str) -> None:
    out = tmp_path / "ablation"
    assert main(["ablation", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()  # nothing written, nothing trained


def test_an_out_folder_of_other_settings_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = fake_record(tmp_path / "ablation", [0, 1], **{"stage1.iters": 300})
    assert main(["ablation", str(SYNTHETIC_EXPERIMENT), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "holds an ablation run with other settings" in err and len(err.splitlines()) == 1
    assert not AblationDir(out).runs.exists()
