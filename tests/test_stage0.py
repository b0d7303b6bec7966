"""Stage 0 (init.source_pretrain): a source-only warm start, trained once per setting and
shared; stage 1 and stage 2 both start from it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from simtune import config, schema
from simtune.cli import main
from simtune.rundir import load_segmenter_state
from simtune.testing import SYNTHETIC_EXPERIMENT, tiny_cfg, tiny_overrides
from simtune.train.loop import Callback
from simtune.train.pipeline import run_pipeline
from simtune.train.stage_cache import stage0_key, stage1_key

STAGE0 = ("init.source_pretrain.iters=3", "init.source_pretrain.lr=0.02")


def stage0_cfg(bench: tuple[Path, Path], *extra: str) -> schema.Config:
    """The tiny config with a stage 0 of its own (``STAGE0``)."""
    return tiny_cfg(bench, *STAGE0, *extra)


def same_weights(a: Path, b: Path) -> bool:
    left, right = (load_segmenter_state(p) for p in (a, b))
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


class Events(Callback):
    def __init__(self) -> None:
        self.evals: list[tuple[str, int]] = []
        self.ends: list[str] = []

    def on_eval(self, stage: str, step: int, metrics: dict[str, float], checkpoint: Path | None) -> None:
        self.evals.append((stage, step))

    def on_stage_end(self, stage: str, step: int, metrics: dict[str, float]) -> None:
        self.ends.append(stage)


def test_stage0_runs_first_and_both_stages_start_from_it(tiny_bench: tuple[Path, Path], tmp_path: Path) -> None:
    """With lr 0 a stage keeps its initial weights: stage 1 and stage 2 end where stage 0 ended."""
    cfg = stage0_cfg(tiny_bench, "stage1.lr=0", "stage2.lr=0")
    events = Events()
    run_pipeline(cfg, tmp_path / "run", callbacks=[events])
    run = tmp_path / "run"
    assert same_weights(run / "stage1/model.pt", run / "stage0/model.pt")
    assert same_weights(run / "stage2/model.pt", run / "stage0/model.pt")  # re-initialised from stage 0
    history = json.loads((run / "stage0/history.json").read_text())
    assert history[-1]["step"] == 0  # stage 0 counts -iters .. 0; stage 1 still starts at 0
    assert events.evals[0][0] == "stage0" and ("stage0", 0) in events.evals
    assert events.ends == ["stage0", "stage1", "stage2"]


def test_stage0_is_trained_once_per_setting(tiny_bench: tuple[Path, Path], tmp_path: Path) -> None:
    cache = tmp_path / "stage0_cache"
    first = run_pipeline(stage0_cfg(tiny_bench, "mode=source_only"), tmp_path / "a", stage0_cache=cache)
    events = Events()
    run_pipeline(stage0_cfg(tiny_bench, "mode=aa", "stage1.lambda_adv=0.01"), tmp_path / "b", callbacks=[events],
                 stage0_cache=cache)
    done = json.loads((tmp_path / "b/stage0/done.json").read_text())
    assert done["from_cache"] == stage0_key(stage0_cfg(tiny_bench))
    assert same_weights(tmp_path / "a/stage0/model.pt", tmp_path / "b/stage0/model.pt")
    assert ("stage0", 0) in events.evals  # the cached evaluations are replayed to the callbacks
    assert first.out_dir == tmp_path / "a"
    assert len([p for p in cache.iterdir() if p.is_dir()]) == 1


def test_stage0_key_follows_what_stage0_depends_on(tiny_bench: tuple[Path, Path]) -> None:
    base = stage0_cfg(tiny_bench)
    assert stage0_key(base) == stage0_key(stage0_cfg(tiny_bench, "stage1.lambda_ci=0.1", "mode=aa",
                                                   "stage2.iters=5", "pseudo_label.quantile=0.3"))
    for change in ("seed=1", "init.source_pretrain.iters=4", "init.source_pretrain.lr=0.05", "model.width=8"):
        assert stage0_key(stage0_cfg(tiny_bench, change)) != stage0_key(base), change
    # A different warm start is a different stage 1.
    assert stage1_key(stage0_cfg(tiny_bench, "init.source_pretrain.iters=4")) != stage1_key(base)


def test_train_cli_shares_stage0_beside_its_runs_unless_told_not_to(tiny_bench: tuple[Path, Path],
                                                                    tmp_path: Path) -> None:
    def train(out: Path, *flags: str) -> None:
        args: list[Any] = ["train", str(SYNTHETIC_EXPERIMENT), "--out", str(out), "--no-progress", *flags]
        for item in tiny_overrides(*tiny_bench, *STAGE0, "mode=source_only"):
            args += ["--set", item]
        assert main(args) == 0

    train(tmp_path / "runs/a")
    train(tmp_path / "runs/b")
    assert "from_cache" in json.loads((tmp_path / "runs/b/stage0/done.json").read_text())
    train(tmp_path / "solo/c", "--no-stage0-cache")
    assert not (tmp_path / "solo/stage0_cache").exists()
    assert "from_cache" not in json.loads((tmp_path / "solo/c/stage0/done.json").read_text())


def test_stage0_is_off_by_default_for_every_shipped_paper_experiment() -> None:
    for name in ("gta5_cityscapes.yaml", "synthia_cityscapes.yaml"):
        cfg = config.load(SYNTHETIC_EXPERIMENT.parent / name, [])
        assert cfg.init.source_pretrain.iters == 0
