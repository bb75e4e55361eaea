"""The operation record shared by the API client, the archive and the emulator.

This is the one definition of an operation's fields (docs/design.md, "One record").
Each field says here, once, how the API names it, whether it sits in ``Targets``, how
wide its column is, whether it is free text and whether a later observation may change
it. The archive's columns (``store.models``), the upsert and its updatable set
(``store.write``), the JSON names (``to_api``/``from_api``) and the CSV columns
(``read.outputs``) are all built from ``FIELDS``: a new field is added here, in a
migration and in a test.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from dataclasses import fields as _fields
from datetime import datetime
from typing import Any, get_type_hints

from archiver.timeutil import utc_ms

TYPES = ("CREATE_NAMESPACE", "DELETE_NAMESPACE", "UPDATE_NAMESPACE", "UPDATE_SERVICE",
         "REGISTER_INSTANCE", "DEREGISTER_INSTANCE")  # fmt: skip
STATUSES = ("SUBMITTED", "PENDING", "SUCCESS", "FAIL")
#: The fields whose values come from a closed set, with the values this code knows.
#: A value outside it is kept as the service sent it; outputs write a known one as it
#: is and treat any other as text that may need escaping.
KNOWN_VALUES = {"type": TYPES, "status": STATUSES}


def meta(*, api: str | None = None, target: str | None = None, size: int | None = None,
         free_text: bool = False, changes: bool = True,
         csv: bool = True) -> dict[str, Any]:  # fmt: skip
    """What the rest of the code needs to know about a record field.

    ``api``: its key in GetOperation's ``Operation``; ``target``: its key in ``Targets``
    instead; ``size``: the column's width (None: unbounded text); ``free_text``: text a
    spreadsheet might evaluate, guarded in CSV; ``changes``: a later observation may
    update it (O5: the id and CreateDate never change); ``csv``: an export column (the
    CSV header is a contract, so a field that is not one says so).
    """
    return {"api": api, "target": target, "size": size, "free_text": free_text,
            "changes": changes, "csv": csv}  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class OperationRecord:
    """GetOperation's ``Operation`` (O1), in the archive's column order."""

    id: str = field(metadata=meta(api="Id", size=255, changes=False))
    type: str = field(metadata=meta(api="Type"))  # the service's text: unbounded
    status: str = field(metadata=meta(api="Status"))
    error_code: str | None = field(default=None, metadata=meta(api="ErrorCode", free_text=True))
    error_message: str | None = field(
        default=None, metadata=meta(api="ErrorMessage", free_text=True)
    )
    create_date: datetime = field(metadata=meta(api="CreateDate", changes=False))
    update_date: datetime = field(metadata=meta(api="UpdateDate"))
    namespace_id: str | None = field(default=None, metadata=meta(target="NAMESPACE", size=64))
    service_id: str | None = field(default=None, metadata=meta(target="SERVICE", size=64))
    instance_id: str | None = field(default=None, metadata=meta(target="INSTANCE"))
    owner_account: str | None = field(default=None, metadata=meta(api="OwnerAccount"))
    #: What the fields above do not hold, as JSON: members AWS added to Operation since
    #: this code, and Targets keys beyond the three known (under "Targets"). None when
    #: there is nothing more, so that the record rebuilds as it was received.
    extra: str | None = field(default=None, metadata=meta(csv=False))

    @property
    def targets(self) -> dict[str, str]:
        """Targets as GetOperation returns them: only the keys that are present (O4)."""
        return {
            f.target: value
            for f in TARGETS
            if f.target and (value := getattr(self, f.name)) is not None
        }

    @classmethod
    def from_api(cls, op: dict[str, Any], raw: dict[str, Any] | None = None) -> OperationRecord:
        """From botocore's parsed ``Operation`` (datetimes already parsed), and the raw
        one as the service sent it, whose members botocore's model does not know."""
        targets = op.get("Targets") or {}
        values: dict[str, Any] = {}
        for f in FIELDS:
            if f.api or f.target:
                value = targets.get(f.target) if f.target else op.get(f.api or "")
                values[f.name] = utc_ms(value) if f.is_date and value is not None else value
        values["extra"] = _extra(raw if raw is not None else op)
        return cls(**values)

    def to_api(self) -> dict[str, Any]:
        """GetOperation's ``Operation``; absent fields are omitted, as the service does."""
        out: dict[str, Any] = {
            f.api: value for f in FIELDS if f.api and (value := getattr(self, f.name)) is not None
        }
        if targets := self.targets:
            out["Targets"] = targets
        return with_extra(out, self.extra)

    def values(self) -> dict[str, Any]:
        """Field name → value: the record's part of an ``operations`` row."""
        return {name: getattr(self, name) for name in NAMES}


