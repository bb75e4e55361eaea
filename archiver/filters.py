"""THE filter semantics of ListOperations, defined once (docs/filters.md).

``parse`` reads the AWS CLI's ``--filters`` forms, ``validate`` applies F1–F9 and
returns ``Filters``, whose three renderings come from the same rule table:
``to_request()`` for the sync's ListOperations calls, ``to_sql()`` for queries and
exports, ``matches()`` for the emulator and as the tests' oracle. Tests prove that
``to_sql()`` and ``matches()`` agree.
"""

import json
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, and_, true

from archiver import guards
from archiver.errors import FilterError, UsageError
from archiver.records import STATUSES, TYPES, OperationRecord
from archiver.timeutil import from_epoch_ms, parse_iso, to_epoch_ms

EQ, IN, BETWEEN = "EQ", "IN", "BETWEEN"
CONDITIONS = (EQ, IN, BETWEEN, "BEGINS_WITH")
MAX_VALUE_LEN = 255
#: The last millisecond that a datetime can hold (9999-12-31T23:59:59.999Z).
MAX_EPOCH_MS = 253_402_300_799_999
#: F7: an integer below this is before 1973 as milliseconds — probably seconds.
SECONDS_SUSPECT_BELOW = 10**11


@dataclass(frozen=True)
class Rule:
    """How one filter Name behaves: which conditions, which values, which field."""

    conditions: tuple[str, ...]
    attr: str  # the OperationRecord attribute and the operations column
    allowed: tuple[str, ...] | None = None  # F6: the valid values, case-sensitive

    def hint(self) -> str:
        return " or ".join(self.conditions)


RULES: dict[str, Rule] = {
    # F4: the only (Name, Condition) pairs accepted; M2/M3 say what each compares.
    "NAMESPACE_ID": Rule((EQ,), "namespace_id"),
    "SERVICE_ID": Rule((EQ,), "service_id"),
    "STATUS": Rule((EQ, IN), "status", STATUSES),
    "TYPE": Rule((EQ, IN), "type", TYPES),
    "UPDATE_DATE": Rule((BETWEEN,), "update_date"),
}


@dataclass(frozen=True)
class Filter:
    """One filter as given (F1): Condition defaults to EQ."""

    name: str
    values: tuple[str, ...]
    condition: str = EQ


@dataclass(frozen=True)
class Filters:
    """A validated filter set: every filter applies (F8, M1)."""

    items: tuple[Filter, ...] = ()
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def to_request(self) -> list[dict[str, Any]]:
        """boto3's ``ListOperations(Filters=...)``; UPDATE_DATE in epoch ms (F7)."""
        return [
            {"Name": f.name, "Condition": f.condition, "Values": list(f.values)} for f in self.items
        ]

    def to_sql(self, table: Any) -> ColumnElement[bool]:
        """A SQLAlchemy expression over ``table`` (the store's ``Operation``, passed in so
        that the core never imports the store); values are bound parameters."""
        clauses = [_clause(f, table) for f in self.items]
        return and_(true(), *clauses) if clauses else true()

    def to_sql_arms(self, table: Any) -> list[ColumnElement[bool]]:
        """``to_sql()`` cut into disjoint conditions, one per distinct value of its first
        IN list, so that their UNION ALL holds each row of ``to_sql()`` exactly once.

        Why: asked for ``STATUS IN (PENDING, SUBMITTED)`` newest first, SQLite cannot
        tell rare values from common ones (it has no value histograms) and walks the
        whole update_date index; one arm per value lets each arm read its own
        (column, update_date) index in order, and the arms merge without a sort.
        """
        split = next(
            (f for f in self.items if f.condition != BETWEEN and len(set(f.values)) > 1), None
        )
        if split is None:
            return [self.to_sql(table)]
        column = _column(split, table)
        rest = [_clause(f, table) for f in self.items if f is not split]
        return [and_(true(), *rest, column == v) for v in dict.fromkeys(split.values)]

    def matches(self, op: OperationRecord) -> bool:
        """The same semantics in plain Python, for the emulator and as test oracle."""
        return all(
            _PREDICATES[f.condition](getattr(op, RULES[f.name].attr), f.values) for f in self.items
        )

    def __bool__(self) -> bool:
        return bool(self.items)


