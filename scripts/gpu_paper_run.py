"""The paper-size pipeline on one device: ResNet-101 at 1280x720 (source) + 1024x512 (target).

    python3 scripts/gpu_paper_run.py --out OUT                              # on a GPU: the full check
    python3 scripts/gpu_paper_run.py --out OUT --device cpu --size tiny \\
        --iters 30 --stage2-iters 10 --images 4 --precision-iters 10        # CPU dry run (about a minute)

What it does (nothing is downloaded; Ray and MLflow are not needed), step by step:

1. ``benchmark``: draws a benchmark in the real GTA5 / Cityscapes layouts at the paper's sizes
   (source images 1280x720, target images 2048x1024 like Cityscapes; the loaders resize the
   target to 1024x512) with ``--images`` source and target train images and 2 val images per city.
2. ``init``: makes an init file, since no ImageNet weights exist here: a randomly initialised
   ResNet-101 whose frozen BatchNorm statistics are measured, layer by layer, on 4 source
   images (on ``--device``). (A plain random init with the paper's frozen BN and mean-only
   preprocessing grows activations to ~1e7 by layer 3 and gives NaN losses within 10 iterations.)
3. ``paper_run``: runs ``experiments/gta5_cityscapes.yaml`` from it at learning rate ``LR``
   (below): stage 1 (AA + SIM) for ``--iters`` iterations, the pseudo-label pass over the
   ``--images`` target images, then ``--stage2-iters`` of stage 2.
4. ``precision``: ``--precision-iters`` stage-1 iterations twice from the same init and seed,
   bf16 autocast and fp32; compares the losses (averaged over each 10 iterations, as the loop
   logs them) and the ms per iteration.
5. ``deterministic``: the bf16 run of step 4 again with ``runtime.deterministic=true``
   (``--deterministic-iters``), then once more: ms per iteration against the bf16 run
   (``runtime.deterministic=false``) and whether the two deterministic runs repeat exactly.

Every run uses ``data.num_workers`` = ``--workers`` (``auto`` = (CPUs - 1) // 2 per loader,
resolved here and passed as a number) and ``runtime.cudnn_benchmark=true``; both are recorded.

``OUT/paper_run.json`` is rewritten (atomically) after every step and every 10 iterations of
the paper run, so a run stopped by a time limit leaves what it measured so far; ``steps_done``,
``running`` and ``interrupted`` say how far it got. With ``--budget-s``, steps 4 and 5 are
skipped (and say so) when the time they are expected to take is not left. Big files (the
benchmark, the init, the run folders) go under ``--work`` and are deleted at the end, also
after an error or SIGTERM, unless ``--keep``.

Measured per run: ms per iteration of each stage (median over the 10-iteration log intervals,
the first interval and any interval holding an evaluation left out), peak GPU memory
(``torch.cuda.max_memory_allocated`` / ``..._reserved``), peak host memory (``ru_maxrss`` of
this process and of its finished loader workers), whether every logged loss was finite, wall
times, the loader workers the run recorded in its ``run.json``, and the cuDNN / determinism
state torch was left in.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import shutil
import signal
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from simtune import config
from simtune.data.loaders import worker_count
from simtune.data.synth import generate_benchmark
from simtune.models.deeplab import FrozenBatchNorm2d
from simtune.rundir import RunDir
from simtune.testing import REPO_ROOT
from simtune.train.builders import build_datasets, build_nets
from simtune.train.loop import Callback
from simtune.train.pipeline import run_pipeline

EXPERIMENT = REPO_ROOT / "experiments" / "gta5_cityscapes.yaml"
# The paper's 2.5e-4 is for an ImageNet-initialised backbone; from the calibrated random init
# below it gives NaN within 10 source-only iterations (measured on CPU at 1/8 size), 1e-6 does not.
# The learning rate changes neither the time nor the memory of a step.
LR = 1e-5
GIB = 2 ** 30
STARTED = time.perf_counter()

# (image files drawn: source (W, H), target (W, H)), loader sizes as overrides.
SIZES: dict[str, tuple[tuple[tuple[int, int], tuple[int, int]], list[str]]] = {
    "paper": (((1280, 720), (2048, 1024)), []),
    "small": (((160, 90), (256, 128)), ["data.source.size=[160, 96]", "data.target.size=[128, 64]"]),
    "tiny": (((80, 45), (128, 64)), ["data.source.size=[80, 48]", "data.target.size=[64, 32]"]),
}


class LossLog(Callback):
    """Every logged loss with the time it arrived at, the steps that had an evaluation, and
    the times of stage ends and of the pseudo-label report."""

    def __init__(self, on_update: Callable[[LossLog], None] | None = None) -> None:
        self.start = time.perf_counter()
        self.logs: list[tuple[float, str, int, dict[str, float]]] = []
        self.eval_steps: set[int] = set()
        self.events: list[tuple[float, str, str, int]] = []  # (time, event, stage, step)
        self.on_update = on_update

    def on_log(self, stage: str, step: int, values: dict[str, float]) -> None:
        self.logs.append((time.perf_counter(), stage, step, dict(values)))
        if self.on_update is not None:
            self.on_update(self)

    def on_eval(self, stage: str, step: int, metrics: dict[str, float], checkpoint: Path | None) -> None:
        self.eval_steps.add(step)
        self.events.append((time.perf_counter(), "eval", stage, step))

    def on_pseudo_labels(self, step: int, report: dict[str, Any]) -> None:
        self.events.append((time.perf_counter(), "pseudo_labels", "", step))

    def on_stage_end(self, stage: str, step: int, metrics: dict[str, float]) -> None:
        self.events.append((time.perf_counter(), "stage_end", stage, step))

    def ms_per_iteration(self, stage: str) -> float | None:
        """Median ms per iteration over the stage's log intervals after its first.

        The loop logs before it evaluates, so an evaluation at step ``e`` lands in the interval
        that starts at ``e``: such intervals are left out.
        """
        logs = [(t, step) for t, s, step, _ in self.logs if s == stage]
        rates = [1000 * (t1 - t0) / (s1 - s0) for (t0, s0), (t1, s1) in zip(logs[1:], logs[2:])
                 if s1 > s0 and not any(s0 <= e < s1 for e in self.eval_steps)]
        return statistics.median(rates) if rates else None

    def all_finite(self) -> bool:
        return all(math.isfinite(v) for _, _, _, values in self.logs for v in values.values())

    def losses(self, stage: str | None = None) -> list[dict[str, float]]:
        return [values for _, s, _, values in self.logs if stage is None or s == stage]

    def summary(self) -> dict[str, Any]:
        stages = sorted({s for _, s, _, _ in self.logs})
        return {
            "ms_per_iteration": {stage: self.ms_per_iteration(stage) for stage in stages},
            "iterations_logged": {stage: max(step for _, s, step, _ in self.logs if s == stage) for stage in stages},
            "losses_finite": self.all_finite(),
            "log": [{"t_s": round(t - self.start, 3), "stage": s, "step": step, **values}
                    for t, s, step, values in self.logs],
            "events": [{"t_s": round(t - self.start, 3), "event": e, "stage": s, "step": step}
                       for t, e, s, step in self.events],
        }


class Report:
    """``paper_run.json``, rewritten atomically whenever something new is known."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data
        self.data.update(steps_done=[], running=None, interrupted=None, status=None, errors={}, skipped={})
        self.save()

    def save(self) -> None:
        self.data["elapsed_s"] = time.perf_counter() - STARTED
        self.data["peak_host_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
        self.data["peak_host_rss_children_gib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2 ** 20
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str))
        os.replace(tmp, self.path)

    def step(self, name: str, action: Callable[[], Any]) -> Any:
        """Run one step, keep its result (or its error) under ``name``, and save."""
        self.data["running"] = name
        self.save()
        start = time.perf_counter()
        try:
            result = action()
        except Exception as exc:  # recorded, and the script exits 1 at the end
            if self.data.get("interrupted"):  # raised while stopping: not this step's fault
                raise SystemExit(143) from exc
            self.data["errors"][name] = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            self.data.setdefault("tracebacks", {})[name] = traceback.format_exc()
            print(f"{name} failed:\n{traceback.format_exc()}", file=sys.stderr, flush=True)
            result = None
        else:
            self.data["steps_done"].append(name)
        self.data.setdefault("step_wall_s", {})[name] = time.perf_counter() - start
        self.data["running"] = None
        self.save()
        return result

    def skip(self, name: str, reason: str) -> None:
        self.data["skipped"][name] = reason
        print(f"{name} skipped: {reason}", file=sys.stderr, flush=True)
        self.save()


