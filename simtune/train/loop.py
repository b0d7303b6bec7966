"""The one training loop both stages share, and the hooks that hang off it.

The loop only draws batches, calls the step function and fires hooks. Learning-rate
schedule, loss monitoring, evaluation, checkpoints and progress output are hooks; sweeps
and MLflow plug in as ``Callback`` sinks that the hooks call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from simtune.errors import NonFiniteLoss



class Callback:
    """Receives what a run produces. Sweeps and MLflow implement this; every method is optional.

    ``step`` is always the global iteration, monotonic across both stages.
    """

    def on_log(self, stage: str, step: int, values: dict[str, float]) -> None:
        """Averaged training losses and the learning rate, every ``log_every`` iterations."""

    def on_eval(self, stage: str, step: int, metrics: dict[str, float], checkpoint: Path | None) -> None:
        """Evaluation metrics (``val/miou``, ``report/miou``, ...) and the checkpoint written with them."""

    def on_pseudo_labels(self, step: int, report: dict[str, Any]) -> None:
        """Per-class thresholds and kept fractions after pseudo-labelling."""

    def on_stage_end(self, stage: str, step: int, metrics: dict[str, float]) -> None:
        """A stage finished; ``metrics`` are its last evaluation."""


@dataclass
class LoopState:
    """Where a stage stands. ``offset`` is the global iteration of the stage's first step."""

    stage: str
    iters: int
    offset: int
    iteration: int = 0  # iterations completed in this stage

    @property
    def global_iteration(self) -> int:
        return self.offset + self.iteration

    @property
    def done(self) -> bool:
        return self.iteration >= self.iters


class Hook:
    """A piece of loop behaviour. ``after_step`` sees ``state.iteration`` already advanced."""

    def before_step(self, state: LoopState) -> None:
        pass

    def after_step(self, state: LoopState, losses: dict[str, Tensor]) -> None:
        pass

    def after_stage(self, state: LoopState) -> None:
        pass


def run_loop(state: LoopState, batches: Iterator[Any], step: Callable[[Any], dict[str, Tensor]],
             hooks: Sequence[Hook]) -> None:
    """Run ``step`` on ``batches`` from ``state.iteration`` to ``state.iters``, firing hooks."""
    while not state.done:
        for hook in hooks:
            hook.before_step(state)
        losses = step(next(batches))
        state.iteration += 1
        for hook in hooks:
            hook.after_step(state, losses)
    for hook in hooks:
        hook.after_stage(state)


def poly_factor(iteration: int, schedule_iters: int, power: float) -> float:
    """``(1 - it / schedule_iters) ** power``, floored at 0 past the schedule's end."""
    return max(0.0, 1.0 - iteration / schedule_iters) ** power


@dataclass
class PolyLR(Hook):
    """Poly decay of every param group's ``initial_lr`` (SGD for G and Adam for D alike)."""

    optimizers: Sequence[torch.optim.Optimizer]
    schedule_iters: int
    power: float

    def before_step(self, state: LoopState) -> None:
        factor = poly_factor(state.iteration, self.schedule_iters, self.power)
        for opt in self.optimizers:
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] * factor


@dataclass
class LossMonitor(Hook):
    """Averages losses on the device and syncs once per ``every`` steps to log and check them.

    Raises:
        NonFiniteLoss: a logged average is NaN or inf.
    """

    every: int
    callbacks: Sequence[Callback]
    lr_of: Callable[[], float]
    sums: dict[str, Tensor] = field(default_factory=dict)
    count: int = 0
    last: dict[str, float] = field(default_factory=dict)

    def after_step(self, state: LoopState, losses: dict[str, Tensor]) -> None:
        for name, value in losses.items():
            self.sums[name] = self.sums[name] + value if name in self.sums else value.clone()
        self.count += 1
        if state.iteration % self.every == 0 or state.done:
            self.flush(state)

    def flush(self, state: LoopState) -> None:
        if not self.count:
            return
        values = {name: float(total) / self.count for name, total in self.sums.items()}  # the one sync
        self.sums, self.count = {}, 0
        bad = [name for name, value in values.items() if not math.isfinite(value)]
        if bad:
            raise NonFiniteLoss(f"{state.stage} iteration {state.iteration}: {', '.join(bad)} became "
                                f"{values[bad[0]]} (non-finite loss)", stage=state.stage,
                                iteration=state.iteration)
        values["lr"] = self.lr_of()
        self.last = values
        for cb in self.callbacks:
            cb.on_log(state.stage, state.global_iteration, values)


@dataclass
class Periodic(Hook):
    """Calls ``action(state)`` every ``every`` iterations and (``at_end``) when the stage ends."""

    every: int
    action: Callable[[LoopState], None]
    at_end: bool = True

    def after_step(self, state: LoopState, losses: dict[str, Tensor]) -> None:
        if self.every > 0 and state.iteration % self.every == 0 and not state.done:
            self.action(state)

    def after_stage(self, state: LoopState) -> None:
        if self.at_end:
            self.action(state)


class Progress(Hook):
    """A tqdm bar over the stage's iterations, showing the latest logged losses."""

    def __init__(self, monitor: LossMonitor, enabled: bool) -> None:
        self.monitor = monitor
        self.enabled = enabled
        self.bar: Any = None

    def before_step(self, state: LoopState) -> None:
        if self.bar is None and self.enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=state.iters, initial=state.iteration, desc=state.stage, dynamic_ncols=True,
                            leave=False)

    def after_step(self, state: LoopState, losses: dict[str, Tensor]) -> None:
        if self.bar is not None:
            self.bar.update(1)
            if self.monitor.last:
                shown = {k.split("/")[-1]: f"{v:.3g}" for k, v in self.monitor.last.items() if k != "lr"}
                self.bar.set_postfix(shown, refresh=False)

    def after_stage(self, state: LoopState) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
