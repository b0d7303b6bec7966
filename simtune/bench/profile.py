"""What bounds a step: a torch.profiler summary, and (on CUDA) the host syncs it makes."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

TOP_OPS = 15


def _self_time_us(event: Any, on_device: bool) -> float:
    if not on_device:
        return float(event.self_cpu_time_total)
    # torch >= 2.4 names it "device"; older releases "cuda".
    return float(getattr(event, "self_device_time_total", getattr(event, "self_cuda_time_total", 0.0)))


def profile_steps(step: Callable[[int], object], steps: int, device: torch.device) -> dict[str, Any]:
    """Profile ``steps`` steps; the top ops by self time on the device (CPU time on the CPU).

    Returns:
        ``{"steps", "sorted_by", "busy_ms_per_step", "ops": [{name, calls_per_step,
        self_ms_per_step, share}], "table": profiler's text table}``. ``busy_ms_per_step`` sums
        the ops' self times: on CUDA, well below the step time means the GPU waits for the host.
    """
    on_device = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_device else [])
    step(0)  # not profiled: first-call costs
    with profile(activities=activities) as prof:
        for i in range(steps):
            step(i + 1)
        if on_device:
            torch.cuda.synchronize(device)
    events = [e for e in prof.key_averages() if _self_time_us(e, on_device) > 0]
    events.sort(key=lambda e: _self_time_us(e, on_device), reverse=True)
    busy = sum(_self_time_us(e, on_device) for e in events)
    sort_key = "self_device_time_total" if on_device else "self_cpu_time_total"
    ops = [{"name": e.key, "calls_per_step": e.count / steps,
            "self_ms_per_step": _self_time_us(e, on_device) / 1e3 / steps,
            "share": _self_time_us(e, on_device) / busy if busy else 0.0} for e in events[:TOP_OPS]]
    return {"steps": steps, "sorted_by": "self device time" if on_device else "self CPU time",
            "busy_ms_per_step": busy / 1e3 / steps, "ops": ops,
            "table": prof.key_averages().table(sort_by=sort_key, row_limit=TOP_OPS)}


def count_syncs(step: Callable[[int], object], device: torch.device) -> int | None:
    """Host/device synchronisations during one step, by torch's sync debug mode (None off CUDA)."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            step(0)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum(1 for w in caught if "synchroniz" in str(w.message).lower())
