"""Plain-text tables for the terminal."""

from __future__ import annotations

from simtune.pipeline import PipelineResult


def final_table(result: PipelineResult) -> str:
    """mIoU per stage and per val part, as an aligned text table."""
    rows = [("stage", "iteration", "val/miou (selection)", "report/miou")]
    for stage, metrics in result.stages.items():
        rows.append((stage, f"{metrics.get('iteration', float('nan')):.0f}",
                     f"{metrics.get('val/miou', float('nan')):.2f}", f"{metrics.get('report/miou', float('nan')):.2f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
