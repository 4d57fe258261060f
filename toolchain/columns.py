"""Plain-text tables for the terminal: one helper, so every command lines up the same way."""
from __future__ import annotations


def columns(rows: list[tuple[str, ...]]) -> list[str]:
    """Each row as one line, every column padded to its widest cell, two spaces apart."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
