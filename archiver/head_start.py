"""A run's first pages, listed while the archive's libraries load.

Why: an incremental run mostly waits on ListOperations pages (under P2 a pass reads
every page of the service's list, whatever its window), and before the first of them
it spent about a third of a second loading SQLAlchemy and opening the archive, with
the network idle. So as soon as the client exists, the window the run will most
likely plan is listed on a thread, up to ``AHEAD`` pages ahead, while the archive
opens.

It is a guess, and the run checks it. The guess is read from a SQLite archive with
the standard library (SQLAlchemy is what is still loading) and planned by
``planning.plan``, the rule the run itself plans by. The run takes the pages only
when the plan it makes under the source's lock begins with the very same window, in
the unit its own check of UPDATE_DATE finds (``units``), with no interrupted pass to
resume; otherwise they are dropped unseen and the pass is listed again, as without a
guess. The calls are those the run would make (same filter, page size and tokens)
under the same ``--max-rps``; a failed one fails the run only if the run takes it.
No guess for a URL rather than a path, an archive that cannot be read, a pass to
resume, or a source whose lock is held (that run would only wait, or exit 3).
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.request import pathname2url

from archiver import cloudmap, units
from archiver.errors import WorkFailed
from archiver.planning import SyncOptions, plan
from archiver.timeutil import parse_iso

log = logging.getLogger("archiver.sync")

#: Pages listed ahead of the run at most: more than the archive's opening takes at
#: 20 ms a page, and a bound on memory while an initial sync's fetching lags behind.
AHEAD = 64

#: The interpreter's switch interval while the head start lists beside the archive's
#: opening (``HeadStart``), in seconds.
SWITCH_INTERVAL = 0.0005

#: What the guess reads of the source: the unit its last run checked, its watermark,
#: an interrupted pass, and whether a run holds its lock.
_READ = (
    "SELECT s.update_date_unit, st.watermark, st.resume_token, st.lock_holder "
    "FROM sources s LEFT JOIN sync_state st ON st.source_id = s.id WHERE s.name = ?"
)


@dataclass(frozen=True)
class Guess:
    """The first window a run of the source will most likely list, and in which unit."""

    window: tuple[datetime, datetime]
    unit: str


def guess(location: str, opts: SyncOptions) -> Guess | None:
    """What a run with ``opts`` will list first, from the archive as it is now; None
    when unsure. Only a run whose start is fixed (``opts.started``, as the command line
    sets it) can be guessed: its windows end there."""
    if "://" in location or opts.started is None:
        return None
    path = Path(location).expanduser()
    try:
        row = _read(path, opts.source) if path.exists() else None
        unit, watermark, resume, holder = row or (None, None, None, None)
        if resume is not None or holder is not None:
            return None
        mark = parse_iso(watermark) if watermark is not None else None
        windows = plan(opts, mark, None, started=opts.started).windows
    except Exception as exc:  # a guess never fails a run: the run says what is wrong
        log.debug("no head start: %s", exc)
        return None
    return Guess(windows[0], unit if unit in units.UNITS else "ms") if windows else None


def _read(path: Path, source: str) -> tuple[str | None, str | None, str | None, str | None]:
    # mode=rw: never creates a file (the run does, with its migrations); it only reads
    conn = sqlite3.connect(f"file:{pathname2url(str(path))}?mode=rw", uri=True, timeout=0.2)
    try:
        row = conn.execute(_READ, (source,)).fetchone()
    finally:
        conn.close()
    return row  # type: ignore[no-any-return]


class _ShortSwitch:
    """The interpreter's switch interval, held at ``SWITCH_INTERVAL`` while any head
    start lists beside an opening archive, and put back as it was found when the last
    one ends.

    While the archive opens, the run's thread imports and builds for a few tenths of a
    second and holds the interpreter; each page the head start had back waited up to
    the default interval (5 ms) for it, on top of its round trip. The interval is the
    process's, not the head start's: counted, so that head starts that overlap (a
    library's user may run several) never leave it short, nor put it back early.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._found = 0.0  # the interval to put back

    def hold(self) -> None:
        with self._lock:
            if self._holders == 0:
                self._found = sys.getswitchinterval()
                sys.setswitchinterval(SWITCH_INTERVAL)
            self._holders += 1

    def release(self) -> None:
        with self._lock:
            self._holders -= 1
            if self._holders == 0:
                sys.setswitchinterval(self._found)


_short_switch = _ShortSwitch()


@dataclass(frozen=True)
class _Failed:
    exc: BaseException


_Item = cloudmap.Page | _Failed | None  # None: the pass ended


class HeadStart:
    """One guessed pass, listed on a thread ahead of the run: offered once, then
    taken or dropped."""

    def __init__(self, client: cloudmap.CloudMapClient, guessed: Guess,
                 limit: cloudmap.RateLimit) -> None:  # fmt: skip
        self.guess = guessed
        self.limit = limit  # the run's own: one pace for all its calls
        self.listed = 0  # pages answered so far
        self.offered = False
        self._calls = 0  # of the pages answered (counted by the listing thread only)
        self._taken_calls = 0  # of the pages the run took (counted by the run only)
        self._client = client
        self._pages: queue.Queue[_Item] = queue.Queue(maxsize=AHEAD)
        self._stop = threading.Event()
        self._short_switch = True  # until the run takes or drops the pages
        _short_switch.hold()
        threading.Thread(target=self._list, name="head-start", daemon=True).start()

    def _list(self) -> None:
        pages = cloudmap.list_operations(self._client, *self.guess.window, limit=self.limit,
                                         unit=self.guess.unit)  # fmt: skip
        try:
            for page in pages:
                self.listed += 1
                self._calls += 1 + page.retries
                if not self._put(page):
                    return
        except BaseException as exc:  # the run's to raise, if it takes the pages
            self._put(_Failed(exc))
            return
        self._put(None)

    def _put(self, item: _Item) -> bool:
        while not self._stop.is_set():
            try:
                self._pages.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def take(self, window: tuple[datetime, datetime], unit: str) -> Iterator[cloudmap.Page] | None:
        """The pass's pages if it is the guessed one, else None (then ``drop`` it)."""
        self.offered = True
        self._end_short_switch()
        if (window, unit) != (self.guess.window, self.guess.unit):
            log.debug("the head start listed another pass than the run's")
            return None
        return self._taken()

    def _taken(self) -> Iterator[cloudmap.Page]:
        while True:
            try:
                item = self._pages.get(timeout=0.1)
            except queue.Empty:
                if self._stop.is_set():  # never an early end, which would end the pass
                    raise WorkFailed("the pages listed ahead were dropped") from None
                continue
            if item is None:
                return
            if isinstance(item, _Failed):
                raise item.exc
            self._taken_calls += 1 + item.retries
            yield item

    def drop(self) -> int:
        """No more calls; how many calls answered pages the run did not take (they
        are the run's calls all the same)."""
        if self._stop.is_set():
            return 0
        self._stop.set()
        self._end_short_switch()
        return self._calls - self._taken_calls

    def _end_short_switch(self) -> None:
        if self._short_switch:
            self._short_switch = False
            _short_switch.release()


def begin(location: str, client: cloudmap.CloudMapClient, opts: SyncOptions) -> HeadStart | None:
    """Start listing the guessed pass, if there is a guess."""
    guessed = guess(location, opts)
    if guessed is None:
        return None
    return HeadStart(client, guessed, cloudmap.RateLimit(opts.max_rps))
