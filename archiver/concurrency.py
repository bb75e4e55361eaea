"""How many GetOperation calls the sync keeps in flight: found, not fixed.

Cloud Map does not document GetOperation's quota, so no fixed number of workers is
right for every account: too few leaves the service idle while the sync waits out
the latency, too many gets throttled and waits out botocore's backoff. The sync
starts at ``START`` calls in flight and adapts as TCP's congestion control does:
until the first throttled answer it grows by one per answer (doubling each round,
"slow start"); then it halves on a throttled answer — once per round, so that one
burst of throttled answers halves it once — and grows by one every ``AVOIDANCE``
rounds of answers without throttling, so that it hovers just under the service's
limit with few throttled calls. ``--workers`` caps it (default 32).

It never goes below ``FLOOR`` (4): throttling the sync did not cause (another
client spending the account's quota, or the service's own hiccups) would otherwise
halve it to one call in flight, where each retry's backoff stalls the whole run
(a run against 30% random throttling took 34 s at one, 14 s at four). Below four
calls in flight, botocore's backoff paces the extra calls, as it did the fixed 8.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

START = 8
FLOOR = 4  # never fewer in flight: see the module's docstring
AVOIDANCE = 16  # rounds of clean answers per added call, once the service has throttled


@dataclass(frozen=True)
class Ticket:
    """One call's permission to run, and the window it was sent in."""

    window: int


class AdaptiveLimit:
    """Calls in flight, between 1 and ``cap``, adapted by AIMD."""

    def __init__(self, cap: int, start: int | None = None, *, fixed: bool = False) -> None:
        self.cap = cap
        self.fixed = fixed  # exactly ``cap`` in flight, never adapted (for comparisons)
        self.limit = float(cap if fixed else min(START if start is None else start, cap))
        self.in_flight = 0
        self.peak = int(self.limit)
        self.cuts = 0
        self.slow_start = True
        self._window = 0
        self._cond = threading.Condition()

    def acquire(self) -> Ticket:
        with self._cond:
            while self.in_flight >= int(self.limit):
                self._cond.wait(0.5)
            self.in_flight += 1
            return Ticket(self._window)

    def release(self, ticket: Ticket, *, throttled: bool) -> None:
        with self._cond:
            self.in_flight -= 1
            self._cond.notify_all()
            if self.fixed:
                return
            if throttled:
                self.slow_start = False
                if ticket.window == self._window:  # the first news of this round
                    self.limit = max(float(min(FLOOR, self.cap)), self.limit / 2)
                    self._window += 1
                    self.cuts += 1
            elif self.limit < self.cap:
                step = 1.0 if self.slow_start else 1 / (self.limit * AVOIDANCE)
                self.limit = min(float(self.cap), self.limit + step)
                self.peak = max(self.peak, int(self.limit))
