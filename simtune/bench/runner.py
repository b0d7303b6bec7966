"""``run_bench``: every measurement of ``simtune bench`` in one process, as one JSON-ready dict."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from simtune.bench.profile import count_syncs, profile_steps
from simtune.bench.pseudo_memory import pseudo_label_pass
from simtune.bench.reference import Equivalence, ReferenceStyleMatcher, max_abs_diff, require_skimage
from simtune.bench.text import environment
from simtune.bench.timing import CLOCKS, VariantTimes, interleave, ratio
from simtune.bench.workload import (PRESETS, Variant, build_variants, default_variants, matcher_inputs,
                                    matcher_step)
from simtune.errors import ConfigError

DEVICES = ("cpu", "cuda")
RATIOS = {  # label: (numerator, denominator)
    "aa_sim / aa (SIM cost)": ("aa_sim", "aa"),
    "aa / source_only (AA cost)": ("aa", "source_only"),
    "aa_sim_reference / aa_sim (reference / ours)": ("aa_sim_reference", "aa_sim"),
    "aa_sim_fp32 / aa_sim (bf16 + channels_last gain)": ("aa_sim_fp32", "aa_sim"),
    "aa_sim_reference / aa_sim_fp32 (matching gain)": ("aa_sim_reference", "aa_sim_fp32"),
}
EQUIVALENCE_ROUNDS = 2  # passes over the scene pairs in the equivalence check (banks fill, then match)


@dataclass(frozen=True)
class BenchSettings:
    """What ``simtune bench`` measures and how long."""

    device: str = "cpu"  # cpu | cuda
    size: str = "small"  # paper (R101, 1280x720 + 1024x512) | small (the built-in benchmark's net)
    steps: int = 30  # timed steps per variant and repeat
    repeats: int = 3  # rounds over the variants (ratios and spreads are taken across them)
    warmup: int = 5  # untimed steps per variant before the first round
    pseudo_images: tuple[int, ...] | None = None  # target-set sizes of the pseudo-label pass; None = preset's
    profile_steps: int = 0  # profile this many aa_sim steps afterwards (0 = no profile)
    threads: int = 0  # torch CPU threads (0 = torch's default)
    variants: tuple[str, ...] | None = None  # names from workload.VARIANTS; None = all this device has
    clock: str = "wall"  # wall | cpu (process CPU time; CPU device only, for machines shared with other jobs)
    seed: int = 0  # initial weights and scenes


def check_settings(s: BenchSettings) -> None:
    """One-line ``ConfigError`` for a value the benchmark cannot run with."""
    if s.device not in DEVICES:
        raise ConfigError(f"--device must be one of {DEVICES}, but got {s.device!r}")
    if s.size not in PRESETS:
        raise ConfigError(f"--size must be one of {tuple(PRESETS)}, but got {s.size!r}")
    if s.steps < 1 or s.repeats < 1 or s.warmup < 0 or s.profile_steps < 0 or s.threads < 0:
        raise ConfigError(f"steps >= 1, repeats >= 1, warmup >= 0, profile >= 0 and threads >= 0 must hold, but got "
                          f"steps={s.steps}, repeats={s.repeats}, warmup={s.warmup}, "
                          f"profile={s.profile_steps}, threads={s.threads}")
    if s.pseudo_images is not None and any(n < 1 for n in s.pseudo_images):
        raise ConfigError(f"--pseudo-images counts must be >= 1, but got {list(s.pseudo_images)}")
    if s.clock not in CLOCKS:
        raise ConfigError(f"--clock must be one of {CLOCKS}, but got {s.clock!r}")
    if s.clock == "cpu" and s.device != "cpu":
        raise ConfigError(f"--clock cpu times host work only; it needs --device cpu, but got --device {s.device}")
    if s.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device cuda: torch {torch.__version__} sees no CUDA device")
    valid = default_variants(amp=s.device == "cuda")
    if s.variants is not None and (not s.variants or any(name not in valid for name in s.variants)):
        raise ConfigError(f"--variants must be names from {list(valid)} on {s.device}, but got {list(s.variants)}")


def _ratios(times: dict[str, VariantTimes]) -> dict[str, Any]:
    """Every ratio whose two variants were timed."""
    return {label: ratio(times[a], times[b]) for label, (a, b) in RATIOS.items() if a in times and b in times}


def _matcher_only(reference: Variant, s: BenchSettings, device: torch.device) -> dict[str, Any]:
    """Ours vs the reference-style matcher alone, interleaved, on fixed inputs."""
    inputs = matcher_inputs(reference)
    ours = reference.new_matcher()
    baseline = ReferenceStyleMatcher.like(ours)
    times = interleave({"ours": matcher_step(ours, inputs), "reference": matcher_step(baseline, inputs)},
                       steps=s.steps, repeats=s.repeats, warmup=s.warmup, device=device, clock=s.clock)
    steps = max(1, baseline.steps)
    return {"ours": times["ours"].summary(), "reference": times["reference"].summary(),
            "ratio": ratio(times["reference"], times["ours"]),
            "reference_syncs_per_step": baseline.total.syncs / steps,
            "reference_regions_per_step": (baseline.total.src_regions + baseline.total.trg_regions) / steps}


def _workload(variants: dict[str, Variant], device: torch.device) -> dict[str, Any]:
    """How much matching the timed steps did, and (on CUDA) how often each step synced."""
    out: dict[str, Any] = {}
    if "aa_sim" in variants:
        ours = variants["aa_sim"]
        out["source_vectors_per_step"] = ours.source_vectors_pushed() / max(1, ours.calls)
    reference = variants.get("aa_sim_reference")
    if reference is not None and isinstance(reference.matcher, ReferenceStyleMatcher):
        total, steps = reference.matcher.total, max(1, reference.matcher.steps)
        out.update(reference_src_regions_per_step=total.src_regions / steps,
                   reference_trg_regions_per_step=total.trg_regions / steps,
                   reference_syncs_per_step=total.syncs / steps)
    for name, variant in variants.items():
        out[f"{name}_syncs_per_step"] = count_syncs(variant.step, device)
    return out


def run_bench(s: BenchSettings, log: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """Time the training-step variants interleaved, check the reference path's equivalence, time
    the matcher alone and the pseudo-label pass; everything in one dict (see docs/benchmarks.md).

    ``s.threads`` applies for the run only; the previous torch thread count is restored.
    """
    check_settings(s)
    require_skimage()
    threads = torch.get_num_threads()
    if s.threads:
        torch.set_num_threads(s.threads)
    try:
        return _run(s, log)
    finally:
        torch.set_num_threads(threads)


def _run(s: BenchSettings, log: Callable[[str], None]) -> dict[str, Any]:
    device = torch.device(s.device)
    preset = PRESETS[s.size]
    amp = device.type == "cuda"  # bf16 autocast + channels_last, as training on CUDA
    env = environment(device)
    names = s.variants or default_variants(amp)
    log(f"building {', '.join(names)} ({preset.name} size) on {env['device']}")
    variants = build_variants(preset, device, names, amp=amp, seed=s.seed)
    reference = variants.get("aa_sim_reference")
    result: dict[str, Any] = {
        "environment": env,
        "settings": {**dataclasses.asdict(s), "variants": list(names), "amp": amp, "channels_last": amp,
                     "backbone": preset.backbone, "src_size": list(preset.src_size),
                     "trg_size": list(preset.trg_size),
                     "descriptions": {name: v.spec.description for name, v in variants.items()}},
        "equivalence": _equivalence(reference, log) if reference is not None else None,
    }
    times = interleave({name: v.step for name, v in variants.items()}, steps=s.steps, repeats=s.repeats,
                       warmup=s.warmup, device=device, clock=s.clock,
                       on_block=lambda name, r, block: log(f"repeat {r + 1}/{s.repeats} {name}: "
                                                           f"{sorted(block)[len(block) // 2]:.2f} ms median"))
    result["variants"] = {name: t.summary() for name, t in times.items()}
    result["ratios"] = _ratios(times)
    result["workload"] = _workload(variants, device)
    result["matcher_only"] = None
    if reference is not None:
        log("timing the matchers alone")
        result["matcher_only"] = _matcher_only(reference, s, device)
    profiled = variants.get("aa_sim", next(iter(variants.values())))
    if s.profile_steps:
        log(f"profiling {s.profile_steps} {profiled.name} steps")
        result["profile"] = {"variant": profiled.name, **profile_steps(profiled.step, s.profile_steps, device)}
    counts = preset.pseudo_images if s.pseudo_images is None else s.pseudo_images
    result["pseudo_label"] = None
    if counts:
        log(f"pseudo-label pass over {list(counts)} synthetic target images")
        result["pseudo_label"] = pseudo_label_pass(profiled.nets.segmenter, counts=tuple(counts),
                                                   size=preset.trg_size, device=device, autocast=amp)
    result["environment"]["loadavg_end"] = environment(device)["loadavg_start"]
    return result


def _equivalence(reference: Variant, log: Callable[[str], None]) -> dict[str, Any]:
    """Ours vs the reference-style matcher on the same inputs (two passes over the scenes)."""
    result: Equivalence = max_abs_diff(reference.new_matcher(), matcher_inputs(reference) * EQUIVALENCE_ROUNDS)
    log(f"equivalence: max |loss diff| {result.max_loss_diff:.3g} (losses up to {result.max_loss:.3g}), "
        f"max |grad diff| {result.max_grad_diff:.3g}")
    return dataclasses.asdict(result)