def _column(f: Filter, table: Any) -> Any:
    return getattr(table, RULES[f.name].attr)


def _clause(f: Filter, table: Any) -> ColumnElement[bool]:
    column: ColumnElement[Any] = _column(f, table)
    if f.condition == BETWEEN:  # M4: both ends inclusive, ms exact
        lo, hi = (from_epoch_ms(int(v)) for v in f.values)
        return column.between(lo, hi)
    if f.condition == IN or len(f.values) > 1:  # M2
        return column.in_(f.values)
    return column == f.values[0]  # M2, M3: a missing Targets key is NULL and matches nothing


_PREDICATES: dict[str, Callable[[Any, Sequence[str]], bool]] = {
    EQ: lambda value, values: value is not None and value == values[0],
    IN: lambda value, values: value is not None and value in values,
    # M4, M5: the stored latest UpdateDate, milliseconds, both ends inclusive
    BETWEEN: lambda value, bounds: int(bounds[0]) <= to_epoch_ms(value) <= int(bounds[1]),
}


# --- validation (F1–F9) -----------------------------------------------------------------


def validate(raw: Iterable[dict[str, Any] | Filter], *, allow_iso: bool = False,
             known: dict[str, Sequence[str]] | None = None) -> Filters:  # fmt: skip
    """Check every rule, in order, and name the first offending filter (F9).

    ``allow_iso`` is the CLI's F7 convenience: ISO-8601 in UPDATE_DATE values becomes
    epoch milliseconds before anything else. The emulator, like the service, takes
    only milliseconds.
    """
    items: list[Filter] = []
    warnings: list[str] = []
    for index, entry in enumerate(raw, start=1):
        f = entry if isinstance(entry, Filter) else _from_mapping(index, entry)
        items.append(_validate_one(index, f, allow_iso, warnings, known or {}))
    return Filters(tuple(items), tuple(warnings))


def _fail(index: int, name: str | None, message: str) -> FilterError:
    label = f"filter {index} ({name})" if name else f"filter {index}"
    return FilterError(f"{label}: {message}")


def _from_mapping(index: int, entry: Any) -> Filter:
    if not isinstance(entry, dict):
        raise _fail(index, None, "a filter is an object with Name, Values and Condition")
    name, values, condition = entry.get("Name"), entry.get("Values"), entry.get("Condition", EQ)
    if unknown := set(entry) - {"Name", "Values", "Condition"}:
        key = sorted(unknown)[0]
        raise _fail(
            index, name, f"unknown key {key!r}; a filter has Name, Values and Condition (F1)"
        )
    if not isinstance(name, str):
        raise _fail(index, None, "Name is required (F1)")
    if values is None:
        raise _fail(index, name, "Values is required (F1)")
    if not isinstance(values, list):
        raise _fail(index, name, "Values must be a list of strings (F3)")
    if not all(isinstance(v, str) for v in values):
        raise _fail(index, name, "every value must be a string (F3)")
    if not isinstance(condition, str):
        raise _fail(index, name, "Condition must be a string (F4)")
    return Filter(name, tuple(values), condition)


