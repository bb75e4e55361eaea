"""Building archives and operations for tests, through the real store."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from archiver.records import OperationRecord
from archiver.store import write as store
from archiver.store.archive import Archive

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def op(
    n: int | str,
    *,
    type: str = "REGISTER_INSTANCE",
    status: str = "SUCCESS",
    minutes: int = 0,
    ms: int = 0,
    namespace: str | None = "ns-1",
    service: str | None = "srv-1",
    instance: str | None = "i-1",
    error_code: str | None = None,
    error_message: str | None = None,
    owner: str | None = None,
) -> OperationRecord:
    when = T0 + timedelta(minutes=minutes, milliseconds=ms)
    return OperationRecord(
        id=str(n) if isinstance(n, str) else f"op-{n:06d}",
        type=type,
        status=status,
        create_date=when - timedelta(seconds=5),
        update_date=when,
        error_code=error_code,
        error_message=error_message,
        namespace_id=namespace,
        service_id=service,
        instance_id=instance,
        owner_account=owner,
    )


def fill(db: str, records: Iterable[OperationRecord], *, source: str = "test@us-east-1") -> None:
    """Store ``records`` as one sync would (the archive must be at head)."""
    with Archive(db) as archive, archive.writer.begin() as conn:
        sid = store.ensure_source(conn, source, region="us-east-1")
        store.upsert_operations(conn, sid, list(records), seen_at=T0, run_id=None)


def read_rows(db: str, stmt) -> list:  # type: ignore[no-untyped-def]
    """Run one read-only statement against the archive and return all its rows."""
    with Archive(db) as archive, archive.reader.connect() as conn:
        return conn.execute(stmt).all()


def small_files(limit: int):  # type: ignore[no-untyped-def]
    """A child process's ``preexec_fn`` after which no file of its grows past ``limit``
    bytes (RLIMIT_FSIZE): the kernel refuses the write as on a full disk, or takes part
    of it, with no root needed to fill one."""
    import resource
    import signal

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limited


def cli_sync(runner, db: str, url: str, *extra: str):  # type: ignore[no-untyped-def]
    """`archiver sync` against an emulator URL, through the CLI."""
    from tests.conftest import invoke

    return invoke(runner, "--db", db, "sync", "--endpoint-url", url, "--region", "us-east-1",
                  *extra)  # fmt: skip


def archived(db: str) -> dict[str, OperationRecord]:
    """Every archived operation, as records, by id."""
    from sqlalchemy import select

    from archiver.read.query import to_archived
    from archiver.store.models import Operation

    rows = read_rows(db, select(*Operation.__table__.columns))
    return {r.id: to_archived(r, "").record for r in rows}


def assert_archive_equals(db: str, account) -> None:
    """The archive holds exactly the account's operations, every field to the ms (O1)."""
    got = archived(db)
    want = {op.id: op for op in account.all()}
    assert got.keys() == want.keys()
    diff = [i for i in want if got[i] != want[i]]
    assert not diff, (diff[:3], [got[i] for i in diff[:1]], [want[i] for i in diff[:1]])


def revision(db: str) -> str | None:
    """The archive's schema revision, as `archiver db current` reads it."""
    with Archive(db) as archive:
        return archive.revision()


def run_library_sync(db: str, opts, client_settings, *, on_page=None, session=None):  # type: ignore[no-untyped-def]
    """One sync through the library, as `archiver sync` runs it: client, archive, run."""
    from archiver.sync.run import sync_source

    return sync_source(db, opts, client_settings, on_page=on_page, botocore_session=session)
