"""``simtune bench``: what SIM costs per training step, against AA alone and the authors' way.

One process times, interleaved round-robin, the real ``adaptation_step`` as source only,
AA, AA + SIM (ours) and AA + SIM computed the reference way (fp32, regions labelled by
scikit-image on the host, one device call and one sync per region); checks once that the
reference way's losses equal ours; and times the pseudo-labelling pass with its peak host
memory at two target-set sizes. Results: ``run_bench`` (a JSON-ready dict) and
``format_report`` (text). ``run_data_bench`` / ``format_data_report`` (``simtune bench --data``)
time the training loaders per worker count. docs/benchmarks.md holds measured numbers.
"""

from simtune.bench.data import DataBenchSettings, format_data_report, run_data_bench
from simtune.bench.reference import Equivalence, ReferenceStyleMatcher, max_abs_diff
from simtune.bench.text import format_report
from simtune.bench.runner import BenchSettings, run_bench
from simtune.bench.workload import PRESETS, SizePreset

__all__ = [
    "PRESETS",
    "BenchSettings",
    "DataBenchSettings",
    "Equivalence",
    "ReferenceStyleMatcher",
    "SizePreset",
    "format_data_report",
    "format_report",
    "max_abs_diff",
    "run_bench",
    "run_data_bench",
]
