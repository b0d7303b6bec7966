"""``simtune bench --data``: can the training loader feed a GPU, and with how many cores?

A training iteration loads one source sample (GTA5 image + palette label, resized to 1280x720)
and one target sample (Cityscapes image, resized to 1024x512), each from its own loader
(``data.loaders.loader`` over a ``train.streams.StreamSampler``, as ``train.streams.stream``
builds them), so ``data.num_workers = w`` runs ``2 w`` worker processes.

``run_data_bench`` writes paper-size images in the datasets' real layouts to a temporary
folder (``distinct`` rendered images per dataset, every other name a hard link to one of them:
decoding costs the same, and the page cache is warm, so disk reads are not measured), then

- times the two loaders together for each worker count (iterations/s after a warm-up that
  starts the workers),
- splits one process's per-sample cost into decode, resize, label and preprocessing, and
  times the alternative decoders (cv2, torchvision) on the same file,
- turns one process's loading time per iteration ``t1`` into the CPU cores a GPU whose step
  takes ``step_ms`` at batch 1 needs: ``ceil(t1 / step) + 1`` (workers + the training loop).

``format_data_report`` renders the result as text. docs/benchmarks.md holds measured numbers.
"""


from simtune.bench.data.measure import run_data_bench
from simtune.bench.data.settings import DataBenchSettings, check_data_settings, parse_workers
from simtune.bench.data.text import format_data_report

__all__ = ["DataBenchSettings", "check_data_settings", "format_data_report", "parse_workers", "run_data_bench"]
