"""The text report of ``simtune bench --data``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


from simtune.tables import text_table


# ----------------------------------------------------------------------------- text


def _size(size: Sequence[int]) -> str:
    return f"{size[0]}x{size[1]}"


def format_data_report(result: dict[str, Any]) -> str:
    """The loader table, the cores-per-GPU line, the machine and the per-sample split, as text."""
    env, sizes, files = result["environment"], result["sizes"], result["files"]
    load = env["loadavg_start"]
    lines = [
        f"machine: {env['cpu']} ({env['processor'] or 'processor unknown'}), {env['cpu_count']} CPUs, "
        f"{env['available_cpus']} available to this process"
        + (f"; load average at start {load[0]:.2f}" if load else ""),
        f"one iteration = one GTA5 item ({_size(sizes['source_file'])} PNG + palette label -> "
        f"{_size(sizes['source_input'])}) and one Cityscapes item ({_size(sizes['target_file'])} PNG -> "
        f"{_size(sizes['target_input'])}), each stream its own loader with `workers` processes",
        f"files: GTA5 {files['gta5']['mean_image_mb']:.2f} MB per image, {files['gta5']['mean_label_kb']:.0f} kB per "
        f"label; Cityscapes {files['cityscapes']['mean_image_mb']:.2f} MB per image; {files['page_cache']}",
        "",
    ]
    rows = [["workers", "processes", "iterations/s", "ms/iteration", "speed-up vs 0", "CPU ms/it workers",
             "CPU ms/it main"]]
    for row in result["loader"]:
        speedup = "-" if row["speedup_vs_0"] is None else f"{row['speedup_vs_0']:.2f}x"
        worker_cpu = row["worker_cpu_ms_per_iteration"]
        rows.append([str(row["workers"]), str(row["processes"]) if row["workers"] else "main",
                     f"{row['iterations_per_s']:.2f}", f"{row['ms_per_iteration']:.1f}", speedup,
                     "-" if worker_cpu is None else f"{worker_cpu:.1f}", f"{row['main_cpu_ms_per_iteration']:.1f}"])
    lines += text_table(rows, right=(0, 1, 2, 3, 4, 5, 6)).splitlines()
    lines.append(f"(workers = data.num_workers of each of the two loaders; {result['settings']['iterations']} timed "
                 f"iterations per row after {result['settings']['warmup']} + 2 per worker untimed; CPU ms/it: the "
                 f"workers' CPU time over their life, warm-up included, and the training process's over the timed "
                 f"iterations)")
    c = result["cores_per_gpu"]
    lines += ["", f"cores per GPU at {c['step_ms']:g} ms per step (batch 1): {c['cores']} = "
              f"ceil({c['loading_ms_per_iteration']:.1f} / {c['step_ms']:g}) = {c['workers']} loading + 1 training "
              f"loop; loading time per iteration from {c['from']}; "
              f"data.num_workers >= {c['num_workers_per_stream']} (source item {c['source_item_ms']:.1f} ms, "
              f"target item {c['target_item_ms']:.1f} ms of CPU)"]
    lines += ["", *_cost_lines(result["per_sample"], sizes)]
    return "\n".join(lines)


def _cost_lines(costs: dict[str, Any], sizes: dict[str, Any]) -> list[str]:
    src, trg = costs["source"], costs["target"]
    s_in, t_in = _size(sizes["source_input"]), _size(sizes["target_input"])
    names = {
        "pil_decode": "PIL decode (RGB)",
        "pil_decode_resize": "PIL decode + bilinear resize to {}",
        "cv2_decode": "cv2 decode",
        "cv2_decode_resize": "cv2 decode + INTER_LINEAR resize to {}",
        "torchvision_decode_png": "torchvision.io.decode_png (bytes in memory)",
        "label_pil_decode": "label: PIL palette decode",
        "label_train_ids": "label: decode + id -> train id",
        "label_nearest_resize": "label: nearest resize to {}",
        "preprocess": "preprocess (BGR - mean, float32, CHW) at {}",
        "item": "whole dataset item",
    }
    rows = [["operation", "CPU ms"]]
    for key, ms in src["ms"].items():
        rows.append([f"GTA5   {names[key].format(s_in)}", f"{ms:.1f}"])
    for key, ms in trg["ms"].items():
        rows.append([f"Cityscapes {names[key].format(t_in)}", f"{ms:.1f}"])
    return [f"one process, per sample, CPU ms (mean of {costs['repeats']}; torch threads 1, cv2 threads 0; GTA5 image "
            f"{src['mb']:.2f} MB, Cityscapes {trg['mb']:.2f} MB):",
            *text_table(rows, right=(1,)).splitlines(),
            f"cv2.imread of the palette label gives {costs['cv2_label_channels']} channel(s): "
            + ("colours, not label ids" if costs["cv2_label_channels"] != 1 else "ids")]
