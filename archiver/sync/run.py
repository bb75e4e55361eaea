"""The sync: plan windows from the watermark, list, fetch what changed, store by batch.

Policy only — no SQL (``store.write``) and no HTTP details (``client``, ``wire``). The
steps, and why each is so, are docs/design.md's "The sync, step by step".
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from archiver import stopping
from archiver.errors import ArchiverError, Interrupted, TokenRefused, WorkFailed, first_line
from archiver.guards import redact
from archiver.records import Listed, OperationRecord
from archiver.stopping import wait_for
from archiver.store import write as store
from archiver.store.archive import Archive, holder_name
from archiver.store.models import CALL_COLUMNS, SyncRun
from archiver.sync import client as cloudmap
from archiver.sync import wire
from archiver.sync.options import ClientSettings, plan
from archiver.sync.options import SyncOptions as SyncOptions  # the library's name for it
from archiver.timeutil import iso, now, span_text

log = logging.getLogger("archiver.sync")

NOT_FOUND_RETRIES = 3  # G3: a brand-new operation may briefly be not found
NOT_FOUND_DELAY = 0.2
PIPELINE = 3  # pages whose GetOperation calls may be under way at once
#: Pages a pass may read whatever the source holds (``_check_paging``): a million
#: operations, for a first sync through windows that list little (P2 reads every page).
PAGING_FLOOR = 10_000
#: A batch of fetched pages is stored in one transaction (docs/design.md, step 4); it
#: closes at this many operations or seconds, when the listing lags, or at the window's end.
COMMIT_ROWS = 1000
COMMIT_SECONDS = 1.0


#: How far an operation's Status has come: a GetOperation answer behind what the
#: listing shows came from a replica that lags, and is not the truth (docs/design.md).
_PROGRESS = {"SUBMITTED": 0, "PENDING": 1, "SUCCESS": 2, "FAIL": 2}


def behind(got: str, listed: str) -> bool:
    """GetOperation's Status is older than the listed one."""
    return _PROGRESS.get(got, 2) < _PROGRESS.get(listed, 0)


@dataclass
class Stats:
    windows: int = 0
    listed: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    vanished: int = 0  # listed, not found by GetOperation this run: kept incomplete
    retries: int = 0
    completed: int = 0  # incomplete (or gone) operations that GetOperation found at last
    incomplete: int = 0  # the source's incomplete operations after the run
    gone: int = 0  # given up on this run, after the retry period
    unsettled: int = 0  # found, but behind their listed Status: fetched again next run
    late: int = 0  # new, though stamped within what earlier runs read whole: listed late
    older: int = 0  # listed with a Status behind the archived one: the archive keeps its own
    unit_check_calls: int = 0  # of list_calls, those of the UPDATE_DATE unit check
    api_calls: dict[str, int] = field(default_factory=dict)  # sent, by API operation (wire)
    planned_windows: int = 0  # of this run's plan, for progress (window i of N)
    pages: int = 0  # list pages stored in this run
    throttled: int = 0  # GetOperation answers that were throttling (botocore retried them)
    concurrency_peak: int = 0  # the most GetOperation calls the run allowed in flight
    concurrency_final: int = 0  # and how many at its end

    def call_counts(self) -> dict[str, int]:
        """``api_calls`` as sync_runs counts them: list_calls, get_calls, …"""
        return {column: self.api_calls.get(call, 0) for call, column in CALL_COLUMNS.items()}

    def columns(self) -> dict[str, int]:
        """What sync_runs has a column for (the rest is reported, not stored)."""
        stored = SyncRun.__table__.columns
        return {**{k: v for k, v in asdict(self).items() if k in stored}, **self.call_counts()}


@dataclass
class Summary:
    source: str
    run_id: int
    outcome: str
    watermark: str | None
    stats: Stats = field(default_factory=Stats)
    error: str | None = None
    update_date_unit: str = "ms"
    duration_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """``--json``'s line: the run, its stats and their call counts, the error last."""
        out = {k: v for k, v in asdict(self).items() if k not in ("stats", "error")}
        return {**out, "duration_s": round(self.duration_s, 3), **asdict(self.stats),
                **self.stats.call_counts(), "error": self.error}  # fmt: skip