def _validate_one(
    index: int, f: Filter, allow_iso: bool, warnings: list[str], known: dict[str, Sequence[str]]
) -> Filter:
    def fail(message: str) -> FilterError:
        return _fail(index, f.name, message)

    if f.name not in RULES:  # F2
        raise fail(f"unknown filter name {f.name!r}; use one of {', '.join(RULES)} (F2)")
    rule = RULES[f.name]
    if f.condition not in CONDITIONS:  # F4: an unknown condition
        raise fail(f"unknown condition {f.condition!r}; use {rule.hint()} (F4)")
    if f.condition not in rule.conditions:  # F4: a known condition on the wrong name
        raise fail(f"condition {f.condition} is not supported for {f.name}; use {rule.hint()} (F4)")
    if not f.values:  # F3
        raise fail("Values must not be empty (F3)")
    if any(not 1 <= len(value) <= MAX_VALUE_LEN for value in f.values):  # F3
        raise fail(f"every value must be 1 to {MAX_VALUE_LEN} characters long (F3)")
    count = len(f.values)  # F5
    if f.condition == EQ and count != 1:
        raise fail(f"EQ takes exactly one value, got {count} (F5)")
    if f.condition == BETWEEN and count != 2:
        raise fail(f"BETWEEN takes exactly two values, start first, got {count} (F5)")
    values = f.values
    for value in values:  # F6: a closed set, and what the archive holds beside it
        if rule.allowed is not None and value not in (*rule.allowed, *known.get(f.name, ())):
            hint = " (did you mean SUCCESS?)" if value.upper() == "SUCCEED" else ""
            listed = ", ".join(rule.allowed)
            raise fail(f"{value!r} is not a valid {f.name.lower()}{hint}; use one of {listed} (F6)")
    if f.name == "UPDATE_DATE":  # F7
        values = tuple(_epoch_ms(index, v, allow_iso, warnings) for v in values)
        if int(values[0]) > int(values[1]):  # M4: valid, and nothing can match
            warnings.append(f"filter {index} (UPDATE_DATE): the start is after the end, so "
                            "nothing can match (M4)")  # fmt: skip
    return Filter(f.name, values, f.condition)


def _epoch_ms(index: int, value: str, allow_iso: bool, warnings: list[str]) -> str:
    if re.fullmatch(r"[0-9]+", value):
        ms = int(value)
        if ms > MAX_EPOCH_MS:
            raise _fail(
                index, "UPDATE_DATE", f"{value} is beyond year 9999 in epoch milliseconds (F7)"
            )
        if ms < SECONDS_SUSPECT_BELOW:
            warnings.append(f"filter {index} (UPDATE_DATE): {value} is before 1973 as epoch "
                            "milliseconds; did you give seconds? (F7)")  # fmt: skip
        return str(ms)
    if allow_iso and not re.fullmatch(r"[+-]?[0-9]+", value):
        try:
            return str(to_epoch_ms(parse_iso(value)))
        except Exception:
            pass
    forms = "epoch milliseconds" + (" or ISO-8601" if allow_iso else "")
    raise _fail(index, "UPDATE_DATE", f"{value!r} is not a time; use {forms} (F7)")


# --- parsing the AWS CLI's --filters forms ------------------------------------------------


def parse(args: str | Sequence[str], *, allow_iso: bool = True,
          known: dict[str, Sequence[str]] | None = None) -> Filters:  # fmt: skip
    """Parse one or more ``--filters`` arguments and validate them together.

    Each argument is shorthand (``Name=STATUS,Condition=IN,Values=PENDING,SUCCESS``,
    also ``Values=[A,B]``), JSON (a list of filter objects, or one object), or
    ``file://path`` holding either.
    """
    if isinstance(args, str):
        args = [args]
    raw: list[dict[str, Any]] = []
    for arg in args:
        raw.extend(parse_raw(arg))
    return validate(raw, allow_iso=allow_iso, known=known)


def from_command_line(
    given: Sequence[str],
    more: Sequence[str],
    *,
    stored: Callable[[], dict[str, Sequence[str]]] | None = None,
) -> Filters:
    """``--filters A B …`` as a shell delivers it: the first structure is the option's
    value, the rest arrive as arguments (as pasted from an ``aws`` command).

    F6 refuses a TYPE or STATUS the service model does not list; but AWS adds values
    (a new operation type, a new status), and the archive keeps what it received. So
    a value the archive holds is accepted: ``stored`` reads those, and only when a
    filter needs them. A value neither knows is still InvalidInput.
    """
    if more and not given:
        raise UsageError(f"unexpected argument {more[0]!r}; filters go after --filters")
    if not (args := [*given, *more]):
        return Filters()
    try:
        return parse(args)
    except FilterError as exc:
        if stored is None or "(F6)" not in str(exc):
            raise
        return parse(args, known=stored())


