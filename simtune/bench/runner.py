"""``run_bench``: every measurement of ``simtune bench`` in one process, as one JSON-ready dict."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from simtune.bench.profile import count_syncs, profile_steps
from simtune.bench.pseudo import pseudo_label_pass
from simtune.bench.reference import ReferenceStyleMatcher, max_abs_diff, require_skimage
from simtune.bench.report import environment
from simtune.bench.timing import CLOCKS, VariantTimes, interleave, ratio
from simtune.bench.workload import PRESETS, Variant, build_variants, matcher_inputs, matcher_step
from simtune.errors import ConfigError
from simtune.sim import SimMatcher

DEVICES = ("cpu", "cuda")
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


def fresh_like(matcher: SimMatcher) -> SimMatcher:
    """A ``SimMatcher`` with ``matcher``'s settings and empty banks."""
    return SimMatcher(num_classes=matcher.num_classes, stuff_ids=matcher.stuff_ids, thing_ids=matcher.thing_ids,
                      feature_channels=matcher.stuff_bank.channels, bank_size=matcher.stuff_bank.capacity,
                      instances_per_image=matcher.instances_per_image,
                      target_regions_per_class=matcher.target_regions_per_class, reduction=matcher.reduction,
                      skip_until_full=matcher.skip_until_full, device=matcher.device)


def _ours(variant: Variant) -> SimMatcher:
    assert isinstance(variant.matcher, SimMatcher)
    return variant.matcher


def _ratios(times: dict[str, VariantTimes]) -> dict[str, Any]:
    out = {"aa_sim / aa (SIM cost)": ratio(times["aa_sim"], times["aa"]),
           "aa / source_only (AA cost)": ratio(times["aa"], times["source_only"]),
           "aa_sim_reference / aa_sim (ours vs reference)": ratio(times["aa_sim_reference"], times["aa_sim"])}
    if "aa_sim_fp32" in times:
        out["aa_sim_fp32 / aa_sim (bf16 gain)"] = ratio(times["aa_sim_fp32"], times["aa_sim"])
        out["aa_sim_reference / aa_sim_fp32 (matching gain)"] = ratio(times["aa_sim_reference"],
                                                                      times["aa_sim_fp32"])
    return out


def _matcher_only(variant: Variant, s: BenchSettings, device: torch.device) -> dict[str, Any]:
    """Ours vs the reference-style matcher alone, interleaved, on fixed inputs."""
    inputs = matcher_inputs(variant)
    ours, reference = fresh_like(_ours(variant)), ReferenceStyleMatcher.like(_ours(variant))
    times = interleave({"ours": matcher_step(ours, inputs), "reference": matcher_step(reference, inputs)},
                       steps=s.steps, repeats=s.repeats, warmup=s.warmup, device=device, clock=s.clock)
    return {"ours": times["ours"].summary(), "reference": times["reference"].summary(),
            "ratio": ratio(times["reference"], times["ours"]),
            "reference_syncs_per_step": reference.total.syncs / max(1, reference.steps),
            "reference_regions_per_step": (reference.total.src_regions + reference.total.trg_regions)
            / max(1, reference.steps)}


def _workload(variants: dict[str, Variant], device: torch.device) -> dict[str, Any]:
    ours, ref = variants["aa_sim"], variants["aa_sim_reference"]
    assert isinstance(ref.matcher, ReferenceStyleMatcher)
    total = ref.matcher.total
    steps = max(1, ref.matcher.steps)
    return {"source_vectors_per_step": ours.source_vectors_pushed() / max(1, ours.calls),
            "reference_regions_per_step": (total.src_regions + total.trg_regions) / steps,
            "reference_src_regions_per_step": total.src_regions / steps,
            "reference_trg_regions_per_step": total.trg_regions / steps,
            "reference_syncs_per_step": total.syncs / steps,
            "ours_syncs_per_step": count_syncs(ours.step, device),
            "aa_syncs_per_step": count_syncs(variants["aa"].step, device)}


def run_bench(s: BenchSettings, log: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """Time the training-step variants interleaved, check the reference path's equivalence, time
    the matcher alone and the pseudo-label pass; everything in one dict (see docs/benchmarks.md)."""
    check_settings(s)
    require_skimage()
    if s.threads:
        torch.set_num_threads(s.threads)
    device = torch.device(s.device)
    preset = PRESETS[s.size]
    amp = device.type == "cuda"  # bf16 autocast + channels_last, as training on CUDA
    env = environment(device)
    log(f"building the step variants ({preset.name} size) on {env['device']}")
    variants = build_variants(preset, device, amp=amp, seed=s.seed)
    inputs = matcher_inputs(variants["aa_sim"]) * EQUIVALENCE_ROUNDS
    equivalence = dataclasses.asdict(max_abs_diff(fresh_like(_ours(variants["aa_sim"])), inputs))
    log(f"equivalence: max |loss diff| {equivalence['max_loss_diff']:.3g}, "
        f"max |grad diff| {equivalence['max_grad_diff']:.3g}")
    times = interleave({name: v.step for name, v in variants.items()}, steps=s.steps, repeats=s.repeats,
                       warmup=s.warmup, device=device, clock=s.clock,
                       on_block=lambda name, r, block: log(f"repeat {r + 1}/{s.repeats} {name}: "
                                                           f"{sorted(block)[len(block) // 2]:.2f} ms median"))
    result: dict[str, Any] = {
        "environment": env,
        "settings": {**dataclasses.asdict(s), "amp": amp, "channels_last": amp, "backbone": preset.backbone,
                     "src_size": list(preset.src_size), "trg_size": list(preset.trg_size),
                     "descriptions": {name: v.description for name, v in variants.items()}},
        "equivalence": equivalence,
        "variants": {name: t.summary() for name, t in times.items()},
        "ratios": _ratios(times),
    }
    result["workload"] = _workload(variants, device)
    log("timing the matchers alone")
    result["matcher_only"] = _matcher_only(variants["aa_sim"], s, device)
    if s.profile_steps:
        log(f"profiling {s.profile_steps} aa_sim steps")
        result["profile"] = profile_steps(variants["aa_sim"].step, s.profile_steps, device)
    counts = preset.pseudo_images if s.pseudo_images is None else s.pseudo_images
    result["pseudo_label"] = None
    if counts:
        log(f"pseudo-label pass over {list(counts)} synthetic target images")
        result["pseudo_label"] = pseudo_label_pass(variants["aa_sim"].nets.segmenter, counts=tuple(counts),
                                                   size=preset.trg_size, device=device, autocast=amp)
    result["environment"]["loadavg_end"] = environment(device)["loadavg_start"]
    return result