def dry_run(location: str, opts: SyncOptions, client_settings: ClientSettings) -> dict[str, Any]:
    """The plan a run would follow, and where it would go as whom (``client_settings``),
    without an API call or a write (``--dry-run``)."""
    access = cloudmap.describe_access(client_settings)
    mark = resume = None  # a new archive, or a new source: from the start
    if Archive(location).is_new:
        access["archive"] = "would be created"
    else:
        with Archive.open(location) as archive, archive.reader.connect() as conn:
            if (sid := store.find_source(conn, opts.source)) is not None:  # refused as the run is
                endpoint = cloudmap.source_endpoint(opts.endpoint_url, access["endpoint"])
                store.read_from(conn, sid, opts.region, endpoint, full=opts.full, write=False)
                mark, resume = store.watermark(conn, sid), store.resume_point(conn, sid)
    return {**plan(opts, mark, resume, started=opts.started or now()).describe(), **access}


@dataclass
class _InFlight:
    """A listed page whose GetOperation calls are under way."""

    page: cloudmap.Page
    new_ids: set[str]
    futures: list[Future[OperationRecord | None]]
    unchanged_ids: list[str]
    wanted: list[tuple[str, str]]  # (id, listed status), in the order of ``futures``


@dataclass
class _Fetched:
    """A page whose calls have all answered, waiting for its batch to be stored."""

    job: _InFlight
    records: list[OperationRecord]
    missing: list[tuple[str, str]]  # listed, but GetOperation did not find them
    unsettled: list[tuple[OperationRecord, str]]  # found, but behind the listed Status
    seen: datetime

    @property
    def rows(self) -> int:
        return len(self.records) + len(self.missing) + len(self.job.unchanged_ids)