def resolve_workers(setting: str) -> int:
    """``data.num_workers`` as a number: ``auto`` as a run resolves it (``data.loaders.worker_count``)."""
    return worker_count(setting if setting == "auto" else int(setting))


def overrides(bench: tuple[Path, Path], args: argparse.Namespace, *extra: str) -> list[str]:
    """The paper experiment on the drawn benchmark, at ``--size``, with the recorded runtime settings."""
    return [f"data.source.root={bench[0]}", f"data.target.root={bench[1]}", f"runtime.device={args.device}",
            f"data.num_workers={args.num_workers}", "runtime.cudnn_benchmark=true",
            "select.enabled=false", "eval.max_images=2", f"stage1.lr={LR}", f"stage2.lr={LR}",
            *SIZES[args.size][1], *extra]


def calibrated_init(bench: tuple[Path, Path], args: argparse.Namespace, path: Path, images: int = 4) -> Path:
    """A random ResNet-101 (torchvision keys) whose frozen BatchNorm statistics are measured on source images.

    Each frozen BN layer, in forward order, takes the per-channel mean and variance of its own
    input over ``images`` source images, so every layer sees normalised input.
    """
    cfg = config.load(EXPERIMENT, overrides(bench, args, "model.random_init=true", "model.init_weights="))
    device = torch.device(args.device)
    nets, _ = build_nets(cfg, device)
    backbone = nets.segmenter.backbone.eval().float()
    source = build_datasets(cfg).source
    batch = torch.stack([source[i]["image"] for i in range(min(images, len(source)))]).to(device)

    def measure(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        module.get_buffer("running_mean").copy_(inputs[0].mean(dim=(0, 2, 3)))
        module.get_buffer("running_var").copy_(inputs[0].var(dim=(0, 2, 3)))

    hooks = [m.register_forward_pre_hook(measure) for m in backbone.modules() if isinstance(m, FrozenBatchNorm2d)]
    with torch.no_grad():
        backbone(batch)
    for hook in hooks:
        hook.remove()
    torch.save({k: v.cpu() for k, v in backbone.state_dict().items()}, path)
    del nets, backbone, batch
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return path


def torch_state() -> dict[str, Any]:
    """The global settings the run left torch in (what the runtime.* keys turned on)."""
    return {"cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
            "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG")}


