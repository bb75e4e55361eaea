"""The archive's schema as typed SQLAlchemy 2.0 models; ``migrations/`` is its history.

Table and column names are a contract with people who query the file directly
(docs/design.md, "Schema"), so they change only through a migration and a note.
"""

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator

from archiver.records import FIELDS
from archiver.timeutil import utc_ms

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s__%(column_0_N_name)s",
    "uq": "uq_%(table_name)s__%(column_0_N_name)s",
    "ck": "ck_%(table_name)s__%(constraint_name)s",
    "fk": "fk_%(table_name)s__%(column_0_N_name)s__%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """UTC instants, millisecond-exact, readable in plain SQL on both engines.

    PostgreSQL gets ``timestamptz``. Elsewhere (SQLite) the value is fixed-width ISO-8601
    text, ``2026-01-31T12:00:00.000Z``, so that text order is time order and an index on
    the column serves range filters without any function call.
    """

    impl = String(24)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect):  # type: ignore[no-untyped-def]
        if dialect.name == "postgresql":
            return dialect.type_descriptor(DateTime(timezone=True))
        return dialect.type_descriptor(String(24))

    def process_bind_param(self, value: datetime | None, dialect: Dialect):  # type: ignore[no-untyped-def]
        if value is None:
            return None
        if value.tzinfo is not UTC:
            value = utc_ms(value)
        if dialect.name == "postgresql":
            return value
        # isoformat() is C-fast; the archive is bulk-written, so this line is hot.
        return value.isoformat(timespec="milliseconds")[:23] + "Z"

    def process_result_value(self, value, dialect: Dialect):  # type: ignore[no-untyped-def]
        if value is None:
            return None
        if isinstance(value, datetime):
            return utc_ms(value)
        parsed = datetime.fromisoformat(value)
        # What this type wrote (…sss'Z', 24 characters) is already UTC to the millisecond;
        # skip the normalisation on the hot path of streaming queries and exports.
        return parsed if len(value) == 24 and value[-1] == "Z" else utc_ms(parsed)


_Function = TypeVar("_Function", bound=type[FunctionElement[Any]])


def sql_function(kind: Any, default: str, postgresql: str) -> Callable[[_Function], _Function]:
    """Declare a SQL function of ours on its class: the type of its result, and its SQL
    as a template per dialect ({0}, {1}: its arguments; {args}: all of them, comma-
    separated); the default serves SQLite, where the archive stores dates as text. Its
    name is its class's, and its statements are cached as SQLAlchemy's own functions'."""

    def render(template: str) -> Any:
        def compile_(fn: FunctionElement[Any], compiler: Any, **kw: Any) -> str:
            args = [compiler.process(c, **kw) for c in fn.clauses]
            return template.format(*args, args=", ".join(args))

        return compile_

    def declared(element: _Function) -> _Function:
        it: Any = element
        it.type, it.name, it.inherit_cache = kind, element.__name__, True
        compiles(element)(render(default))
        compiles(element, "postgresql")(render(postgresql))
        return element

    return declared


@sql_function(String(), "{0}", "to_char(timezone('UTC', {0}), 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')")
class iso_text(FunctionElement[str]):
    """A UTCDateTime column as the text users see, ``2026-01-31T12:00:00.000Z``, in SQL.

    Exports render dates in the database rather than in Python (a million rows would
    otherwise build a million datetimes). SQLite already stores exactly this text.
    """


@sql_function(String(), "substr({0}, 1, 10)", "to_char(timezone('UTC', {0}), 'YYYY-MM-DD')")
class utc_day(FunctionElement[str]):
    """A UTCDateTime column's UTC day as text, ``2026-01-31``, in SQL (for GROUP BY)."""


@sql_function(Float(), "ROUND((julianday({1}) - julianday({0})) * 86400.0, 3)",
              "CAST(EXTRACT(EPOCH FROM ({1}) - ({0})) AS double precision)")  # fmt: skip
class seconds_between(FunctionElement[float]):
    """Seconds from the first UTCDateTime to the second, with the milliseconds, in SQL.
    SQLite's Julian days are off by some microseconds (1 s reads 0.99999): rounded to the
    dates' own milliseconds, as the views' durations are."""


@sql_function(String(), "printf({args})", "format({args})")
class text_format(FunctionElement[str]):
    """``text_format("%s,%s", a, b)``: one text from a format and its arguments, in SQL
    (SQLite's printf, PostgreSQL's format). A NULL argument is written as nothing.

    Rows rendered in the database (export's CSV lines, query's JSON objects) are one
    call each instead of a chain of ``||``, which built a new string per piece: a
    fifth of the SQL's time on a million rows. Only ``%s`` and ``%%`` are used, which
    both engines read alike.
    """


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}  # noqa: RUF012


class Source(Base):
    """One account/region pair (or emulator) that syncs into this archive."""

    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    region: Mapped[str | None] = mapped_column(String(64))
    endpoint_url: Mapped[str | None] = mapped_column(String(1024))
    created_at: Mapped[datetime]
    #: How the service reads UPDATE_DATE filter values, as the last run checked: "ms"
    #: (as documented) or "s"; NULL until a run has checked it.
    update_date_unit: Mapped[str | None] = mapped_column(String(2))


def _record_columns() -> dict[str, Any]:
    """The operation record's fields as columns (``records.FIELDS`` is their one definition)."""
    columns: dict[str, Any] = {}
    for f in FIELDS:
        kind: Any = UTCDateTime() if f.is_date else String(f.size) if f.size else Text()
        columns[f.name] = mapped_column(kind, primary_key=f.name == "id", nullable=f.optional)
    return columns