class Syncer:
    """One run of one source: the archive to write to, a client, and the options."""

    def __init__(self, archive: Archive, client: cloudmap.CloudMapClient, opts: SyncOptions, *,
                 clock: Callable[[], datetime] = now,
                 on_page: Callable[[Stats], None] | None = None) -> None:  # fmt: skip
        self.archive = archive
        self.writer = archive.writer
        self.reader = archive.reader
        self.client = client
        self.opts = opts
        self.endpoint = cloudmap.source_endpoint(opts.endpoint_url, client.meta.endpoint_url)
        self.clock = clock
        self.on_page = on_page
        self.stats = Stats()
        # its lines name the source (and the run, once it has one) as JSON members too
        self.log = logging.LoggerAdapter(log, {"source": opts.source})
        self._missed: set[str] = set()  # not found (or behind) in its windows: tried today
        self._asked: dict[str, str] = {}  # id: listed status; until stored (the missed: all run)
        self._held: int | None = None  # operations the source holds: counted when needed
        self._late: list[timedelta] = []  # how long before the watermark new ones were stamped
        self._read: tuple[datetime, datetime] | None = None  # what earlier runs read whole
        self._known: set[str] = set()  # listed before, never found: not late when found
        self._older: set[str] = set()  # listed with a Status behind the archived one
        self._pass_pages: dict[tuple[datetime, datetime], int] = {}
        self.unit = "ms"  # how the service reads UPDATE_DATE: checked by each run
        self.owners: list[str] = []  # of namespaces shared with us; the last to answer first
        self.limit = cloudmap.RateLimit(opts.max_rps)  # one pace for all the run's calls
        self.in_flight = cloudmap.AdaptiveLimit(opts.workers, fixed=not opts.adaptive)
        self._stats_lock = threading.Lock()
        self._retry_gone = opts.retry_gone
        self._calls_before = wire.calls(client)  # a client may serve several runs

    # --- fetching ---------------------------------------------------------------------------

    def _get(self, op_id: str, listed: str, *,
             brief_retries: int = NOT_FOUND_RETRIES) -> OperationRecord | None:  # fmt: skip
        """The record, asked again after a short wait while it is not found or is
        behind the ``listed`` Status (then the last, stale answer is returned)."""
        stale = None
        for attempt in range(brief_retries + 1):
            with self._stats_lock:
                order = [None, *self.owners]  # ours first, then each sharing account
            for owner in order:
                ticket = self.in_flight.acquire()
                throttled = 0
                try:
                    wire.throttled_since_last_asked()
                    record, retries = cloudmap.get_operation(self.client, op_id, owner=owner,
                                                             limit=self.limit)  # fmt: skip
                finally:
                    throttled = wire.throttled_since_last_asked()
                    self.in_flight.release(ticket, throttled=throttled > 0)
                with self._stats_lock:  # workers count concurrently
                    self.stats.throttled += throttled
                    self.stats.retries += retries
                    if record is not None and owner and self.owners[0] != owner:
                        self.owners.remove(owner)
                        self.owners.insert(0, owner)  # likely the next one's owner too
                if record is not None and not behind(record.status, listed):
                    return record
                if record is not None:
                    stale = record
                    break
            if attempt < brief_retries:
                stopping.sleep(NOT_FOUND_DELAY * (attempt + 1))
        self.log.debug("operation %s: listed %s, fetched %s; kept incomplete", op_id, listed,
                       stale.status if stale else "not found")  # fmt: skip
        return stale

    def _start_fetch(self, pool: ThreadPoolExecutor, sid: int, page: cloudmap.Page) -> _InFlight:
        """Compare the page with the archive in one query; fetch only new or changed."""
        ids = [op_id for op_id, _ in page.operations]
        with self.reader.connect() as conn:
            archived = store.archived_statuses(conn, sid, ids)
        # listed behind what the archive holds (a replica that lags): the archive keeps its own
        old = {i for i, status in page.operations if behind(status, archived.get(i, "SUBMITTED"))}
        self._older |= old
        # an operation a pass lists twice (pages shift as it changes) is fetched once
        wanted = [i for i, status in dict.fromkeys(page.operations) if i not in old
                  and archived.get(i) != status and self._asked.get(i) != status]  # fmt: skip
        self._asked.update(page.operations)
        unchanged = [i for i, status in page.operations if archived.get(i) == status or i in old]
        listed = dict(page.operations)
        futures = [pool.submit(self._get, i, listed[i]) for i in wanted]
        return _InFlight(page, {i for i in wanted if i not in archived}, futures, unchanged,
                         [(i, listed[i]) for i in wanted])  # fmt: skip

    # --- the run ----------------------------------------------------------------------------

    def run(self) -> Summary:
        started = self.opts.started or self.clock()
        began = time.monotonic()
        # the source is made under its lock: `sources remove` (which takes the lock)
        # can never delete it between its making and the run's first write
        with self.archive.lock(self.opts.source):
            with self.writer.begin() as conn:
                sid = store.ensure_source(conn, self.opts.source, region=self.opts.region,
                                          endpoint_url=self.endpoint)  # fmt: skip
                store.read_from(conn, sid, self.opts.region, self.endpoint, full=self.opts.full)
            with self.writer.begin() as conn:
                mark, since = store.watermark(conn, sid), store.read_since(conn, sid)
                self._read = (since, mark) if since and mark else None
                self._known = {i for i, *_ in store.incomplete_to_retry(conn, sid, gone=True)}
                the_plan = plan(self.opts, mark, store.resume_point(conn, sid), started=started)
                if closed := store.close_abandoned_runs(conn, sid):
                    self.log.info("recorded %d run(s) of a killed sync as abandoned", closed)
                if not (w := the_plan.windows):  # --until, or this host's clock set back
                    self.log.warning("source %s: nothing to read: %s is before the watermark less "
                                     "--lookback; add --since to re-read a range before it",
                                     self.opts.source, "--until" if self.opts.until else
                                     f"now ({iso(started)}: this host's clock?)")  # fmt: skip
                run_id = store.start_run(conn, sid, since=w[0][0] if w else None,
                                         until=w[-1][1] if w else None)  # fmt: skip
                self.log.extra = {"source": self.opts.source, "run_id": run_id}
                self.stats.planned_windows = len(the_plan.windows)
                store.set_lock_holder(conn, sid, holder_name())
            outcome, error = "succeeded", None
            pool = ThreadPoolExecutor(self.opts.workers, thread_name_prefix="get")
            try:
                # The namespaces and services are listed beside the unit check: all only
                # wait on the service, and the windows need them. A run that fails its
                # unit check says only that: the listings' warnings are told after it.
                seen = self.clock()
                namespaces = pool.submit(self._list, "namespaces")
                services = pool.submit(self._list, "services")
                self._check_unit(sid, started)
                self._store_names(pool, sid, seen, wait_for(namespaces), wait_for(services))
                for window in the_plan.windows:
                    self._window(pool, sid, run_id, window, the_plan.resume)
                self._retry_incomplete(pool, sid, run_id)
                if self._late and 2 * (most := max(self._late)) >= self.opts.lookback:
                    self.log.warning("source %s: %d new operation(s) were listed late, stamped "
                                     "as much as %s before the watermark; --lookback %s reads "
                                     "back only so far: widen it, as what is listed later is "
                                     "missed (`sync --full` reads it)", self.opts.source,
                                     len(self._late), span_text(most - most % timedelta(minutes=1)
                                     or most), span_text(self.opts.lookback))  # fmt: skip
                if self._older:
                    self.log.warning("source %s: %d operation(s) were listed with a Status "
                                     "older than the archive holds (a replica behind?); the "
                                     "archive keeps the newer", self.opts.source,
                                     len(self._older))  # fmt: skip
                pool.shutdown()
            except BaseException as exc:
                # no new calls; those under way are abandoned (the names' listings may still
                # be waiting on a slow service beside the step that failed): none would be
                # stored
                with wire.abandoned(self.client):
                    pool.shutdown(wait=True, cancel_futures=True)
                outcome = (
                    "interrupted" if isinstance(exc, (KeyboardInterrupt, Interrupted)) else "failed"
                )
                error = describe(exc)
                self._finish(sid, run_id, outcome, error)
                if isinstance(exc, ArchiverError):
                    raise
                if outcome == "interrupted":  # Ctrl-C, or SIGTERM as errors.Stopped
                    why = str(exc) or "interrupted"
                    raise Interrupted(f"{why}; pages in flight were not stored") from None
                raise WorkFailed(error) from exc
            self._finish(sid, run_id, outcome, error)
        with self.reader.connect() as conn:
            mark = store.watermark(conn, sid)
        return Summary(self.opts.source, run_id, outcome, iso(mark) if mark else None,
                       self.stats, update_date_unit=self.unit,
                       duration_s=time.monotonic() - began)  # fmt: skip

    def _check_unit(self, sid: int, started: datetime) -> None:
        """Find how the service reads UPDATE_DATE before trusting a window (``check_unit``)."""
        with self.reader.connect() as conn:
            known = store.update_date_unit(conn, sid)
        self.unit, self.stats.unit_check_calls = check_unit(self.client, started, known=known,
                                                            limit=self.limit)  # fmt: skip
        if self.unit != known:
            with self.writer.begin() as conn:
                store.set_update_date_unit(conn, sid, self.unit)

    def _list(self, kind: str, namespace: Listed | None = None) -> list[Listed] | str:
        """A listing of namespaces, or of one namespace's services; when it fails, the
        warning to tell. Calls only, on a pool thread."""
        try:
            return cloudmap.list_catalog(self.client, kind, namespace=namespace,
                                         limit=self.limit)  # fmt: skip
        except WorkFailed as exc:  # e.g. no permission for ListNamespaces
            what = f"services of namespace {namespace.id}" if namespace else kind
            return f"source {self.opts.source}: cannot list the {what} ({exc}); " + (
                "their names are not refreshed" if namespace or kind == "services" else
                "names are not refreshed, and operations of shared namespaces are kept "
                "incomplete")  # fmt: skip

    def _store_names(self, pool: ThreadPoolExecutor, sid: int, seen: datetime,
                     namespaces: list[Listed] | str, base: list[Listed] | str) -> None:  # fmt: skip
        """Once a run: the source's namespaces and services, for their names, and who
        owns the namespaces shared with us, so that their operations are found
        (GetOperation needs OwnerAccount for them); one ListNamespaces lists shared ones
        too. ServiceSummary does not name its namespace: a namespace whose ServiceCount
        differs from the services the archive links to it is listed by NAMESPACE_ID
        (every one on a first run, none on a quiet night). A listing that fails is a
        warning: the operations are the archive, the names help read it (docs/design.md,
        "Trusting the service"). ``base``: every service's name, in one listing."""
        listed = [] if isinstance(base, str) else base
        answers: list[list[Listed] | str] = [base]
        listings: dict[str, tuple[list[Listed], bool]] = {}
        if isinstance(namespaces, str):  # no namespaces: names without links
            self.log.warning("%s", namespaces)
        else:
            listings["namespaces"] = (namespaces, True)
            self.owners = sorted({n.resource_owner for n in namespaces if n.resource_owner})
            with self.reader.connect() as conn:
                links = store.service_links(conn, sid)
            linked = Counter(links.get(s.id) for s in listed)
            # a namespace's ServiceCount (when the service says) against what the archive links
            counts = {n.id: json.loads(n.extra or "{}").get("ServiceCount") for n in namespaces}
            todo = [n for n in namespaces if counts[n.id] != linked.get(n.id, 0)]
            answers += [wait_for(f) for f in [pool.submit(self._list, "services", n)
                                              for n in todo]]  # fmt: skip
        if failed := [a for a in answers if isinstance(a, str)]:  # one line, however many
            more = f" (and {len(failed) - 1} more namespaces' services)" if len(failed) > 1 else ""
            self.log.warning("%s%s", failed[0], more)
        by_namespace = self._linked([s for a in answers[1:] if not isinstance(a, str) for s in a])
        services = {**{s.id: s for s in listed}, **{s.id: s for s in by_namespace}}
        listings["services"] = (list(services.values()), not isinstance(namespaces, str)
                                and not failed)  # fmt: skip
        with self.writer.begin() as conn:
            if (owners := set(self.owners)) - (known := store.known_owners(conn, sid)):
                # operations given up as gone may belong to an owner learned only now
                self._retry_gone = True
                if known and not known & owners:  # only strangers: another account?
                    self._read = None  # what earlier runs read was not this account's
                    new, old = ", ".join(sorted(owners)), ", ".join(sorted(known))
                    self.log.warning("source %s: its namespaces belong to %s now, to %s before: "
                                     "if it now reaches another account, sync that account as "
                                     "a source of its own (this one's watermark is past its "
                                     "older operations)", self.opts.source, new, old)  # fmt: skip
            for kind, (items, complete) in listings.items():
                store.record_catalog(conn, sid, kind, items, seen_at=seen, complete=complete)

    def _linked(self, services: list[Listed]) -> list[Listed]:
        """Each service once, with its namespace. A service listed under several
        namespaces came from a server that ignores ListServices' NAMESPACE_ID filter
        (moto does): its namespace is asked of GetService, or left unknown."""
        by_id: dict[str, list[Listed]] = {}
        for item in services:
            by_id.setdefault(item.id, []).append(item)
        out = []
        for sid, items in by_id.items():
            home = items[0].namespace_id
            if len(items) > 1:
                try:
                    home = cloudmap.service_namespace(self.client, sid, limit=self.limit)
                except WorkFailed as exc:
                    self.log.debug("the namespace of service %s is unknown: %s", sid, exc)
                    home = None
            out.append(replace(items[0], namespace_id=home))
        return out

    def _retry_incomplete(self, pool: ThreadPoolExecutor, sid: int, run_id: int) -> None:
        """Every run tries the source's incomplete operations again, whatever its window,
        so one the service could not find (or answered behind its listing) on the day it
        was listed is completed once it can; after the retry period one never found stays
        stored, marked gone, and is let be — until a run learns an owner account it did
        not know (``_store_names``) or is asked to (``--retry-gone``)."""
        with self.reader.connect() as conn:
            todo = [t for t in store.incomplete_to_retry(conn, sid, gone=self._retry_gone)
                    if t[0] not in self._missed]  # fmt: skip
        seen = self.clock()
        give_up = seen - timedelta(days=self.opts.incomplete_retry_days)
        for i in range(0, len(todo), cloudmap.PAGE_SIZE):
            chunk = todo[i : i + cloudmap.PAGE_SIZE]
            futures = [pool.submit(self._get, op_id, listed, brief_retries=0)
                       for op_id, listed, _ in chunk]  # fmt: skip
            results = [wait_for(f) for f in futures]
            found, missed, unsettled = _sorted_out([c[:2] for c in chunk], results)
            first = {op_id: at for op_id, _, at in chunk}
            gone = [op_id for op_id, _ in missed if first[op_id] <= give_up]
            with self.writer.begin() as conn:
                store.upsert_operations(conn, sid, found, seen_at=seen, run_id=run_id)
                _keep_unsettled(conn, sid, unsettled, seen, run_id)
                store.retried_incomplete(conn, sid, [m[0] for m in missed], gone=gone, at=seen)
            self.stats.completed += len(found)
            self.stats.gone += len(gone)
        with self.reader.connect() as conn:
            counts = store.incomplete_counts(conn, sid)
        self.stats.incomplete, self.stats.unsettled = counts["incomplete"], counts["unsettled"]
        if self.stats.incomplete:
            self.log.warning("source %s: %d listed operation(s) could not be fetched with "
                             "GetOperation; they are stored incomplete and retried on every run",
                             self.opts.source, self.stats.incomplete)  # fmt: skip
        if self.stats.unsettled:
            self.log.warning("source %s: GetOperation answered %d operation(s) behind their "
                             "listed Status; the listed Status is stored, and every run asks "
                             "again", self.opts.source, self.stats.unsettled)  # fmt: skip

    def _finish(self, sid: int, run_id: int, outcome: str, error: str | None) -> None:
        self.stats.concurrency_peak = self.in_flight.peak
        self.stats.concurrency_final = int(self.in_flight.limit)
        self.stats.late, self.stats.older = len(self._late), len(self._older)
        self.stats.api_calls = self._calls_now()
        with self.writer.begin() as conn:
            store.record_run(conn, run_id, outcome=outcome, error=error, finished_at=now(),
                             **self.stats.columns())  # fmt: skip
            store.set_lock_holder(conn, sid, None)

    def _calls_now(self) -> dict[str, int]:
        sent = wire.calls(self.client) - self._calls_before
        return {**dict.fromkeys(CALL_COLUMNS, 0), **sent}

    def _pages(self, window: tuple[datetime, datetime], resume: Any) -> Iterator[cloudmap.Page]:
        token = resume[2] if resume and resume[:2] == window else None
        if token:
            self.log.info("resuming the interrupted pass over %s–%s", iso(window[0]),
                          iso(window[1]))  # fmt: skip
            pages = cloudmap.list_operations(self.client, *window, token=token, limit=self.limit,
                                             unit=self.unit)  # fmt: skip
            try:
                first = next(pages)
            except TokenRefused:
                self.log.warning("the service refused the saved NextToken; starting the pass over")
            else:
                yield first
                yield from pages
                return
        yield from cloudmap.list_operations(self.client, *window, limit=self.limit, unit=self.unit)

    def _window(self, pool: ThreadPoolExecutor, sid: int, run_id: int,
                window: tuple[datetime, datetime], resume: Any) -> None:  # fmt: skip
        """One pass over a window, pipelined: listing the next page and fetching up to
        PIPELINE pages overlap, while pages are stored strictly in order, a batch at a
        time. Pages already fetched when the pass fails or is stopped are stored before
        the error goes on: they are complete, and the next run need not fetch them again."""
        self.stats.windows += 1
        self.log.info("source %s: window %d/%d, %s to %s", self.opts.source, self.stats.windows,
                 self.stats.planned_windows, iso(window[0]), iso(window[1]))  # fmt: skip
        pages = self._pages(window, resume)
        inflight: deque[_InFlight] = deque()
        batch: list[_Fetched] = []
        try:
            with ThreadPoolExecutor(1, thread_name_prefix="list") as lister:
                upcoming: Future[cloudmap.Page | None] = lister.submit(next, pages, None)
                while (page := self._next_page(upcoming, sid, run_id, window, batch)) is not None:
                    upcoming = lister.submit(next, pages if page.next_token else iter(()), None)
                    self.stats.retries += page.retries
                    self._check_paging(sid, window)
                    inflight.append(self._start_fetch(pool, sid, page))
                    while len(inflight) >= PIPELINE:
                        self._collect(sid, run_id, window, batch, inflight.popleft())
                while inflight:
                    self._collect(sid, run_id, window, batch, inflight.popleft())
        except BaseException as exc:
            # after a failure (not a stop: that ends at once), pages whose calls have all
            # answered are kept, in order, up to the first that has not (the watermark
            # stays; the NextToken resumes after them)
            while (
                not isinstance(exc, (Interrupted, KeyboardInterrupt))
                and inflight
                and all(f.done() and not f.exception() for f in inflight[0].futures)
            ):
                job = inflight.popleft()
                batch.append(self._fetched(job, [f.result() for f in job.futures]))
            try:
                self._store(sid, run_id, window, batch)
            except Exception:  # the archive itself failed: the first error is the one to tell
                self.log.debug("the pages fetched before the error were not stored", exc_info=True)
            raise
        self._store(sid, run_id, window, batch)

    def _check_paging(self, sid: int, window: tuple[datetime, datetime]) -> None:
        """A service handing out NextTokens for ever would be paged for ever: a pass may
        read PAGING_FLOOR pages and ten per operation the source holds or the run listed
        (held is counted only for a pass that long: on a million, it takes 0.1 s)."""
        pages = self._pass_pages[window] = self._pass_pages.get(window, 0) + 1
        listed = len(self._asked) + self.stats.inserted + self.stats.vanished  # distinct
        if pages > (bound := PAGING_FLOOR + 10 * listed) and self._held is None:
            with self.reader.connect() as conn:
                self._held = store.operation_count(conn, sid)
        if pages > bound + 10 * (self._held or 0):
            raise WorkFailed(f"ListOperations: the service answered {pages - 1:,} pages for one "
                             f"pass over {iso(window[0])}–{iso(window[1])}, more than ten per "
                             f"operation archived or listed and {PAGING_FLOOR:,}; stopping, as it "
                             "would page for ever. The watermark did not move.")  # fmt: skip

    def _next_page(self, upcoming: Future[cloudmap.Page | None], sid: int, run_id: int,
                   window: tuple[datetime, datetime],
                   batch: list[_Fetched]) -> cloudmap.Page | None:  # fmt: skip
        """The next listed page; the batch is stored first if the page is not there yet,
        as the run would only wait: a slow listing never holds fetched pages back. A
        batch of pages that listed nothing waits for the next rows (or ``_collect``'s
        second): under P2 most pages of an incremental run are empty, and a transaction
        each cost more than it saved, only a NextToken a resume could start from."""
        if batch and not upcoming.done() and any(f.rows for f in batch):
            self._store(sid, run_id, window, batch)
        return wait_for(upcoming)  # type: ignore[no-any-return]

    def _collect(self, sid: int, run_id: int, window: tuple[datetime, datetime],
                 batch: list[_Fetched], job: _InFlight) -> None:  # fmt: skip
        """Wait for a page's calls; store the batch once it is big or old enough."""
        batch.append(done := self._fetched(job, [wait_for(f) for f in job.futures]))
        self._missed.update([i for i, _ in done.missing] + [r.id for r, _ in done.unsettled])
        if (sum(f.rows for f in batch) >= COMMIT_ROWS
                or (self.clock() - batch[0].seen).total_seconds() >= COMMIT_SECONDS):  # fmt: skip
            self._store(sid, run_id, window, batch)

    def _fetched(self, job: _InFlight, results: list[OperationRecord | None]) -> _Fetched:
        """A page whose calls have all answered, sorted out for its batch."""
        return _Fetched(job, *_sorted_out(job.wanted, results), self.clock())

    def _store(self, sid: int, run_id: int, window: tuple[datetime, datetime],
               batch: list[_Fetched]) -> None:  # fmt: skip
        """The batch's pages in one transaction, with the NextToken after its last page
        (or, after a window's last page, the watermark at its end)."""
        if not batch:
            return
        s = self.stats
        # a transaction that rolls back leaves the run's counts as they were (sync_runs
        # once kept a rolled-back batch's); the workers count other fields
        saved = {k: getattr(s, k) for k in ("listed", "inserted", "updated", "unchanged",
                                            "vanished")}  # fmt: skip
        try:
            self._write_batch(sid, run_id, window, batch)
        except BaseException:
            for k, v in saved.items():
                setattr(s, k, v)
            raise
        done = {o for f in batch for o in f.job.page.operations if o[0] not in self._missed}
        self._asked = dict(self._asked.items() - done)  # stored: the archive tells them now
        stored, batch[:] = len(batch), []
        for _ in range(stored):
            s.pages += 1
            if s.pages % 10 == 0:  # cron's -v log: a line every 10 pages, not every page
                self.log.info("source %s: window %d/%d, %d pages, listed %d, fetched %d",
                         self.opts.source, s.windows, s.planned_windows, s.pages, s.listed,
                         s.inserted + s.updated)  # fmt: skip
            if self.on_page:
                self.on_page(s)

    def _write_batch(self, sid: int, run_id: int, window: tuple[datetime, datetime],
                     batch: list[_Fetched]) -> None:  # fmt: skip
        s = self.stats
        with self.writer.begin() as conn:
            for f in batch:
                job = f.job
                kept = [*f.records, *(r for r, _ in f.unsettled)]
                new = sum(1 for r in kept if r.id in job.new_ids)
                if self._read:  # new, though stamped within what earlier runs read whole
                    since, mark = self._read
                    self._late += [mark - r.update_date for r in kept if r.id in job.new_ids
                                   and r.id not in self._known
                                   and since <= r.update_date < mark]  # fmt: skip
                s.listed += len(job.page.operations)
                s.inserted += new
                s.updated += len(kept) - new
                s.unchanged += len(job.unchanged_ids)
                s.vanished += len(f.missing)
                store.upsert_operations(conn, sid, f.records, seen_at=f.seen, run_id=run_id)
                _keep_unsettled(conn, sid, f.unsettled, f.seen, run_id)
                store.keep_incomplete(conn, sid, f.missing, seen_at=f.seen)  # never dropped
                store.touch_seen(conn, sid, job.unchanged_ids, f.seen)
            last = batch[-1].job.page
            if last.next_token:
                store.save_resume(conn, sid, window, last.next_token)
            else:
                store.save_resume(conn, sid, None, None)
                store.advance_watermark(conn, sid, window)
            s.api_calls = self._calls_now()
            store.record_run(conn, run_id, **s.columns())