@dataclass(frozen=True)
class FieldSpec:
    """What ``meta`` declared for one field, with its Python type resolved."""

    name: str
    api: str | None
    target: str | None
    size: int | None
    free_text: bool
    changes: bool
    csv: bool
    is_date: bool
    optional: bool


def _specs() -> tuple[FieldSpec, ...]:
    hints = get_type_hints(OperationRecord)
    out = []
    for f in _fields(OperationRecord):
        args = getattr(hints[f.name], "__args__", ())  # of X | None: (X, NoneType)
        out.append(FieldSpec(name=f.name, is_date=datetime in (hints[f.name], *args),
                             optional=type(None) in args, **f.metadata))  # fmt: skip
    return tuple(out)


FIELDS: tuple[FieldSpec, ...] = _specs()
NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)
TARGETS: tuple[FieldSpec, ...] = tuple(f for f in FIELDS if f.target)
#: Target key → field name, for the filters on NAMESPACE_ID and SERVICE_ID.
TARGET_KEYS: dict[str, str] = {f.target: f.name for f in TARGETS if f.target}
_KNOWN_MEMBERS = frozenset({*(f.api for f in FIELDS if f.api), "Targets"})


def with_extra(members: dict[str, Any], extra: str | None) -> dict[str, Any]:
    """``members`` and what an ``extra`` cell holds: its members after them, its
    Targets keys merged into Targets."""
    more = json.loads(extra) if extra else {}
    if targets := more.pop("Targets", None):
        more["Targets"] = {**members.get("Targets", {}), **targets}
    return {**members, **more}


def _extra(raw: dict[str, Any]) -> str | None:
    """The members of a raw ``Operation`` that no field holds, as sorted JSON."""
    more: dict[str, Any] = {k: v for k, v in raw.items() if k not in _KNOWN_MEMBERS}
    targets = {k: v for k, v in (raw.get("Targets") or {}).items() if k not in TARGET_KEYS}
    if targets:
        more["Targets"] = targets
    return _as_json(more)


def _as_json(members: dict[str, Any]) -> str | None:
    """Members no column holds, as sorted JSON (None for none): an ``extra`` cell."""
    if not members:
        return None
    return json.dumps(members, sort_keys=True, ensure_ascii=False, default=jsonable)


def jsonable(value: Any) -> Any:
    """``json.dumps``' default: a datetime (CBOR's timestamps) as epoch seconds, as the
    service's JSON sends dates."""
    if isinstance(value, datetime):
        return value.timestamp()
    raise TypeError(type(value).__name__)


@dataclass(frozen=True)
class Listed:
    """A namespace or service as ListNamespaces or ListServices summarises it."""

    id: str
    name: str
    type: str | None
    arn: str | None
    resource_owner: str | None
    create_date: datetime | None
    description: str | None = None
    namespace_id: str | None = None  # a service's, when listed by namespace
    extra: str | None = None  # every other member of the summary, as sorted JSON

    @classmethod
    def from_api(cls, item: dict[str, Any], *, namespace_id: str | None = None) -> Listed:
        """A NamespaceSummary or ServiceSummary as botocore parses it."""
        created = item.get("CreateDate")
        more = {k: v for k, v in item.items() if k not in _SUMMARY_MEMBERS}
        return cls(
            id=item["Id"],
            name=item["Name"],
            type=item.get("Type"),
            arn=item.get("Arn"),
            resource_owner=item.get("ResourceOwner"),
            create_date=utc_ms(created) if isinstance(created, datetime) else None,
            description=item.get("Description"),
            namespace_id=namespace_id,
            extra=_as_json(more),
        )


#: The summary members that have a column of their own.
_SUMMARY_MEMBERS = frozenset({"Id", "Name", "Type", "Arn", "ResourceOwner", "CreateDate",
                              "Description"})  # fmt: skip