def timed_run(report: Report, key: str, cfg: config.Config, run_dir: Path) -> dict[str, Any]:
    """``run_pipeline`` with the loss log, memory peaks and settings kept under ``report.data[key]``."""
    on_cuda = torch.cuda.is_available() and cfg.runtime.device != "cpu"
    entry: dict[str, Any] = {"settings": {"mode": cfg.mode, "amp": cfg.runtime.amp,
                                          "num_workers": cfg.data.num_workers,
                                          "cudnn_benchmark": cfg.runtime.cudnn_benchmark,
                                          "deterministic": cfg.runtime.deterministic,
                                          "stage1_iters": cfg.stage1.iters, "stage2_iters": cfg.stage2.iters,
                                          "source_size": cfg.data.source.size, "target_size": cfg.data.target.size}}
    report.data[key] = entry

    def update(log: LossLog) -> None:
        entry.update(log.summary(), wall_s=time.perf_counter() - start)
        report.save()

    log = LossLog(on_update=update)
    if on_cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    try:
        result = run_pipeline(cfg, run_dir, callbacks=[log])
        entry["final"] = {k: v for k, v in result.final.items() if k.endswith("miou")}
    finally:
        update(log)
        entry["torch_state_after"] = torch_state()
        run_json = RunDir(run_dir).run_file
        if run_json.is_file():
            with contextlib.suppress(ValueError):
                entry["run_json"] = json.loads(run_json.read_text())
        if on_cuda:
            entry["peak_gpu_allocated_gib"] = torch.cuda.max_memory_allocated() / GIB
            entry["peak_gpu_reserved_gib"] = torch.cuda.max_memory_reserved() / GIB
        report.save()
    return entry


