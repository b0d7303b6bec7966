"""Step timing: per-step clocks that do not add host syncs, interleaved repeats, and summaries.

On CUDA a step's time is the gap between CUDA events recorded before and after it, so a
variant that never waits on the device keeps its CPU/GPU overlap while being timed (one
sync per block of steps, to read the events). On the CPU it is wall time, or, with the
``cpu`` clock, the CPU time of the process: on a machine shared with other jobs that counts
the step's work but not the time it spent descheduled (with one torch thread it equals the
wall time of an idle machine; with more it adds the threads' spin-waits).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

Step = Callable[[int], object]  # runs the i-th step of a variant
CLOCKS = ("wall", "cpu")


def run_block(step: Step, steps: int, device: torch.device, start: int = 0, clock: str = "wall") -> list[float]:
    """Run ``steps`` steps back to back; return each step's time in milliseconds."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        events = [torch.cuda.Event(enable_timing=True) for _ in range(steps + 1)]
        events[0].record()
        for i in range(steps):
            step(start + i)
            events[i + 1].record()
        torch.cuda.synchronize(device)
        return [events[i].elapsed_time(events[i + 1]) for i in range(steps)]
    now = time.process_time if clock == "cpu" else time.perf_counter
    times = []
    for i in range(steps):
        t0 = now()
        step(start + i)
        times.append((now() - t0) * 1e3)
    return times


@dataclass
class VariantTimes:
    """Step times of one variant: ``blocks[r]`` holds the steps of repeat ``r`` (ms)."""

    name: str
    blocks: list[list[float]] = field(default_factory=list)

    def all_steps(self) -> np.ndarray:
        return np.concatenate([np.asarray(b, dtype=np.float64) for b in self.blocks])

    def repeat_medians(self) -> list[float]:
        return [float(np.median(b)) for b in self.blocks]

    def summary(self) -> dict[str, object]:
        """Median and p10/p90 over every timed step, and each repeat's median (ms)."""
        steps = self.all_steps()
        return {"median_ms": float(np.median(steps)), "p10_ms": float(np.percentile(steps, 10)),
                "p90_ms": float(np.percentile(steps, 90)), "mean_ms": float(steps.mean()),
                "repeat_medians_ms": self.repeat_medians(), "steps": int(steps.shape[0])}


def interleave(variants: Mapping[str, Step], *, steps: int, repeats: int, warmup: int,
               device: torch.device, clock: str = "wall",
               on_block: Callable[[str, int, list[float]], None] | None = None) -> dict[str, VariantTimes]:
    """Warm every variant up, then time ``repeats`` rounds of ``steps`` steps of each, round-robin.

    The order of the variants rotates by one each round, so no variant always runs first
    (after a pause) or right after the heaviest one.
    """
    names = list(variants)
    for name in names:
        run_block(variants[name], warmup, device, clock=clock)
    out = {name: VariantTimes(name) for name in names}
    for r in range(repeats):
        for k in range(len(names)):
            name = names[(k + r) % len(names)]
            block = run_block(variants[name], steps, device, start=warmup + r * steps, clock=clock)
            out[name].blocks.append(block)
            if on_block is not None:
                on_block(name, r, block)
    return out


def ratio(numerator: VariantTimes, denominator: VariantTimes) -> dict[str, object]:
    """``numerator / denominator`` of the per-repeat medians: the median ratio, its range, each one.

    Ratios are taken within a repeat (the two blocks ran seconds apart), so slow drifts of
    the machine cancel out.
    """
    per_repeat = [a / b for a, b in zip(numerator.repeat_medians(), denominator.repeat_medians())]
    return {"median": float(np.median(per_repeat)), "p10": float(np.percentile(per_repeat, 10)),
            "p90": float(np.percentile(per_repeat, 90)), "min": float(min(per_repeat)),
            "max": float(max(per_repeat)), "per_repeat": per_repeat,
            "of_medians": float(np.median(numerator.all_steps()) / np.median(denominator.all_steps()))}