class Operation(Base):
    """The latest known state of one Cloud Map operation (GetOperation's record).

    Its record columns are declared by ``records.OperationRecord`` and added below,
    so that a field is defined once; code reads them as ``Operation.<name>`` as usual.
    """

    __tablename__ = "operations"

    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"), primary_key=True)
    locals().update(_record_columns())  # the class body's namespace: declarative maps these
    first_seen_at: Mapped[datetime] = mapped_column(sort_order=1)  # after the record's
    last_seen_at: Mapped[datetime] = mapped_column(sort_order=1)

    if TYPE_CHECKING:  # for type checkers only: the columns the record declares
        id: Mapped[str]
        type: Mapped[str]
        status: Mapped[str]
        create_date: Mapped[datetime]
        update_date: Mapped[datetime]
        namespace_id: Mapped[str | None]
        service_id: Mapped[str | None]

    # Every filter (docs/filters.md) is an equality on one column, usually combined with
    # an UPDATE_DATE window and ordered by update_date: (column, update_date) serves both,
    # and the order's tie-breaker (source_id, id) at the end lets the index give the rows
    # in the final order, with no sort after it.
    __table_args__ = (
        Index(None, "update_date", "source_id", "id"),
        Index(None, "status", "update_date", "source_id", "id"),
        Index(None, "type", "update_date", "source_id", "id"),
        Index(None, "namespace_id", "update_date", "source_id", "id"),
        Index(None, "service_id", "update_date", "source_id", "id"),
    )


class IncompleteOperation(Base):
    """A listed operation that GetOperation could not find: kept, never dropped.

    ListOperations gave its Id and Status; the rest is unknown until a later run's
    GetOperation finds it (the sync retries every run, whatever its window), when it
    moves to ``operations``. After the retry period it stays here, marked gone.
    """

    __tablename__ = "incomplete_operations"

    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"), primary_key=True)
    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    status: Mapped[str] = mapped_column(Text)  # as ListOperations listed it
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    gone_at: Mapped[datetime | None]  # given up on: not found for the whole retry period


class _Named:
    """A namespace or service as its List call summarises it, kept for ever by source.

    Operations name their targets by id only; these rows turn ids into the names an
    auditor knows, also after the namespace or service was deleted: a row is never
    removed, ``last_seen_at`` says when a listing last showed it, and ``gone_at`` when
    a complete listing first did not.
    """

    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(Text)  # the service's text: unbounded
    type: Mapped[str | None] = mapped_column(Text)
    arn: Mapped[str | None] = mapped_column(Text)
    resource_owner: Mapped[str | None] = mapped_column(Text)
    create_date: Mapped[datetime | None]
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    gone_at: Mapped[datetime | None]
    description: Mapped[str | None] = mapped_column(Text)
    extra: Mapped[str | None] = mapped_column(Text)  # the summary's other members, as JSON


class Namespace(_Named, Base):
    """A namespace of the source's account, or one shared with it (ListNamespaces)."""

    __tablename__ = "namespaces"


class Service(_Named, Base):
    """A service of the source's namespaces, shared ones included (ListServices)."""

    __tablename__ = "services"

    namespace_id: Mapped[str | None] = mapped_column(String(64))  # from ListServices by namespace


class OperationEvent(Base):
    """One observed (status, update_date) of an operation: the history the API forgets."""

    __tablename__ = "operation_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    source_id: Mapped[int] = mapped_column(Integer)
    operation_id: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(Text)
    update_date: Mapped[datetime]
    observed_at: Mapped[datetime]
    sync_run_id: Mapped[int | None] = mapped_column(ForeignKey("sync_runs.id"))

    __table_args__ = (
        UniqueConstraint("source_id", "operation_id", "status", "update_date"),
        ForeignKeyConstraint(
            ["source_id", "operation_id"], ["operations.source_id", "operations.id"]
        ),
    )


#: The API operations a sync calls, and the sync_runs column that counts each.
CALL_COLUMNS = {"ListOperations": "list_calls", "GetOperation": "get_calls",
                "ListNamespaces": "namespace_calls", "ListServices": "service_calls"}  # fmt: skip


class SyncRun(Base):
    """One `archiver sync` invocation: what it planned, what it did, how it ended."""

    __tablename__ = "sync_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"), index=True)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    outcome: Mapped[str] = mapped_column(String(16))
    since: Mapped[datetime | None]
    until: Mapped[datetime | None]
    windows: Mapped[int] = mapped_column(Integer, default=0)
    list_calls: Mapped[int] = mapped_column(Integer, default=0)
    get_calls: Mapped[int] = mapped_column(Integer, default=0)
    listed: Mapped[int] = mapped_column(Integer, default=0)
    inserted: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    vanished: Mapped[int] = mapped_column(Integer, default=0)
    namespace_calls: Mapped[int] = mapped_column(Integer, default=0)
    service_calls: Mapped[int] = mapped_column(Integer, default=0)
    late: Mapped[int] = mapped_column(Integer, default=0, doc="New operations stamped "
                                      "within what earlier runs read (listed late)")  # fmt: skip
    older: Mapped[int] = mapped_column(Integer, default=0, doc="Operations listed with a "
                                       "Status behind the archived one")  # fmt: skip
    error: Mapped[str | None] = mapped_column(Text)


class SyncState(Base):
    """Per source: the watermark, the lock's holder, and where an interrupted pass stood."""

    __tablename__ = "sync_state"

    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"), primary_key=True)
    watermark: Mapped[datetime | None]
    lock_holder: Mapped[str | None] = mapped_column(String(255))
    lock_since: Mapped[datetime | None]
    resume_start: Mapped[datetime | None]
    resume_end: Mapped[datetime | None]
    resume_token: Mapped[str | None] = mapped_column(Text)