def paper_run(report: Report, work: Path, bench: tuple[Path, Path], init: Path, args: argparse.Namespace) -> None:
    """Stage 1, the pseudo-label pass and stage 2."""
    cfg = config.load(EXPERIMENT, overrides(
        bench, args, f"model.init_weights={init}", f"stage1.iters={args.iters}",
        f"stage2.iters={args.stage2_iters}", f"eval.every={args.iters}", f"runtime.checkpoint_every={args.iters}"))
    try:
        timed_run(report, "paper_run", cfg, work / "run")
    finally:
        shutil.rmtree(work / "run", ignore_errors=True)


def short_run(report: Report, key: str, work: Path, bench: tuple[Path, Path], init: Path,
              args: argparse.Namespace, iters: int, *extra: str) -> dict[str, Any]:
    """``iters`` AA+SIM stage-1 iterations from the init with seed 0 (stage 2 is not run)."""
    cfg = config.load(EXPERIMENT, overrides(
        bench, args, f"model.init_weights={init}", "mode=aa_sim", f"stage1.iters={iters}", f"eval.every={iters}",
        f"runtime.checkpoint_every={iters}", "seed=0", *extra))
    try:
        return timed_run(report, key, cfg, work / key)
    finally:
        shutil.rmtree(work / key, ignore_errors=True)


