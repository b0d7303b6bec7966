"""Plain-text tables for the terminal: the one formatter, and the table ``simtune train`` prints."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from simtune.train.pipeline import PipelineResult


def text_table(rows: Sequence[Sequence[str]], *, right: Sequence[int] = (), rule: bool = True) -> str:
    """Columns padded to their widest cell; the first row is the header.

    Args:
        right: indices of right-aligned (numeric) columns; the others are left-aligned.
        rule: a line of dashes under the header.
    """
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(cell.rjust(w) if i in right else cell.ljust(w)
                         for i, (cell, w) in enumerate(zip(row, widths))).rstrip()

    lines = [line(row) for row in rows]
    if rule:
        lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def final_table(result: PipelineResult) -> str:
    """mIoU per stage and per val part, as an aligned text table; then the last stage's
    label-free validators, when the run computed them."""
    rows = [("stage", "iteration", "val/miou (selection, oracle)", "report/miou")]
    for stage, metrics in result.stages.items():
        rows.append((stage, f"{metrics.get('iteration', float('nan')):.0f}",
                     f"{metrics.get('val/miou', float('nan')):.2f}", f"{metrics.get('report/miou', float('nan')):.2f}"))
    select = {k.removeprefix("select/"): v for k, v in result.final.items() if k.startswith("select/")}
    text = text_table(rows)
    if select:
        text += "\nlabel-free validators (select/*, higher = better): " + \
            ", ".join(f"{name} {value:.3g}" for name, value in select.items())
    return text
