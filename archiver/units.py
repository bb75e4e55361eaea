"""How the service reads UPDATE_DATE: checked on every run, never assumed.

Why: the documentation says epoch milliseconds (F7), but nothing in a run would notice
if the service read seconds. Every incremental window would then lie tens of thousands
of years in the future and match nothing: 0 rows, exit 0, every night. So before it
trusts its windows, each run compares the first page of an unfiltered ListOperations
with the first page under a window that covers every plausible date, in milliseconds
and, if that matches none of them, in seconds (at most three calls; the first two go
out together when the run gives a pool). Under P2 both first pages scan the same
operations, so a window in the right unit keeps them all.
"""

from __future__ import annotations

import logging
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime, timedelta

from archiver import cloudmap
from archiver.errors import WorkFailed

log = logging.getLogger("archiver.sync")

#: The units a check can find, in the order it tries them: the documented one first.
UNITS = ("ms", "s")

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
    pool: Executor | None = None,
) -> UnitCheck:
    """The unit the service reads; ``known`` is what the last run found (None: never).
    With a ``pool``, the window in milliseconds (the documented unit, which nearly
    every run ends with) is asked beside the unfiltered page, not after it."""
    start, end = now - PLAUSIBLE[0], now + PLAUSIBLE[1]
    ms_page = None
    if pool is not None:
        ms_page = pool.submit(cloudmap.first_page, client,
                              cloudmap.window_filter(start, end, "ms"), limit=limit)  # fmt: skip
    held = set(cloudmap.first_page(client, [], limit=limit))
    if not held:  # the service holds nothing yet: nothing to tell the units apart by
        if ms_page is not None:
            ms_page.exception()  # answered or failed, it tells nothing here
        return UnitCheck(known or "ms", 1 if ms_page is None else 2)
    calls = 1
    for unit in UNITS:
        calls += 1
        if unit == "ms" and ms_page is not None:
            page = ms_page.result()
        else:
            page = cloudmap.first_page(client, cloudmap.window_filter(start, end, unit),
                                       limit=limit)  # fmt: skip
        if held & set(page):
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
