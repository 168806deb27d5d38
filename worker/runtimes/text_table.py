"""Plain-text tables for the CLI: columns padded to their widest cell, optional notes under a
row (indented to the last column)."""

from __future__ import annotations

from collections.abc import Sequence


def render_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    notes: Sequence[Sequence[str]] | None = None,
) -> str:
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    lines = [line(headers), line(["-" * w for w in widths])]
    indent = " " * (sum(widths[:-1]) + 2 * (len(widths) - 1))
    for index, row in enumerate(rows):
        lines.append(line(row))
        lines.extend(f"{indent}↳ {note}" for note in (notes[index] if notes else ()) if note)
    return "\n".join(lines)
