"""The whole two-stage pipeline through the real CLI and library: outputs, modes, resume, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from simtune.rundir import RunDir, load_segmenter_state
from simtune.cli import main
from simtune.train.pipeline import run_pipeline
from simtune.testing import SYNTHETIC_EXPERIMENT, tiny_cfg, tiny_overrides
from simtune.train.loop import Callback
from simtune.train.stage_cache import stage1_key


def test_train_cli_runs_both_stages(tiny_bench: tuple[Path, Path], tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    args = ["train", str(SYNTHETIC_EXPERIMENT), "--out", str(out), "--no-progress"]
    for item in tiny_overrides(*tiny_bench, "select.enabled=true"):  # validators are off by default
        args += ["--set", item]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "stage1" in printed and "stage2" in printed and "report/miou" in printed
    # Self-describing run: resolved config, revision, versions and seed next to the outputs.
    resolved = yaml.safe_load(RunDir(out).config_file.read_text())
    assert resolved["stage1"]["iters"] == 4 and resolved["model"]["backbone"] == "small"
    run = json.loads(RunDir(out).run_file.read_text())
    assert {"git_revision", "packages", "seed"} <= set(run) and "torch" in run["packages"]
    results = json.loads(RunDir(out).results.read_text())
    assert results["stages"]["stage1"]["iteration"] == 4.0
    assert results["stages"]["stage2"]["iteration"] == 6.0  # one counter across both stages
    # Label-free validators at every evaluation, in the history, results.json and the printout.
    history = RunDir(out).history("stage1")
    assert all({"select/entropy", "select/im", "select/snd", "select/mixval", "select/dev"} <= set(h) for h in history)
    assert "select/mixval" in results["stages"]["stage2"] and "label-free validators" in printed
    thresholds = json.loads((out / "pseudo" / "thresholds.json").read_text())
    assert thresholds["method"] == "sim"
    labels = sorted((out / "pseudo" / "labels").glob("*.png"))
    assert len(labels) == 6  # one pseudo-label per target train image
    # simtune eval works on the run's checkpoints.
    assert main(["eval", str(RunDir(out).model("stage2")), "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["report/miou"] == pytest.approx(results["stages"]["stage2"]["report/miou"], abs=1e-6)


def test_run_directory_is_never_overwritten(tiny_bench: tuple[Path, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "old.txt").write_text("an older run")
    args = ["train", str(SYNTHETIC_EXPERIMENT), "--out", str(out), "--no-progress"]
    for item in tiny_overrides(*tiny_bench):
        args += ["--set", item]
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]


@pytest.mark.parametrize("mode", ["source_only", "aa", "target_only"])
def test_ablation_rows_run_one_stage(tiny_bench: tuple[Path, Path], tmp_path: Path, mode: str) -> None:
    result = run_pipeline(tiny_cfg(tiny_bench, f"mode={mode}"), tmp_path / mode)
    assert list(result.stages) == ["stage1"]
    assert 0.0 <= result.final["report/miou"] <= 100.0


class StopAt(Callback):
    """Interrupts a run right after the evaluation (and checkpoint) at ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_eval(self, stage: str, step: int, metrics: dict[str, float], checkpoint: Path | None) -> None:
        if step == self.step:
            raise KeyboardInterrupt(f"interrupted at {step}")


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_segmenter_state(path)


@pytest.mark.parametrize("stop_at", [2, 5])  # mid stage 1, mid stage 2
def test_resume_after_interruption_matches_uninterrupted(tiny_bench: tuple[Path, Path], tmp_path: Path,
                                                         stop_at: int) -> None:
    cfg = tiny_cfg(tiny_bench, "stage2.iters=3", "stage2.schedule_iters=3", "eval.every=1")
    straight = run_pipeline(cfg, tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(cfg, tmp_path / "resumed", callbacks=[StopAt(stop_at)])
    resumed = run_pipeline(cfg, tmp_path / "resumed", resume=True)
    assert resumed.stages == straight.stages
    a, b = weights(RunDir(tmp_path / "straight").model("stage2")), weights(RunDir(tmp_path / "resumed").model("stage2"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_missing_dataset_root_fails_before_any_compute(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code = main(["train", str(SYNTHETIC_EXPERIMENT), "--out", str(out), "--set",
                 f"data.source.root={tmp_path / 'nowhere'}"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "nowhere" in err and "\n" not in err
    assert not out.exists()  # nothing half-written


def test_cbst_spatial_prior_changes_the_pseudo_labels(tiny_bench: tuple[Path, Path], tmp_path: Path) -> None:
    """CBST-SP: the source class-frequency prior is multiplied into the probabilities before selection."""
    labels = {}
    for prior in (False, True):
        cfg = tiny_cfg(tiny_bench, "pseudo_label.method=cbst", f"pseudo_label.spatial_prior={str(prior).lower()}")
        result = run_pipeline(cfg, tmp_path / f"prior-{prior}")
        assert result.pseudo_labels is not None
        assert result.pseudo_labels["method"] == ("cbst-sp" if prior else "cbst")
        folder = tmp_path / f"prior-{prior}" / "pseudo" / "labels"
        labels[prior] = [np.asarray(Image.open(path)) for path in sorted(folder.glob("*.png"))]
    assert len(labels[True]) == len(labels[False]) == 6
    # Same stage 1 (same seed and settings), so any difference comes from the prior.
    assert any((a != b).any() for a, b in zip(labels[True], labels[False]))




def test_stage1_is_trained_once_for_runs_that_differ_after_it(tiny_bench: tuple[Path, Path], tmp_path: Path) -> None:
    """A pseudo-label or stage-2 sweep pays for stage 1 once: later runs copy it, predictions included."""
    cache = tmp_path / "stage1_cache"
    first = run_pipeline(tiny_cfg(tiny_bench), tmp_path / "a", stage1_cache=cache)
    second_cfg = tiny_cfg(tiny_bench, "pseudo_label.quantile=0.8", "stage2.lr=0.001")
    second = run_pipeline(second_cfg, tmp_path / "b", stage1_cache=cache)
    done = json.loads((tmp_path / "b/stage1/done.json").read_text())
    assert done["from_cache"] == stage1_key(second_cfg) == stage1_key(tiny_cfg(tiny_bench))
    assert second.stages["stage1"] == first.stages["stage1"]
    a, b = weights(tmp_path / "a/stage1/model.pt"), weights(tmp_path / "b/stage1/model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (cache / done["from_cache"] / "predictions/histogram.npy").is_file()  # the target pass, stored once
    assert second.pseudo_labels is not None and "stage2" in second.stages
    assert len([p for p in cache.iterdir() if p.is_dir() and not p.name.startswith(".")]) == 1
