"""The datasets a run reads, logged as MLflow dataset inputs (the runs table's Datasets column).

Each run that trains logs three inputs, tagged with their role as MLflow's
``mlflow.data.context``:

=========  ==========================================  ==================================
context    what                                        e.g. on the built-in benchmark
=========  ==========================================  ==================================
source     labelled source domain (``data.source``)    ``gta5`` 400 images
target     unlabelled target train split               ``cityscapes train`` 300 images
val        target val split (selection + report)       ``cityscapes val`` 120 images
=========  ==========================================  ==================================

Each carries its root (``source``, a ``file://`` URI), the image count and a **content
digest**: SHA-256 over every sample's relative file names and sizes, plus the bytes of up
to ``SAMPLED_FILES`` files spread over the list. Two runs with the same digest read the same
data; a regenerated benchmark (another ``--seed``) gets another digest. Reading every byte
of GTA5 (25k images, ~60 GB) for a tag would cost minutes, hence the sample.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from simtune.schema import Config, DomainConfig
from simtune.errors import SimtuneError

SAMPLED_FILES = 32
TAG_CONTEXT = "mlflow.data.context"


@dataclass(frozen=True)
class DataInput:
    """One dataset a run reads."""

    context: str  # source | target | val
    name: str  # "gta5", "cityscapes train", ...
    root: Path
    split: str
    images: int
    digest: str

    def profile(self) -> str:
        return json.dumps({"images": self.images, "split": self.split})


def data_inputs(cfg: Config) -> list[DataInput]:
    """Source, target train and target val of ``cfg``; a domain that cannot be listed is left out.

    Listing and digests are cached per (domain, split): a sweep's trials share them.
    """
    data = cfg.data
    wanted = [("source", data.source, data.source.split, True), ("target", data.target, data.target.split, False),
              ("val", data.target, data.val_split, True)]
    out = []
    for context, domain, split, labels in wanted:
        try:
            out.append(_describe(context, domain, split, labels))
        except (SimtuneError, OSError):  # a missing root: the run itself reports it
            continue
    return out


@lru_cache(maxsize=64)
def _describe(context: str, domain: DomainConfig, split: str, labels: bool) -> DataInput:
    from simtune.data.build import domain_samples

    samples = domain_samples(domain, split=split, with_labels=labels)
    root = Path(domain.root).resolve()
    files = [Path(path) for sample in samples for path in (sample.image_path, sample.label_path if labels else None)
             if path is not None]
    name = domain.dataset if context == "source" else f"{domain.dataset} {split}"
    return DataInput(context, name, root, split, len(samples), content_digest(root, files))


def content_digest(root: Path, files: list[Path]) -> str:
    """SHA-256 (16 hex digits) of every file's path under ``root`` and size, and a sample's bytes."""
    digest = hashlib.sha256()
    for path in files:
        relative = path.resolve().relative_to(root) if path.resolve().is_relative_to(root) else path
        digest.update(f"{relative}\0{path.stat().st_size}\n".encode())
    stride = max(1, len(files) // SAMPLED_FILES)
    for path in files[::stride][:SAMPLED_FILES]:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def log_data_inputs(client: Any, run_id: str, cfg: Config) -> list[DataInput]:
    """Log ``cfg``'s datasets as the run's inputs; returns what was logged."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    inputs = data_inputs(cfg)
    if inputs:
        client.log_inputs(run_id, datasets=[
            DatasetInput(Dataset(name=item.name, digest=item.digest, source_type="local",
                                 source=json.dumps({"uri": item.root.as_uri()}), profile=item.profile()),
                         tags=[InputTag(TAG_CONTEXT, item.context)])
            for item in inputs])
    return inputs