def loss_comparison(a: list[dict[str, float]], b: list[dict[str, float]]) -> dict[str, Any]:
    """Relative differences of the logged losses of two runs, log by log."""
    rel = [{k: abs(x[k] - y[k]) / max(abs(y[k]), 1e-12) for k in y if k.startswith("loss/") and k in x}
           for x, y in zip(a, b)]
    return {"relative_difference": rel,
            "max_relative_difference": max((v for r in rel for v in r.values()), default=None),
            "identical": bool(a) and len(a) == len(b) and all(
                x[k] == y[k] for x, y in zip(a, b) for k in y if k.startswith("loss/"))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="where paper_run.json goes")
    parser.add_argument("--work", type=Path, help="big files: benchmark, init, run folders (default OUT/work)")
    parser.add_argument("--keep", action="store_true", help="keep --work at the end")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", choices=sorted(SIZES), default="paper",
                        help="paper; small = 1/8 of it; tiny = 1/16 (CPU dry runs)")
    parser.add_argument("--small", action="store_const", const="small", dest="size", help="= --size small")
    parser.add_argument("--iters", type=int, default=100, help="stage-1 iterations of the paper run")
    parser.add_argument("--stage2-iters", type=int, default=30, help="stage-2 iterations (30 give one timed interval)")
    parser.add_argument("--images", type=int, default=64, help="source and target train images (pseudo-labelled)")
    parser.add_argument("--precision-iters", type=int, default=30, help="iterations of each bf16 / fp32 run (0 skips)")
    parser.add_argument("--deterministic-iters", type=int, default=30,
                        help="iterations of each runtime.deterministic=true run (0 skips)")
    parser.add_argument("--workers", default="auto",
                        help="data.num_workers: auto ((CPUs - 1) // 2 per loader) or an integer")
    parser.add_argument("--budget-s", type=float, default=0.0,
                        help="skip the precision / deterministic runs that would end after this many seconds "
                             "(0: no limit)")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device (use --device cpu --size tiny for a dry run)")
    args.num_workers = resolve_workers(args.workers)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = (args.work or out / "work").resolve()
    work.mkdir(parents=True, exist_ok=True)
    on_cuda = args.device == "cuda"
    report = Report(out / "paper_run.json", {
        "device": torch.cuda.get_device_name() if on_cuda else "cpu", "torch": torch.__version__,
        "torch_cuda": torch.version.cuda, "size": args.size,
        "image_files": dict(zip(("source", "target"), SIZES[args.size][0])),
        "num_workers": {"setting": args.workers, "used": args.num_workers, "cpus": os.cpu_count()},
        "cudnn_benchmark": True, "lr": LR, "budget_s": args.budget_s or None,
        "args": {k: str(v) for k, v in vars(args).items()},
    })

    def left() -> float:
        return args.budget_s - (time.perf_counter() - STARTED) if args.budget_s else math.inf

    def fits(name: str, needed: float) -> bool:
        if needed <= left():
            return True
        report.skip(name, f"needs about {needed:.0f} s, {max(left(), 0):.0f} s left of --budget-s {args.budget_s:.0f}")
        return False

    def stop(signum: int, frame: Any) -> None:
        # A time limit's SIGTERM reaches the loader workers too; their deaths must not turn
        # into a loader error that hides this one (torch raises those from its SIGCHLD handler).
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        report.data["interrupted"] = f"signal {signum} (a time limit?) during {report.data.get('running')}"
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    status = 1
    try:
        sizes = SIZES[args.size][0]
        paths = report.step("benchmark", lambda: generate_benchmark(
            work / "bench", seed=0, num_source=args.images, num_target_train=args.images,
            num_target_val_per_city=2, source_size=sizes[0], target_size=sizes[1],
            workers=max(1, min(16, os.cpu_count() or 1))))
        if paths is None:
            return 1
        bench = (paths.source_root, paths.target_root)
        init = report.step("init", lambda: calibrated_init(bench, args, work / "calibrated_r101.pth"))
        if init is None:
            return 1
        report.step("paper_run", lambda: paper_run(report, work, bench, init, args))
        ms = (report.data.get("paper_run") or {}).get("ms_per_iteration", {}).get("stage1") or 1000.0
        per_run = report.data.get("step_wall_s", {}).get("init", 10.0) + 10.0  # building, loaders, final eval

        if args.precision_iters > 0 and fits("precision", per_run * 2 + args.precision_iters * ms / 1000 * 3):
            def precision() -> dict[str, Any]:
                runs = {name: short_run(report, f"precision_{name}", work, bench, init, args, args.precision_iters,
                                        f"runtime.amp={amp}")
                        for name, amp in (("bf16", "true"), ("fp32", "false"))}
                bf16, fp32 = (runs[n] for n in ("bf16", "fp32"))
                result = {"bf16": bf16.get("log"), "fp32": fp32.get("log"),
                          "ms_per_iteration": {n: r.get("ms_per_iteration", {}).get("stage1") for n, r in runs.items()},
                          **loss_comparison(bf16.get("log", []), fp32.get("log", []))}
                report.data["precision"] = result
                return result
            report.step("precision", precision)

        base = report.data.get("precision_bf16") or {}
        if args.deterministic_iters > 0 and not base.get("log"):
            report.skip("deterministic", "no bf16 precision run to compare with")
        elif args.deterministic_iters > 0 and fits("deterministic", per_run + args.deterministic_iters * ms / 1000 * 2):
            def deterministic() -> dict[str, Any]:
                first = short_run(report, "deterministic_1", work, bench, init, args, args.deterministic_iters,
                                  "runtime.amp=true", "runtime.deterministic=true")
                result: dict[str, Any] = {"ms_per_iteration": {
                    "deterministic": first.get("ms_per_iteration", {}).get("stage1"),
                    "not_deterministic": base.get("ms_per_iteration", {}).get("stage1")}}
                report.data["deterministic"] = result
                if fits("deterministic_repeat", first.get("wall_s", 0.0) + 5):
                    second = short_run(report, "deterministic_2", work, bench, init, args, args.deterministic_iters,
                                       "runtime.amp=true", "runtime.deterministic=true")
                    result["repeat"] = loss_comparison(second.get("log", []), first.get("log", []))
                if args.deterministic_iters == args.precision_iters:
                    result["vs_not_deterministic"] = loss_comparison(first.get("log", []), base.get("log", []))
                return result
            report.step("deterministic", deterministic)
        status = 1 if report.data["errors"] else 0
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        report.data["status"] = status
        report.save()
    data = report.data
    print(json.dumps({k: data.get(k) for k in ("device", "num_workers", "steps_done", "errors", "skipped")},
                     indent=1, default=str))
    paper = data.get("paper_run") or {}
    print("paper run: ms/iteration", paper.get("ms_per_iteration"), "peak GPU GiB", paper.get("peak_gpu_allocated_gib"),
          "finite", paper.get("losses_finite"))
    print("bf16 vs fp32 max relative loss difference:", (data.get("precision") or {}).get("max_relative_difference"))
    print("deterministic:", data.get("deterministic"))
    return status


if __name__ == "__main__":
    sys.exit(main())