def _sorted_out(
    wanted: list[tuple[str, str]], results: list[OperationRecord | None]
) -> tuple[list[OperationRecord], list[tuple[str, str]], list[tuple[OperationRecord, str]]]:
    """GetOperation's answers to ``wanted`` (id, listed Status) as: records to store,
    (id, Status) not found, and (record, listed Status) behind the listing."""
    records, missing, unsettled = [], [], []
    for (op_id, listed), record in zip(wanted, results, strict=True):
        if record is None:
            missing.append((op_id, listed))
        elif behind(record.status, listed):
            unsettled.append((record, listed))
        else:
            records.append(record)
    return records, missing, unsettled


def _keep_unsettled(conn: Any, sid: int, unsettled: list[tuple[OperationRecord, str]],
                    seen: datetime, run_id: int) -> None:  # fmt: skip
    """A stale answer is stored with the Status the listing showed (the newest truth
    seen), as no observed event, and stays incomplete so that every run asks again
    until GetOperation agrees."""
    store.upsert_operations(conn, sid, [replace(r, status=listed) for r, listed in unsettled],
                            seen_at=seen, run_id=run_id, events=False)  # fmt: skip
    store.keep_incomplete(conn, sid, [(r.id, listed) for r, listed in unsettled], seen_at=seen)


