"""What a run reads, described for tracking: each dataset's role, size and content digest.

Four inputs per training run (``context`` is their role):

=========  ==========================================  ====================================
context    what                                        on the built-in benchmark
=========  ==========================================  ====================================
source     labelled source domain (``data.source``)    ``gta5``
target     unlabelled target train split               ``cityscapes train``
selection  val cities that choose (``val/*`` metrics)  ``cityscapes val · selection (frankfurt)``
report     val cities that report (``report/*``)       ``cityscapes val · report (lindau, munster)``
=========  ==========================================  ====================================

A target whose val split has none of those cities is described whole, as context ``val``.

Each carries its root, the image count and a **content digest**: SHA-256 over every
sample's relative file names and sizes, plus the bytes of up to ``SAMPLED_FILES`` files
spread over the list. Two runs with the same digest read the same data; a regenerated
benchmark (another ``--seed``) gets another digest. Reading every byte of GTA5 (25k images,
~60 GB) for a tag would cost minutes, hence the sample.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from simtune.data.splits import VAL_SPLITS, split_samples
from simtune.schema import Config, DomainConfig
from simtune.errors import SimtuneError

SAMPLED_FILES = 32


@dataclass(frozen=True)
class DataInput:
    """One dataset a run reads."""

    context: str  # source | target | selection | report (| val)
    name: str  # "gta5", "cityscapes train", ...
    root: Path
    split: str
    images: int
    digest: str

    def profile(self) -> str:
        return json.dumps({"images": self.images, "split": self.split})


def data_inputs(cfg: Config) -> list[DataInput]:
    """Source, target train and the two parts of target val of ``cfg``; a domain that cannot be
    listed is left out.

    Listing and digests are cached per (domain, split, part): a sweep's trials share them.
    """
    data = cfg.data
    wanted = [("source", data.source, data.source.split, True, None),
              ("target", data.target, data.target.split, False, None),
              *((part, data.target, data.val_split, True, part) for part in VAL_SPLITS),
              ("val", data.target, data.val_split, True, None)]
    out: list[DataInput] = []
    for context, domain, split, labels, part in wanted:
        if context == "val" and any(item.context in VAL_SPLITS for item in out):
            continue  # the whole val split only where it has none of the parts' cities
        try:
            out.append(_describe(context, domain, split, labels, part))
        except (SimtuneError, OSError):  # a missing root: the run itself reports it
            continue
    return out


@lru_cache(maxsize=64)
def _describe(context: str, domain: DomainConfig, split: str, labels: bool, part: str | None) -> DataInput:
    from simtune.data.build import domain_samples

    samples = domain_samples(domain, split=split, with_labels=labels)
    if part is not None:
        samples = split_samples(samples, part)
    root = Path(domain.root).resolve()
    files = [Path(path) for sample in samples for path in (sample.image_path, sample.label_path if labels else None)
             if path is not None]
    name = domain.dataset if context == "source" else f"{domain.dataset} {split}"
    if part is not None:
        name = f"{name} · {part} ({', '.join(VAL_SPLITS[part])})"
    return DataInput(context, name, root, split if part is None else f"{split}:{part}", len(samples),
                     content_digest(root, files))


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
