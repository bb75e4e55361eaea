"""Streamed texts written in batches: one write per few thousand rows, not per row.

A million-row output written row by row spends more in the text layer's per-call
overhead than in the rows themselves; the outputs rendered in SQL (csv, json, ids)
arrive from the database a batch at a time and are written as they arrive.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TextIO


def write_batches(batches: Iterable[Sequence[str]], out: TextIO, *, sep: str, lead: str = "",
                  end: str = "") -> int:  # fmt: skip
    """Write ``lead`` + every batch's texts joined by ``sep`` + ``end`` (lead and end
    only when there is at least one text); returns how many texts."""
    n = 0
    for batch in batches:
        if batch:
            out.write((sep if n else lead) + sep.join(batch))
            n += len(batch)
    if n:
        out.write(end)
    return n
