"""Test support shipped with the package: tiny dataset trees, tiny search spaces, injected faults.

Tiny dataset trees are in the real on-disk layouts, for tests and smoke runs.

Each ``make_*_tree`` writes a handful of small images with blocky random labels, in the
layout ``simtune.data.datasets`` reads, and returns the sample names it wrote.
SYNTHIA labels are written by a minimal PNG encoder of our own (not cv2), so a test can
tell whether the loader really reads the PNG's *first* channel.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

import numpy as np
from PIL import Image

from simtune import config
from simtune.errors import ConfigError, NonFiniteLoss
from simtune.labels import CITYSCAPES_LABEL_IDS, PALETTE, SYNTHIA_LABEL_IDS
from simtune.results.sweepdir import SweepDir
from simtune.rundir import RunDir, write_config
from simtune.schema import Config
from simtune.train.loop import Callback

DEFAULT_SIZE = (16, 8)  # (W, H): small, but big enough for 4x4 label blocks
DEFAULT_CITIES: tuple[tuple[str, int], ...] = (("frankfurt", 2), ("lindau", 1), ("munster", 1))


def random_image(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 random RGB image of ``size`` = (W, H)."""
    width, height = size
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def blocky_labels(
    rng: np.random.Generator, size: tuple[int, int], ids: Sequence[int], block: int = 4
) -> np.ndarray:
    """(H, W) int64 map of ``block`` x ``block`` squares, each one id drawn from ``ids``.

    Blocks keep a nearest-neighbour resize by an integer factor exact, which tests use.
    """
    width, height = size
    rows, cols = -(-height // block), -(-width // block)
    coarse = rng.choice(np.asarray(ids, dtype=np.int64), size=(rows, cols))
    return np.kron(coarse, np.ones((block, block), dtype=np.int64))[:height, :width]


def write_png(path: Path, array: np.ndarray, *, palette: bool = False) -> Path:
    """Write a uint8 (H, W) or (H, W, 3) array with PIL; ``palette`` makes a "P" PNG
    (like GTA5's labels: the palette indices are the ids)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(np.asarray(array, dtype=np.uint8))
    if palette:
        flat = [channel for colour in PALETTE for channel in colour]
        img.putpalette(flat + [0] * (768 - len(flat)))  # putpalette turns "L" into "P"
    img.save(path)
    return path


def write_png16_rgb(path: Path, rgb: np.ndarray) -> Path:
    """Write a 16-bit RGB PNG whose channels are ``rgb[..., 0]``, ``[..., 1]``, ``[..., 2]``
    in file order, without going through cv2's BGR convention.

    Args:
        rgb: (H, W, 3) integer array, values in 0..65535.
    """
    height, width, _ = rgb.shape
    rows = np.asarray(rgb, dtype=">u2").reshape(height, width * 3)  # PNG is big-endian
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)  # filter type 0 per row
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)  # depth 16, truecolour
    png = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
           + _png_chunk(b"IDAT", zlib.compress(raw)) + _png_chunk(b"IEND", b""))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    return path


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(tag + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)


def make_gta5_tree(
    root: Path, n: int = 3, size: tuple[int, int] = DEFAULT_SIZE, *, seed: int = 0,
    images_dir: str = "images",
) -> list[str]:
    """``root/<images_dir>/NNNNN.png`` and ``root/labels/NNNNN.png`` (palette, label ids)."""
    rng = np.random.default_rng(seed)
    names = [f"{i + 1:05d}.png" for i in range(n)]
    for name in names:
        write_png(root / images_dir / name, random_image(rng, size))
        labels = blocky_labels(rng, size, sorted(CITYSCAPES_LABEL_IDS))
        write_png(root / "labels" / name, labels, palette=True)
    return names


def make_synthia_tree(
    root: Path, n: int = 3, size: tuple[int, int] = DEFAULT_SIZE, *, seed: int = 0
) -> list[str]:
    """``root/RGB/NNNNNNN.png`` and 16-bit ``root/GT/LABELS/NNNNNNN.png``: class id in the
    first channel, an instance-like id in the second, noise in the third."""
    rng = np.random.default_rng(seed)
    names = [f"{i:07d}.png" for i in range(n)]
    for name in names:
        write_png(root / "RGB" / name, random_image(rng, size))
        classes = blocky_labels(rng, size, sorted(SYNTHIA_LABEL_IDS))
        instances = rng.integers(100, 60000, size=classes.shape)
        noise = rng.integers(23, 60000, size=classes.shape)
        write_png16_rgb(root / "GT" / "LABELS" / name, np.stack([classes, instances, noise], -1))
    return names


def cityscapes_stem(city: str, index: int) -> str:
    """A Cityscapes-style stem, ``<city>_<sequence>_<frame>``, e.g. ``lindau_000000_000019``."""
    return f"{city}_{index:06d}_{19 + index:06d}"


def make_cityscapes_tree(
    root: Path,
    split: str = "val",
    cities: Sequence[tuple[str, int]] = DEFAULT_CITIES,
    size: tuple[int, int] = DEFAULT_SIZE,
    *,
    seed: int = 0,
    label_ids: Sequence[int] | None = None,
) -> list[str]:
    """``root/leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png`` and the matching
    ``root/gtFine/<split>/<city>/<stem>_gtFine_labelIds.png``.

    Args:
        cities: (city, number of images) pairs.
        label_ids: ids the labels are drawn from; None = all of 0..33, ignored ones too.
    Returns:
        names ``<city>/<stem>_leftImg8bit.png``, as in the authors' list files.
    """
    rng = np.random.default_rng(seed)
    ids = sorted(CITYSCAPES_LABEL_IDS) if label_ids is None else list(label_ids)
    names = []
    for city, count in cities:
        for index in range(count):
            stem = cityscapes_stem(city, index)
            write_png(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png",
                      random_image(rng, size))
            write_png(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png",
                      blocky_labels(rng, size, ids))
            names.append(f"{city}/{stem}_leftImg8bit.png")
    return names


def write_list_file(path: Path, names: Sequence[str]) -> Path:
    """A list file: one sample name per line, as in the authors' repositories."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{name}\n" for name in names))
    return path


# --------------------------------------------------------------------------- tiny pipeline runs

REPO_ROOT = Path(__file__).resolve().parents[1]
SYNTHETIC_EXPERIMENT = REPO_ROOT / "experiments" / "synthetic.yaml"

# A few iterations of both stages on a tiny benchmark: the "instant" runs of the test suite.
TINY_OVERRIDES: tuple[str, ...] = (
    "stage1.iters=4", "stage1.schedule_iters=4", "stage2.iters=2", "stage2.schedule_iters=2",
    "eval.every=2", "eval.max_images=2", "runtime.checkpoint_every=2", "runtime.threads=1",
    "init.source_pretrain.iters=0",
)


def tiny_benchmark(out: Path, seed: int = 0) -> tuple[Path, Path]:
    """A tiny built-in benchmark (8 source, 6 target train, 2 val images per city).

    Returns:
        (source root, target root).
    """
    from simtune.data.synth import generate_benchmark

    paths = generate_benchmark(out, seed=seed, num_source=8, num_target_train=6, num_target_val_per_city=2,
                               workers=1)
    return paths.source_root, paths.target_root


def tiny_overrides(source_root: Path, target_root: Path, *extra: str) -> list[str]:
    """``--set`` overrides pointing the synthetic experiment at a tiny benchmark."""
    return [f"data.source.root={source_root}", f"data.target.root={target_root}", *TINY_OVERRIDES, *extra]


def tiny_cfg(tiny_bench: tuple[Path, Path], *extra: str) -> Config:
    """The synthetic experiment on the tiny benchmark ``tiny_bench`` = (source root, target root),
    then the ``extra`` overrides (``key=value``)."""
    return config.load(SYNTHETIC_EXPERIMENT, tiny_overrides(*tiny_bench, *extra))


def write_tiny_space(folder: Path, tiny_bench: tuple[Path, Path], params: dict[str, Any], **settings: Any) -> Path:
    """A search space over the synthetic experiment, shrunk to the tiny benchmark through its ``set:``.

    Args:
        params: the space's ``params`` mapping; ``settings``: other top-level keys.
    Returns:
        ``folder/space.yaml``.
    """
    tiny = dict(text.split("=", 1) for text in tiny_overrides(*tiny_bench))
    return write_space_file(folder, {"base": str(SYNTHETIC_EXPERIMENT),
                                     "set": {k: yaml.safe_load(v) for k, v in tiny.items()},
                                     "max_concurrent": 2, **settings, "params": params})


def write_space_file(folder: Path, body: Mapping[str, Any]) -> Path:
    """``folder/space.yaml`` holding ``body`` (keys in their order); returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "space.yaml"
    path.write_text(yaml.safe_dump(dict(body), sort_keys=False))
    return path


def write_trial(sweep: Path, trial_id: str, vals: list[float], *, lambda_ci: float = 0.01, bank_size: int = 50,
                finished: bool = True, seed: int = 0) -> Path:
    """A hand-written trial of the sweep folder ``sweep``: a run dir whose stage-1 history's ``val/miou``
    goes through ``vals`` (``report/miou`` = val + 1, ``val/iou/road`` = 2 val), finished or not."""
    run_dir = SweepDir(sweep).run(trial_id).root
    run = RunDir(run_dir)
    run.stage("stage1").mkdir(parents=True)
    write_config(config.build({"seed": seed, "stage1": {"lambda_ci": lambda_ci, "bank_size": bank_size}}),
                 run.config_file)
    history = [{"step": 10 * (i + 1), "val/miou": v, "report/miou": v + 1, "val/iou/road": 2 * v,
                "report/iou/road": 2 * v + 1, "iteration": 10.0 * (i + 1)} for i, v in enumerate(vals)]
    run.history_file("stage1").write_text(json.dumps(history))
    if finished:
        run.results.write_text(json.dumps({"stages": {"stage1": history[-1]}}))
    return run_dir


# ----------------------------------------------------------------------------- injected faults (sweep tests)

FAULT_ENV = "SIMTUNE_FAULT"
FAULT_KINDS = ("crash_once_at", "nan_at", "config_error_at", "meet", "pause_once_at")
MEET_TIMEOUT_S = 300.0
PAUSE_S = 25.0


class FaultInjector(Callback):
    """Raises an injected fault at the first evaluation at or after an iteration.

    ``SIMTUNE_FAULT`` holds ``;``-separated ``KIND=ITERATION[@KEY=VALUE]`` items; ``KEY=VALUE``
    limits an item to trials whose swept ``KEY`` has that value. ``crash_once_at=2`` raises
    ``RuntimeError`` once per run (after the evaluation's checkpoint was reported) and deletes
    the stage's on-disk checkpoint, so a retry must come back through Tune's checkpoint;
    ``nan_at=2`` raises ``NonFiniteLoss`` and ``config_error_at=2`` a ``ConfigError``. ``meet=8``
    is a barrier, not a fault: at its first evaluation a trial waits (up to ``MEET_TIMEOUT_S``)
    until 8 trials of the sweep have reached theirs, so a test sees which trials ran at once.
    ``pause_once_at=2`` sleeps ``PAUSE_S`` once per run (after the evaluation's checkpoint was
    reported, a ``.fault-paused`` marker in the run dir), so a test can kill a node mid-trial. Example:
    ``SIMTUNE_FAULT="crash_once_at=2@pseudo_label.quantile=0.3;nan_at=2@pseudo_label.quantile=0.6"``.
    """

    def __init__(self, run_dir: Path, at: dict[str, int]) -> None:
        self.run_dir = run_dir
        self.at = at  # fault kind -> iteration

    def on_eval(self, stage: str, step: int, metrics: dict[str, float], checkpoint: Path | None) -> None:
        if "meet" in self.at:
            self._meet(self.at.pop("meet"))
        if step >= self.at.get("nan_at", step + 1):
            raise NonFiniteLoss(f"iteration {step}: loss/seg_src became nan (injected by {FAULT_ENV})",
                                stage=stage, iteration=step)
        if step >= self.at.get("config_error_at", step + 1):
            raise ConfigError(f"iteration {step}: a config error injected by {FAULT_ENV}")
        paused = self.run_dir / ".fault-paused"
        if step >= self.at.get("pause_once_at", step + 1) and not paused.exists():
            paused.write_text(str(step))
            time.sleep(PAUSE_S)
        marker = self.run_dir / ".fault-crash-once"
        if step >= self.at.get("crash_once_at", step + 1) and not marker.exists():
            marker.write_text(str(step))
            RunDir(self.run_dir).checkpoint(stage).unlink(missing_ok=True)
            raise RuntimeError(f"iteration {step}: crash injected by {FAULT_ENV}")


    def _meet(self, count: int) -> None:
        """Arrive at the sweep's meeting folder and wait for ``count`` arrivals (or the timeout)."""
        folder = self.run_dir.parent.parent / ".meet"  # <sweep>/runs/<trial> -> <sweep>/.meet
        folder.mkdir(exist_ok=True)
        (folder / self.run_dir.name).touch()
        deadline = time.monotonic() + MEET_TIMEOUT_S
        while len(list(folder.iterdir())) < count and time.monotonic() < deadline:
            time.sleep(0.2)


def parse_faults(text: str, swept: Mapping[str, Any]) -> dict[str, int]:
    """Fault kind -> iteration for a trial with swept values ``swept`` (see ``FaultInjector``)."""
    found: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(";"))):
        fault, _, scope = item.partition("@")
        kind, _, at = fault.partition("=")
        if kind not in FAULT_KINDS or not at.isdigit():
            raise ValueError(f"{FAULT_ENV}: cannot parse {item!r}; expected KIND=ITERATION[@KEY=VALUE]")
        key, _, value = scope.partition("=")
        if not scope or (key in swept and swept[key] == yaml.safe_load(value)):
            found[kind] = int(at)
    return found


