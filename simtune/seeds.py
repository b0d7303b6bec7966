"""Derived seeds: each random stream of a run, named, with its seed derived from the one seed.

A run has one seed (``Config.seed``; a replicate's is ``search.replicates.replicate_seed``) and a
validator subset has one (``selection.compute.load_subset``). Every other random stream they
draw from is seeded by ``derived_seed(seed, purpose)``: the seed plus the purpose's offset in
``SEED_OFFSETS`` (plus the item's index for per-item streams), never by an offset written at the
call. The offsets are the ones the recorded results were produced with, so those numbers hold.
"""

from __future__ import annotations

# Purpose -> offset added to the seed; streams of one seed have distinct offsets (per-item streams
# stay distinct while a subset has at most 90 target images).
SEED_OFFSETS: dict[str, int] = {
    # a training stage's data order (``train.streams``)
    "seg_stream": 0,  # labelled images for L_seg
    "target_stream": 1,  # unlabelled target images
    # a validator subset (``selection.compute``)
    "subset_images": 0,  # which target images it reads
    "subset_pixels": 1,  # the SND pixels of each image
    "subset_source_images": 2,  # which source images DEV reads
    "target_feature_pixels": 10,  # + image index: feature pixels of target image i
    "source_feature_pixels": 100,  # + image index: feature pixels of source image i (DEV)
}


def derived_seed(seed: int, purpose: str, index: int = 0) -> int:
    """The seed of stream ``purpose`` of ``seed``: ``seed + SEED_OFFSETS[purpose] + index``.

    ``index`` numbers the items of a per-item stream (0 for the others).

    Raises:
        KeyError: ``purpose`` is not in ``SEED_OFFSETS``.
    """
    return seed + SEED_OFFSETS[purpose] + index
