"""The benchmark's machine description and its plain-text summary (``format_report``)."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from simtune.tables import text_table

PACKAGES = ("torch", "numpy", "scipy", "scikit-image")
MAX_REPEATS_SHOWN = 8  # per-repeat medians printed per variant (all are in the JSON)


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def environment(device: torch.device) -> dict[str, Any]:
    """Device, CPU, library versions and current load: what the timings depend on."""
    on_cuda = device.type == "cuda"
    cudnn = torch.backends.cudnn.version() if on_cuda else None
    return {
        "device": torch.cuda.get_device_name(device) if on_cuda else f"CPU: {cpu_model()}",
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": cudnn,
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in PACKAGES},
        "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def _ms(value: float) -> str:
    return f"{value:.2f}" if value < 1e4 else f"{value:.0f}"


def _variant_lines(result: dict[str, Any]) -> list[str]:
    rows = [["variant", "median ms", "p10 ms", "p90 ms", "repeat medians ms"]]
    for name, row in result["variants"].items():
        shown = row["repeat_medians_ms"][:MAX_REPEATS_SHOWN]
        medians = ", ".join(f"{m:.1f}" for m in shown) + (", ..." if len(shown) < len(row["repeat_medians_ms"]) else "")
        rows.append([name, _ms(row["median_ms"]), _ms(row["p10_ms"]), _ms(row["p90_ms"]), f"[{medians}]"])
    return text_table(rows, right=(1, 2, 3)).splitlines()


def _ratio_lines(result: dict[str, Any]) -> list[str]:
    lines = ["ratios of per-repeat medians: median [p10, p90] (min, max) over repeats"]
    for name, row in result["ratios"].items():
        lines.append(f"  {name:<50} {row['median']:6.3f}  [{row['p10']:.3f}, {row['p90']:.3f}]  "
                     f"({row['min']:.3f}, {row['max']:.3f})")
    return lines


def _pseudo_lines(pseudo: dict[str, Any]) -> list[str]:
    width, height = pseudo["size"]
    lines = [f"pseudo-label pass ({width}x{height}, predict_target, files to a temp dir):"]
    for p in pseudo["passes"]:
        peak = "n/a" if p["peak_growth_mb"] is None else f"{p['peak_growth_mb']:+.1f} MiB"
        lines.append(f"  {p['images']:5d} images: {p['images_per_s']:8.2f} images/s, peak host memory {peak} "
                     f"over the {p['rss_before_mb']:.0f} MiB before ({p['peak_method']})")
    if pseudo["peak_growth_change_mb"] is not None:
        lines.append(f"  peak growth, largest minus smallest set: {pseudo['peak_growth_change_mb']:+.1f} MiB")
    return lines


def _profile_lines(prof: dict[str, Any]) -> list[str]:
    lines = [f"profile of {prof['variant']} ({prof['steps']} steps, top ops by {prof['sorted_by']}; "
             f"busy {prof['busy_ms_per_step']:.2f} ms/step):"]
    for op in prof["ops"]:
        lines.append(f"  {op['self_ms_per_step']:8.3f} ms/step {100 * op['share']:5.1f}%  "
                     f"{op['calls_per_step']:6.1f} calls  {op['name']}")
    return lines


def _load(env: dict[str, Any]) -> str:
    start, end = env.get("loadavg_start"), env.get("loadavg_end")
    if not start:
        return "unknown"
    return f"{start[0]:.1f} at start, {end[0]:.1f} at end" if end else f"{start[0]:.1f} at start"


def _equivalence_line(eq: dict[str, Any] | None) -> str:
    if eq is None:
        return "equivalence: not checked (aa_sim_reference not selected)"
    return (f"equivalence, reference style vs ours ({eq['steps']} matcher steps, {eq['regions_per_step']:.0f} regions "
            f"each): max |loss diff| {eq['max_loss_diff']:.3g} (losses up to {eq['max_loss']:.3g}), "
            f"max |grad diff| {eq['max_grad_diff']:.3g}")


def _workload_lines(result: dict[str, Any]) -> list[str]:
    lines = []
    m = result.get("matcher_only")
    if m is not None:
        lines.append(f"matcher alone (push + L_stf + L_ins + backward; fixed inputs, ground-truth maps, "
                     f"{m['reference_regions_per_step']:.0f} regions/step): ours {m['ours']['median_ms']:.2f} ms, "
                     f"reference {m['reference']['median_ms']:.2f} ms, reference/ours {m['ratio']['median']:.2f} "
                     f"[{m['ratio']['p10']:.2f}, {m['ratio']['p90']:.2f}]")
    w = result["workload"]
    parts = [f"{k.replace('_per_step', '').replace('_', ' ')} {v:.1f}" for k, v in w.items() if v is not None]
    if parts:
        lines.append("per timed step: " + ", ".join(parts))
    return lines


def format_report(result: dict[str, Any]) -> str:
    """The human-readable summary of a ``run_bench`` result."""
    env, s = result["environment"], result["settings"]
    precision = "bf16 autocast + channels_last (reference, fp32 variants: fp32)" if s["amp"] else "fp32"
    lines = [
        f"simtune bench --size {s['size']} on {env['device']} ({env['cpu_count']} CPUs, "
        f"{env['torch_threads']} torch threads)",
        f"torch {env['torch']} (CUDA {env['torch_cuda']}, cuDNN {env['cudnn'] or '-'}); {precision}",
        f"source {s['src_size'][0]}x{s['src_size'][1]} + target {s['trg_size'][0]}x{s['trg_size'][1]}, "
        f"{s['backbone']}; {s['repeats']} repeats x {s['steps']} steps, {s['warmup']} warm-up, {s['clock']} clock; "
        f"load average {_load(env)}",
        _equivalence_line(result["equivalence"]),
        "",
        *_variant_lines(result),
    ]
    if result["ratios"]:
        lines += ["", *_ratio_lines(result)]
    lines += ["", *_workload_lines(result)]
    if result.get("pseudo_label") is not None:
        lines += ["", *_pseudo_lines(result["pseudo_label"])]
    if result.get("profile") is not None:
        lines += ["", *_profile_lines(result["profile"])]
    return "\n".join(lines)
