"""Dotted config keys: flattening nested mappings, and the nearest valid key for a typo; the names of
the two evaluations every layer speaks of (``SELECTION_METRIC``, ``REPORT_METRIC``), one home for them
below the packages that rank, log and print them (``tracking.naming`` writes them to MLflow)."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

SELECTION_METRIC = "val/miou"  # mIoU on the selection split (Cityscapes val, frankfurt): the oracle
REPORT_METRIC = "report/miou"  # mIoU on the held-out report split (lindau + munster): never selects anything


def flat_dict(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"stage1": {"lambda_ci": x}}`` and ``{"stage1.lambda_ci": x}`` both -> dotted keys."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            out.update(flat_dict(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def nearest(key: str, valid: Sequence[str]) -> str | None:
    """The valid key closest to ``key``, or None when none is close."""
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
    return close[0] if close else None


def suggest(key: str, valid: Sequence[str], prefix: str = "", *, list_all: bool = False) -> str:
    """``"; did you mean '<prefix><nearest>'?"`` (or, with ``list_all``, every valid key; else "")."""
    close = nearest(key, valid)
    if close is not None:
        return f"; did you mean '{prefix}{close}'?"
    return f"; valid keys here: {', '.join(prefix + v for v in valid)}" if list_all else ""
