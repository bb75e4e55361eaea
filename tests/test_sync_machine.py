"""The sync's promise under any night a live account can have: a state machine.

The targeted tests each hold one hazard (a page that fails, an answer that lags, an
operation not found yet). Here Hypothesis interleaves them with a live account's
changes, syncs that succeed, fail or are stopped, and after every run holds the archive
to what the account showed: nothing lost, nothing invented, nothing skipped (nothing
duplicated is the tables' keys), and an operation only incomplete when something kept
it from being fetched. At the end every fault is lifted and one more night makes the archive equal
the account, incomplete operations completed (docs/design.md, "The sync, step by step").
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select

from archiver import stopping
from archiver.emulator import Emulator
from archiver.errors import ArchiverError
from archiver.read.query import to_archived
from archiver.records import OperationRecord
from archiver.store.models import IncompleteOperation, Operation, Source
from archiver.sync.options import ClientSettings
from archiver.sync.run import NOT_FOUND_RETRIES, SyncOptions
from tests.helpers import read_rows, run_library_sync

pytestmark = pytest.mark.slow  # over HTTP (docs/design.md, "Tests")

_sources = itertools.count()
PICK = st.integers(0, 10_000)  # an index into whatever is there to pick from


def machine(db: str) -> type[RuleBasedStateMachine]:
    """The state machine over the archive at ``db``: each example a source of its own,
    which leaves the earlier ones' rows as they were."""

    class Night(RuleBasedStateMachine):
        @initialize(seeded=st.integers(0, 400), seed=st.integers(0, 1))
        def start(self, seeded: int, seed: int) -> None:
            # Two seeds: later examples meet ids earlier ones archived. The second
            # service reads UPDATE_DATE in seconds, as the fidelity issue found one does.
            self.emu = Emulator(seed_operations=seeded, days=2, seed=seed,
                                update_date_unit=("ms", "s")[seed]).start()  # fmt: skip
            self.source = f"machine{next(_sources)}@us-east-1"
            # every state each operation has had, by id: what the archive may hold
            self.states: dict[str, list[OperationRecord]] = {}
            self.faulted: set[str] = set()  # given a fault since they were last archived whole
            self.kept: set[str] = set()  # every id the archive has held: it never lets one go
            self.whole: dict[str, OperationRecord] = {}  # archived, and not incomplete
            self.reached: dict[str, int] = {}  # the latest of its states the archive held whole
            self.others = self._others()  # the earlier examples' sources: never touched
            self._record()

        def _others(self) -> list[object]:
            return read_rows(db, select(*Operation.__table__.columns).join(Source).where(
                Source.name != self.source).order_by(Operation.source_id, Operation.id))  # fmt: skip

        def teardown(self) -> None:
            """Lift every fault: one night later the archive equals the account."""
            if not hasattr(self, "emu"):
                return
            try:
                self.emu.service.reveal()
                assert self._sync(workers=8).outcome == "succeeded"
                self._check(settled=True)
                assert self._others() == self.others, "a run touched another source's rows"
            finally:
                self.emu.close()

        def _record(self) -> None:
            for op in self.emu.account.all():
                if op not in (seen := self.states.setdefault(op.id, [])):
                    seen.append(op)

        def _unarchived(self) -> list[str]:
            """Operations the next run must fetch: new, or changed since the archive had them."""
            return sorted(o.id for o in self.emu.account.all() if self.whole.get(o.id) != o)

        @rule(new=st.integers(0, 40), pending=st.sampled_from([0.0, 0.5, 1.0]),
              finished=st.integers(0, 20), hours=st.sampled_from([0, 0.5, 3, 30]),
              hidden=st.lists(st.tuples(PICK, st.integers(1, 2 * (NOT_FOUND_RETRIES + 1))),
                              max_size=3),
              lagging=st.lists(st.tuples(PICK, PICK, st.integers(1, 6)), max_size=2),
              fault=st.sampled_from([None, None, ("500", "ListOperations", 0.2),
                                     ("500", "ListOperations", 0.5), ("500", "GetOperation", 0.5),
                                     ("500", "GetOperation", 1.0), ("stop", "ListOperations", 3),
                                     ("stop", "GetOperation", 5)]),
              workers=st.sampled_from([1, 8]), full=st.booleans(), pick=PICK,
              behind=st.lists(PICK, max_size=2), forget=st.sampled_from([None, 6, 30]))  # fmt: skip
        def night(self, new: int, pending: float, finished: int, hours: float,
                  hidden: list[tuple[int, int]], lagging: list[tuple[int, int, int]],
                  fault: tuple[str, str, float] | None, workers: int, full: bool,
                  pick: int, behind: list[int], forget: int | None) -> None:  # fmt: skip
            """A day of the account (new operations, some finishing; a SUBMITTED one
            PENDING), no time or hours passing (none: the run's window ends moments
            after the changes; beyond --lookback, 2h, only the watermark says where the
            run starts), then a run that the service may surprise: operations
            not found for a while (G3), maybe longer than a run retries; a replica that
            lags, answering an older state; a failover to one that lists and answers an
            older state of operations the archive holds whole, for the night; HTTP 500s
            beyond botocore's retries; SIGTERM from cron or systemd partway. The
            service may then forget the operations last changed more than ``forget``
            hours ago, as Cloud Map does after a while: the archive keeps them.
            Which operations is drawn as numbers, the same whatever the archive holds."""
            account = self.emu.account
            account.add_operations(new, pending_share=pending)
            account.finish_pending(finished)
            if submitted := sorted(o.id for o in account.all() if o.status == "SUBMITTED"):
                account.update(submitted[pick % len(submitted)], status="PENDING",
                               update_date=account.clock.now())  # fmt: skip
            self._record()
            account.clock.advance(timedelta(hours=hours))
            for i, times in hidden if (todo := self._unarchived()) else []:
                self.emu.service.hide_briefly(todo[i % len(todo)], times)
                self.faulted.add(todo[i % len(todo)])
            for i, j, times in lagging:
                if moved := [x for x in self._unarchived() if len(self.states[x]) > 1]:
                    older = self.states[op_id := moved[i % len(moved)]][:-1]
                    self.emu.service.lag(older[j % len(older)], times)
                    self.faulted.add(op_id)
            rolled: dict[str, OperationRecord] = {}  # as the service has them: back at dawn
            for i in behind:
                if held := [x for x, r in sorted(self.whole.items())
                            if len(self.states[x]) > 1 and account.get(x) == r]:  # fmt: skip
                    rolled.setdefault(op_id := held[i % len(held)], self.whole[op_id])
                    account.put(self.states[op_id][-2])
            try:
                if fault is None:
                    assert self._sync(workers=workers, full=full).outcome == "succeeded"
                    return
                kind, api, value = fault
                try:  # the run fails, is stopped or gets through; what it stored is true
                    with self._errors(api, value) if kind == "500" else self._stop(api, int(value)):
                        self._sync(workers=workers, full=full, max_attempts=1)
                except (ArchiverError, KeyboardInterrupt):  # Stopped is a KeyboardInterrupt
                    pass
            finally:
                for record in rolled.values():
                    account.put(record)
                self._check(settled=None if fault else False)
                if forget is not None:  # the next runs meet a service that forgot them
                    account.forget(before=account.clock.now() - timedelta(hours=forget))

        @contextmanager
        def _errors(self, api: str, share: float) -> Iterator[None]:
            self.emu.set_faults(api, error_rate=share)
            try:
                yield
            finally:
                self.emu.set_faults(api, error_rate=0.0)

        @contextmanager
        def _stop(self, api: str, after: int) -> Iterator[None]:
            """SIGTERM to this process while the run waits for ``api``'s call ``after`` + 1
            (if it makes that many), as the test's handler (``stopping``) takes it."""
            gate, over = self.emu.hold(api, after=after), threading.Event()

            def stop() -> None:
                while not over.is_set():
                    if gate.reached.wait(0.05):
                        os.kill(os.getpid(), signal.SIGTERM)
                        break
                gate.release()

            stopper = threading.Thread(target=stop)
            stopper.start()
            try:
                yield
            finally:
                over.set()
                stopper.join()
                del self.emu.gates[api]
                stopping.install()  # the request is spent: the next run starts clean

        def _sync(self, **options: object):  # type: ignore[no-untyped-def]
            client = ClientSettings(region="us-east-1", endpoint_url=self.emu.url,
                                    max_attempts=options.pop("max_attempts", None))  # fmt: skip
            opts = SyncOptions(source=self.source, started=self.emu.account.clock.now(),
                               **options)  # type: ignore[arg-type]  # fmt: skip
            return run_library_sync(db, opts, client)

        # --- what holds after each ---------------------------------------------------

        def _check(self, *, settled: bool | None) -> None:
            """``settled``: every operation is archived whole. False: it is, or a fault
            kept it from that and it is stored incomplete at its listed Status. None: the
            run may have failed, so the archive may lag the account, but it never lies."""
            (sid,) = read_rows(db, select(Source.id).where(Source.name == self.source))[0]
            rows = read_rows(db, select(*Operation.__table__.columns)
                             .where(Operation.source_id == sid))  # fmt: skip
            got = {r.id: to_archived(r, self.source).record for r in rows}
            i = IncompleteOperation  # each row once: (source, id) is both tables' key
            incomplete = dict(read_rows(db, select(i.id, i.status).where(i.source_id == sid)))
            held = got.keys() | incomplete.keys()
            assert held <= self.states.keys()  # nothing invented
            assert self.kept <= held, "an operation the archive held is gone"
            self.kept = held
            self.whole = {i: r for i, r in got.items() if i not in incomplete}
            for op_id, record in self.whole.items():  # never taken back to an older state
                if record in (states := self.states[op_id]):
                    at = states.index(record)
                    assert at >= self.reached.get(op_id, 0), (record, states)
                    self.reached[op_id] = at
            for op_id, record in got.items():  # a state the service gave, or an older one
                states = self.states[op_id]  # at the newer listed Status (GetOperation lagged)
                assert record in states or (op_id in incomplete and any(
                    record == replace(s, status=record.status) for s in states)), (record, states)  # fmt: skip
            for op in self.emu.account.all():
                if got.get(op.id) == op and op.id not in incomplete:
                    self.faulted.discard(op.id)
                elif settled is not None:  # a failed run's next one catches up
                    assert not settled and op.id in self.faulted, (op, got.get(op.id))
                    assert incomplete.get(op.id) == op.status  # kept at its listed Status

    return Night


def test_every_night_keeps_what_the_account_showed(archive, monkeypatch) -> None:
    from archiver.sync import run

    monkeypatch.setattr(run, "NOT_FOUND_DELAY", 0.01)  # the pause between tries, not a rule
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    stopping.install()  # as the command line does: a SIGTERM stops the run, not pytest
    try:
        run_state_machine_as_test(machine(archive), settings=settings(
            max_examples=6, stateful_step_count=10, deadline=None, derandomize=True,
            database=None, suppress_health_check=list(HealthCheck)))  # fmt: skip
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
