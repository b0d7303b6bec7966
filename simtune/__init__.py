"""simtune: SIM domain adaptation for semantic segmentation, tuned and compared on Ray."""

__version__ = "0.1.0"
