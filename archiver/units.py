"""How the service reads UPDATE_DATE: checked on every run, never assumed.

Why: the documentation says epoch milliseconds (F7), but nothing in a run would notice
if the service read seconds. Every incremental window would then lie tens of thousands
of years in the future and match nothing: 0 rows, exit 0, every night. So before it
trusts its windows, each run compares the first page of an unfiltered ListOperations
with the first page under a window that covers every plausible date, in milliseconds
and, if that matches none of them, in seconds (at most three calls). Under P2 both
first pages scan the same operations, so a window in the right unit keeps them all.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from archiver import cloudmap
from archiver.errors import WorkFailed

log = logging.getLogger("archiver.sync")

#: Every plausible UpdateDate: 20 years back to tomorrow.
PLAUSIBLE = (timedelta(days=20 * 366), timedelta(days=1))


@dataclass(frozen=True)
class UnitCheck:
    unit: str  # "ms" or "s"
    calls: int  # extra ListOperations calls it took


def check(
    client: cloudmap.CloudMapClient,
    now: datetime,
    *,
    known: str | None,
    limit: cloudmap.RateLimit | None = None,
) -> UnitCheck:
    """The unit the service reads; ``known`` is what the last run found (None: never)."""
    held = set(cloudmap.first_page(client, [], limit=limit))
    if not held:  # the service holds nothing yet: nothing to tell the units apart by
        return UnitCheck(known or "ms", 1)
    start, end = now - PLAUSIBLE[0], now + PLAUSIBLE[1]
    calls = 1
    for unit in ("ms", "s"):
        window = cloudmap.window_filter(start, end, unit)
        calls += 1
        if held & set(cloudmap.first_page(client, window, limit=limit)):
            if unit != "ms" and known != unit:
                log.warning(
                    "the service reads UPDATE_DATE in seconds, not milliseconds as "
                    "documented; this source's windows use seconds from now on"
                )
            return UnitCheck(unit, calls)
    raise WorkFailed(
        "UPDATE_DATE unit check failed: a window over the last 20 years matched none of "
        "the operations the service lists, in milliseconds or in seconds; nothing was "
        "stored and the watermark did not move"
    )
