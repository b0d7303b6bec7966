"""``simtune data stats``: region sizes of the benchmark, held-out source IoU of runs, the IoU table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simtune.cli import main
from simtune.labels import CLASS_NAMES, THING_IDS
from simtune.testing import SYNTHETIC_EXPERIMENT, tiny_overrides


def test_sizes_measures_every_thing_class(tiny_bench: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    bench = tiny_bench[0].parent
    assert main(["data", "stats", "sizes", str(bench), "--experiment", str(SYNTHETIC_EXPERIMENT)]) == 0
    header, rule, *lines = capsys.readouterr().out.strip().splitlines()
    assert header.split()[:3] == ["class", "source", "median"] and set(rule) <= {"-", " "}
    assert [line.split()[0] for line in lines] == [CLASS_NAMES[c] for c in THING_IDS]


@pytest.fixture(scope="module")
def tiny_run(tiny_bench: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A source-only run of a few iterations on the tiny benchmark."""
    out = tmp_path_factory.mktemp("stats") / "source_only"
    sets = [a for item in tiny_overrides(*tiny_bench, "mode=source_only", "select.enabled=false")
            for a in ("--set", item)]
    assert main(["train", str(SYNTHETIC_EXPERIMENT), "--out", str(out), "--no-progress", *sets]) == 0
    return out


@pytest.mark.slow
def test_heldout_and_table_score_runs_on_unseen_source_images(tiny_run: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["data", "stats", "heldout", str(tiny_run), "--count", "2"]) == 0
    one = json.loads(capsys.readouterr().out)
    assert one["weights"].endswith("model.pt") and 0 <= one["heldout_src/miou"] <= 100
    assert main(["data", "stats", "heldout", str(tiny_run), str(tiny_run), "--count", "2"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("2 runs (last stage): lowest and mean held-out source IoU")
    miou = next(line for line in printed.splitlines() if line.startswith("miou"))
    assert miou.split()[1:] == [f"{one['heldout_src/miou']:.1f}"] * 2  # the same run twice: lowest = mean
    assert main(["data", "stats", "table", str(tiny_run), str(tiny_run), "--count", "2", "--part", "report"]) == 0
    table = capsys.readouterr().out.strip().splitlines()
    assert table[0].startswith("| class | in-domain (held-out source) | source only on target (report)")
    assert table[-1].startswith(f"| mIoU | {one['heldout_src/miou']:.1f} |")


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["--stage", "stage2"], "no stage2 model"),
    (["--count", "0"], "--count must be >= 1"),
])
def test_heldout_refuses_bad_input(tiny_run: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                   message: str) -> None:
    capsys.readouterr()
    assert main(["data", "stats", "heldout", str(tiny_run), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_heldout_refuses_a_folder_that_is_no_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "stats", "heldout", str(tmp_path)]) == 2
    assert "config.yaml: file not found" in capsys.readouterr().err
