"""``simtune report`` replaces its report folder whole and says so; it never replaces a folder that is
not a report. Through the CLI, on hand-written sweeps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simtune.cli import main
from simtune.errors import EXIT_USER_ERROR
from simtune.testing import write_trial


@pytest.fixture
def storage(tmp_path: Path) -> Path:
    """A folder of sweeps holding sweep ``s``: two configurations, finished."""
    for index, lam in enumerate((0.001, 0.01)):
        write_trial(tmp_path / "sweeps" / "s", f"t{index}", [30.0 + index, 31.0 + index], lambda_ci=lam)
    return tmp_path / "sweeps"


def report(capsys: pytest.CaptureFixture[str], *args: str) -> list[str]:
    capsys.readouterr()
    assert main(["report", *args]) == 0
    return capsys.readouterr().out.splitlines()


def test_a_second_report_replaces_the_first_whole_and_says_so(storage: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    folder = storage / "s" / "report"
    first = report(capsys, "--storage", str(storage))
    assert f"wrote {folder / 'summary.md'}" in first and not any("replaced" in line for line in first)
    manifest = json.loads((folder / "report.json").read_text())
    assert manifest["sweep"] == str(storage / "s") and manifest["written"][:2] == "20"
    (folder / "table4_stage1.bank_size.png").write_text("a figure of an older sweep state")
    second = report(capsys, "--storage", str(storage))
    notes = [line for line in second if line.startswith("note: replaced the report written ")]
    assert notes == [f"note: replaced the report written {manifest['written']} in {folder} "
                     "(a report folder holds the latest report)"]
    assert not (folder / "table4_stage1.bank_size.png").exists()  # nothing of the older report stays
    assert (folder / "summary.md").is_file()
    assert sorted(p.name for p in (storage / "s").iterdir() if p.name.startswith(".")) == []  # no staging left


def test_out_into_a_folder_that_is_no_report_is_refused_and_left_alone(storage: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "todo.txt").write_text("keep me")
    capsys.readouterr()
    assert main(["report", "--storage", str(storage), "--out", str(mine)]) == EXIT_USER_ERROR
    err = capsys.readouterr().err.strip()
    assert err == (f"simtune report: error: --out {mine}: holds files but no report (report.json); "
                   "simtune report replaces only a report folder: give a new folder")
    assert [p.name for p in mine.iterdir()] == ["todo.txt"] and (mine / "todo.txt").read_text() == "keep me"
    assert not (storage / "s" / "report").exists()  # refused before anything was written


def test_out_takes_a_new_or_empty_folder_and_then_replaces_its_own_report(storage: Path, tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    assert not any("replaced" in line for line in report(capsys, "--storage", str(storage), "--out", str(out)))
    assert (out / "summary.md").is_file() and (out / "report.json").is_file()
    again = report(capsys, "--storage", str(storage), "--out", str(out))
    assert any(line.startswith("note: replaced the report written ") and str(out) in line for line in again)


def test_a_report_folder_from_before_report_json_is_replaced_too(storage: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    folder = storage / "s" / "report"
    folder.mkdir()
    (folder / "summary.md").write_text("an older report")
    lines = report(capsys, "--storage", str(storage))
    assert any(line.startswith("note: replaced the report written ") for line in lines)
    assert (folder / "summary.md").read_text() != "an older report" and (folder / "report.json").is_file()
