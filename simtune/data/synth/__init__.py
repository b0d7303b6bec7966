"""The built-in benchmark: procedurally drawn street scenes, a GTA5-like source domain and a
Cityscapes-like target domain, written in those datasets' on-disk layouts.

It lets the whole pipeline run without the real (large, licence-bound) datasets while
keeping SIM's premise -- *things* differ more across domains than *stuff* -- with a shift
that is partial, so adaptation has something to build on (``style`` says how):

- appearance: the source is saturated, nearly flat and sharp-edged; the target is muted
  and cooler, with stronger shading texture, noise, blur, vignetting and per-image lighting.
  Stuff colours move moderately; things fade further, gain colours the source lacks, and
  change shape (boxy game cars vs. low sedans, upright people vs. striding ones, triangular
  vs. rectangular signs, lights on the pole vs. on an arm).
- layout: the target camera sits higher and its things stand a little farther away.
- size: things are drawn larger than life (``style.GROW``), so that every thing class spans
  several pixels of a stride-8 feature map at the training resolution of
  ``experiments/synthetic.yaml`` and can be learned from the source.

Labels are Cityscapes label ids (7 road, 26 car, ...), 0 (void) for the target's ego hood.
Each image draws from its own ``numpy.random.default_rng([seed, domain, index])``, so the
files are byte-identical for any number of workers.

Modules: ``style`` (label ids, palettes, cameras per domain), ``canvas`` (camera and paint
primitives), ``scene`` (stuff, optics, one whole scene), ``things`` (thing shapes and
placement), ``write`` (file layouts, worker pool, atomic writing).
"""

from simtune.data.synth.scene import render_scene
from simtune.data.synth.style import SRC_STYLE, TRG_STYLE, Style
from simtune.data.synth.write import (
    GENERATOR_VERSION,
    SOURCE_FOLDER,
    SPEC_FILE,
    TARGET_FOLDER,
    TRAIN_CITIES,
    VAL_CITIES,
    BenchmarkPaths,
    generate_benchmark,
)

__all__ = ["GENERATOR_VERSION", "SOURCE_FOLDER", "SPEC_FILE", "SRC_STYLE", "TARGET_FOLDER", "TRAIN_CITIES", "TRG_STYLE",
           "VAL_CITIES",
           "BenchmarkPaths", "Style", "generate_benchmark", "render_scene"]