def describe(exc: BaseException) -> str:
    """A failed run's error as stored and told: masked, its type named if untranslated."""
    if isinstance(exc, (KeyboardInterrupt, Interrupted)):
        return "interrupted"
    driver = getattr(exc, "orig", None)  # a driver's error, not SQLAlchemy's wrapping of it
    exc, side = driver or exc, "the archive's database: " if driver else ""  # not the API's
    text = redact(first_line(exc))
    return text if isinstance(exc, ArchiverError) else f"{side}{type(exc).__name__}: {text}"


def sync_source(location: str, opts: SyncOptions, client_settings: ClientSettings, *,
                on_page: Callable[[Stats], None] | None = None,
                botocore_session: Any = None) -> Summary:  # fmt: skip
    """One source end to end: the client first (bad AWS settings fail before any file
    is made: a known source's failed run), then the archive (made when new), the run.
    The client keeps a connection for each call in flight: workers, a listing, a unit check."""
    try:
        client = cloudmap.make_client(client_settings, pool_size=opts.workers + 2,
                                      botocore_session=botocore_session)  # fmt: skip
    except ArchiverError as exc:
        if not isinstance(exc, Interrupted):  # a stop while credentials were fetched is none
            store.record_refused(location, opts.source, describe(exc))
        raise
    with Archive.open(location, create_missing=True) as archive:
        return Syncer(archive, client, opts, on_page=on_page).run()


