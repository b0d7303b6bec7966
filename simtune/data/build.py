"""A run's datasets from its config: listed, checked and wrapped before any compute.

``datasets_from_config`` is the one place a ``Config`` becomes datasets; the pipeline (through
``train.builders``), ``preflight`` and ``validate`` all call it, so what a run would refuse is
refused the same way by each of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from simtune.data.check import Say, ensure_checked
from simtune.data.datasets import Sample, SegmentationDataset, check_samples, list_samples, split_samples
from simtune.errors import ConfigError
from simtune.schema import MODES, Config, DomainConfig

VAL_PARTS = ("selection", "report")


def domain_samples(domain: DomainConfig, *, split: str | None = None, with_labels: bool = True,
                   stat_labels: bool = True) -> list[Sample]:
    """Samples of one domain; raises ``DataError`` on a missing root or a broken layout."""
    if not domain.root:
        raise ConfigError(f"data: the {domain.dataset} root is not set (data.source.root / data.target.root)")
    return list_samples(
        domain.dataset,
        Path(domain.root),
        split or domain.split,
        images_dir=domain.images_dir,
        list_file=Path(domain.list_file) if domain.list_file else None,
        with_labels=with_labels,
        stat_labels=stat_labels,
    )


@dataclass(frozen=True)
class DataSets:
    """Every dataset one pipeline run touches, checked up front."""

    source: SegmentationDataset
    target: SegmentationDataset
    target_labelled: SegmentationDataset | None  # target train with labels: target_only mode
    val: dict[str, SegmentationDataset]  # "selection" / "report", labels at full resolution


def datasets_from_config(cfg: Config, *, check_files: int | None = None, say: Say | None = None) -> DataSets:
    """All datasets of a run, with their layouts and label ids checked before any compute.

    Every file is listed. With ``check_files`` None every image and label is decoded and
    checked, once per file list (``data.check.ensure_checked``: a recorded pass is reused);
    otherwise only the first ``check_files`` of each dataset are opened.
    Raises:
        ConfigError / DataError: a root not set or missing, a broken layout, bad label ids.
    """
    src, trg = cfg.data.source, cfg.data.target
    full = check_files is None  # else the files passed a full check before: no stat per label either
    src_samples = domain_samples(src, stat_labels=full)
    target_labels = MODES[cfg.mode].target_labels
    trg_samples = domain_samples(trg, with_labels=target_labels, stat_labels=full)
    val_samples = domain_samples(trg, split=cfg.data.val_split, stat_labels=full)
    for dataset, samples in ((src.dataset, src_samples), (trg.dataset, val_samples), (trg.dataset, trg_samples)):
        if full:
            ensure_checked(dataset, samples, say=say)
        else:
            check_samples(dataset, samples, max_files=check_files)
    val = {}
    for part in VAL_PARTS:
        chosen = split_samples(val_samples, part)
        if cfg.eval.max_images:
            chosen = chosen[: cfg.eval.max_images]
        val[part] = SegmentationDataset(trg.dataset, chosen, size=trg.size, label_size="original")
    labelled = SegmentationDataset(trg.dataset, trg_samples, size=trg.size) if target_labels else None
    return DataSets(
        source=SegmentationDataset(src.dataset, src_samples, size=src.size),
        target=SegmentationDataset(trg.dataset, trg_samples, size=trg.size),
        target_labelled=labelled,
        val=val,
    )