def fault_hook() -> Callable[[Path, Mapping[str, Any]], list[Callback]]:
    """The fault hook: ``SIMTUNE_TRIAL_CALLBACKS=simtune.testing:fault_hook`` plugs it into every trial
    a sweep or retrain runs (``simtune.sweep.trainable.trial_callbacks``). Called in the driver, it
    reads ``SIMTUNE_FAULT`` there, so the faults reach trials on every node without their environment."""
    return functools.partial(fault_callbacks, os.environ.get(FAULT_ENV, ""))


def fault_callbacks(faults: str, run_dir: Path, swept: Mapping[str, Any]) -> list[Callback]:
    """The fault ``faults`` (``SIMTUNE_FAULT``'s syntax) asks for this trial, as a training callback;
    [] when it asks none."""
    at = parse_faults(faults, swept)
    return [FaultInjector(run_dir, at)] if at else []


# ----------------------------------------------------------------------------- processes a test starts


def simtune_command(*args: str) -> list[str]:
    """The command line of the ``simtune`` CLI with ``args``, run by this interpreter."""
    return [sys.executable, "-m", "simtune.cli", *args]


def simtune(*args: str, cwd: Path, env: Mapping[str, str] | None = None,
            timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run the real ``simtune`` CLI in a process of its own in ``cwd``, output captured; ``env`` is its
    whole environment (None: this process's)."""
    return subprocess.run(simtune_command(*args), cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def kill_group(proc: subprocess.Popen[Any], sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to the process group ``proc`` leads (started with ``start_new_session=True``);
    a group that is already gone is left alone."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def stop_process_group(proc: subprocess.Popen[Any], sig: int = signal.SIGINT, timeout: float = 30) -> None:
    """Stop the process group ``proc`` leads with ``sig`` (Ctrl-C by default: ``mlflow ui`` ignores
    SIGTERM while serving); kill the group when that has not ended ``proc`` within ``timeout`` s."""
    kill_group(proc, sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        proc.wait(timeout=10)