def parse_raw(arg: str) -> list[dict[str, Any]]:
    """One ``--filters`` argument into filter mappings, before validation."""
    text = arg.strip()
    if text.startswith("file://"):
        path = os.path.expanduser(text[len("file://") :])  # as typed: '' is no file
        try:  # through the read guard: a regular file, at most 1 MB
            text = guards.read_text(path, what="filters file", flag="--filters file://").strip()
        except UsageError as exc:
            raise FilterError(str(exc)) from None
    if not text:
        raise FilterError("--filters is empty")
    if text[0] in "[{":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FilterError(
                f"--filters is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
            ) from None
        if isinstance(data, dict):
            data = [data]
        if not isinstance(data, list):
            raise FilterError("--filters JSON must be a list of filter objects")
        return data
    return [_parse_shorthand(text)]


_KEY = re.compile(r"\s*([A-Za-z][A-Za-z0-9_]*)\s*=")
_LIST_KEYS = {"Values"}


def _parse_shorthand(text: str) -> dict[str, Any]:
    """The AWS CLI shorthand for one structure: ``Key=value,Key=[a,b],Key=a,b``."""
    out: dict[str, Any] = {}
    pos = 0
    while pos < len(text):
        if not (m := _KEY.match(text, pos)):
            raise FilterError(
                f"--filters shorthand: expected Key=Value at {_near(text, pos)} "
                "(e.g. Name=STATUS,Condition=IN,Values=PENDING,SUCCESS)"
            )
        key = m.group(1)
        if key not in ("Name", "Values", "Condition"):
            raise FilterError(
                f"--filters shorthand: unknown key {key!r}; use Name, Condition and Values"
            )
        if key in out:
            raise FilterError(f"--filters shorthand: {key} given twice")
        pos = m.end()
        if text[pos : pos + 1] == "[":
            values, pos = _parse_bracketed(text, pos)
        else:
            first, pos = _parse_scalar(text, pos)
            values = [first]
            # Continuation: `Values=a,b` — further items until the next `Key=`.
            while (
                text[pos : pos + 1] == "," and pos + 1 < len(text) and not _KEY.match(text, pos + 1)
            ):
                item, pos = _parse_scalar(text, pos + 1)
                values.append(item)
        if pos < len(text):
            if text[pos] != ",":
                raise FilterError(f"--filters shorthand: expected ',' at {_near(text, pos)}")
            pos += 1
            if pos == len(text):
                raise FilterError("--filters shorthand: trailing ','")
        if key in _LIST_KEYS:
            out[key] = values
        elif len(values) != 1:
            raise FilterError(f"--filters shorthand: {key} takes one value")
        else:
            out[key] = values[0]
    return out


def _near(text: str, pos: int) -> str:
    """A few characters where the parse stopped: never the rest of a file, which may be a key."""
    return repr(text[pos : pos + 20]) + ("…" if len(text) > pos + 20 else "")


def _parse_scalar(text: str, pos: int) -> tuple[str, int]:
    if pos < len(text) and text[pos] in "'\"":
        quote = text[pos]
        end = text.find(quote, pos + 1)
        if end < 0:
            raise FilterError(f"--filters shorthand: unbalanced {quote} at {_near(text, pos)}")
        return text[pos + 1 : end], end + 1
    end = pos
    while end < len(text) and text[end] not in ",[]":
        end += 1
    if end < len(text) and text[end] in "[]":
        raise FilterError(f"--filters shorthand: unexpected {_near(text, end)}")
    return text[pos:end].strip(), end


def _parse_bracketed(text: str, start: int) -> tuple[list[str], int]:
    pos = start + 1  # past '['
    values: list[str] = []
    if text[pos : pos + 1] == "]":
        return values, pos + 1
    while pos < len(text):
        item, pos = _parse_scalar_in_list(text, pos)
        values.append(item)
        if text[pos : pos + 1] == "]":
            return values, pos + 1
        pos += 1  # ','
    raise FilterError(f"--filters shorthand: unbalanced '[' at {_near(text, start)}")


def _parse_scalar_in_list(text: str, pos: int) -> tuple[str, int]:
    if pos < len(text) and text[pos] in "'\"":
        return _parse_scalar(text, pos)
    end = pos
    while end < len(text) and text[end] not in ",]":
        if text[end] == "[":
            raise FilterError(f"--filters shorthand: nested '[' at {_near(text, end)}")
        end += 1
    return text[pos:end].strip(), end