#: The units a check can find, in the order it tries them: the documented one first.
UNITS = ("ms", "s")

#: Every plausible UpdateDate: 20 years back to tomorrow.
PLAUSIBLE = (timedelta(days=20 * 366), timedelta(days=1))


def check_unit(client: cloudmap.CloudMapClient, now: datetime, *, known: str | None,
               limit: cloudmap.RateLimit = cloudmap.UNLIMITED) -> tuple[str, int]:  # fmt: skip
    """The unit the service reads, and the ListOperations calls it took; ``known`` is
    what the last run found (None: never). A window over every plausible UpdateDate
    in each unit, the documented one first: the first to match any operation is the
    unit, as read in the other unit it lies tens of thousands of years ahead or in
    January 1970. When neither matches, an unfiltered page tells a service that holds
    nothing (nothing to tell the units apart by) from one that matches neither."""
    start, end = now - PLAUSIBLE[0], now + PLAUSIBLE[1]
    for calls, unit in enumerate(UNITS, start=1):
        if cloudmap.first_page(client, cloudmap.window_filter(start, end, unit), limit=limit):
            if unit != "ms" and known != unit:
                log.warning(
                    "the service reads UPDATE_DATE in seconds, not milliseconds as "
                    "documented; this source's windows use seconds from now on"
                )
            return unit, calls
    if not cloudmap.first_page(client, [], limit=limit):
        return known or "ms", len(UNITS) + 1
    raise WorkFailed(
        "UPDATE_DATE unit check failed: a window over the last 20 years matched none of "
        "the operations the service lists, in milliseconds or in seconds; nothing was "
        "stored and the watermark did not move"
    )
