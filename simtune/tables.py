"""Plain-text tables for the terminal: the one formatter every command uses."""

from __future__ import annotations

from collections.abc import Sequence


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
