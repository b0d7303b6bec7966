"""Shared fixtures: one tiny built-in benchmark per test session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from simtune.testing import tiny_benchmark


@pytest.fixture(scope="session")
def tiny_bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(source root, target root) of a tiny benchmark in the real GTA5/Cityscapes layouts."""
    return tiny_benchmark(tmp_path_factory.mktemp("bench") / "synthetic")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """GPU tests skip cleanly where torch sees no CUDA device."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
