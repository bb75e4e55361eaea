"""Streamed texts written in batches: one write per few thousand rows, not per row.

A million-row output written row by row spends more in the text layer's per-call
overhead than in the rows themselves.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TextIO

BATCH = 5000


def write_joined(texts: Iterable[str], out: TextIO, *, sep: str, lead: str = "",
                 end: str = "") -> int:  # fmt: skip
    """Write ``lead`` + the texts joined by ``sep`` + ``end`` (lead and end only when
    there is at least one text); returns how many texts."""
    n = 0
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) >= BATCH:
            out.write((sep if n else lead) + sep.join(batch))
            n += len(batch)
            batch.clear()
    if batch:
        out.write((sep if n else lead) + sep.join(batch))
        n += len(batch)
    if n:
        out.write(end)
    return n
