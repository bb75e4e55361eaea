"""The operation record shared by the API client, the archive and the emulator.

This is the one definition of an operation's fields (docs/design.md, "One record").
Each field says here, once, how the API names it, whether it sits in ``Targets``, how
wide its column is, whether it is free text and whether a later observation may change
it. The archive's columns (``models``), the upsert and its updatable set (``store``),
the JSON names (``to_api``/``from_api``) and the CSV columns (``export``) are all built
from ``FIELDS``, so a new field is added here, in a migration and in a test.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from dataclasses import fields as _fields
from datetime import datetime
from typing import Any, get_type_hints

from archiver.timeutil import utc_ms

TYPES = (
    "CREATE_NAMESPACE",
    "DELETE_NAMESPACE",
    "UPDATE_NAMESPACE",
    "UPDATE_SERVICE",
    "REGISTER_INSTANCE",
    "DEREGISTER_INSTANCE",
)
STATUSES = ("SUBMITTED", "PENDING", "SUCCESS", "FAIL")


def meta(
    *,
    api: str | None = None,
    target: str | None = None,
    size: int | None = None,
    free_text: bool = False,
    changes: bool = True,
) -> dict[str, Any]:
    """What the rest of the code needs to know about a record field.

    ``api``: its key in GetOperation's ``Operation``; ``target``: its key in ``Targets``
    instead; ``size``: the column's width (None: unbounded text); ``free_text``: text a
    spreadsheet might evaluate, guarded in CSV; ``changes``: a later observation may
    update it (O5: the id and CreateDate never change).
    """
    return {"api": api, "target": target, "size": size, "free_text": free_text,
            "changes": changes}  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class OperationRecord:
    """GetOperation's ``Operation`` (O1), in the archive's column order."""

    id: str = field(metadata=meta(api="Id", size=255, changes=False))
    type: str = field(metadata=meta(api="Type", size=32))
    status: str = field(metadata=meta(api="Status", size=16))
    error_code: str | None = field(default=None, metadata=meta(api="ErrorCode", free_text=True))
    error_message: str | None = field(
        default=None, metadata=meta(api="ErrorMessage", free_text=True)
    )
    create_date: datetime = field(metadata=meta(api="CreateDate", changes=False))
    update_date: datetime = field(metadata=meta(api="UpdateDate"))
    namespace_id: str | None = field(default=None, metadata=meta(target="NAMESPACE", size=64))
    service_id: str | None = field(default=None, metadata=meta(target="SERVICE", size=64))
    instance_id: str | None = field(default=None, metadata=meta(target="INSTANCE", size=64))
    owner_account: str | None = field(default=None, metadata=meta(api="OwnerAccount", size=12))

    @property
    def targets(self) -> dict[str, str]:
        """Targets as GetOperation returns them: only the keys that are present (O4)."""
        return {
            f.target: value
            for f in TARGETS
            if f.target and (value := getattr(self, f.name)) is not None
        }

    @classmethod
    def from_api(cls, op: dict[str, Any]) -> OperationRecord:
        """From botocore's parsed ``Operation`` (datetimes already parsed)."""
        targets = op.get("Targets") or {}
        values: dict[str, Any] = {}
        for f in FIELDS:
            value = targets.get(f.target) if f.target else op.get(f.api or "")
            values[f.name] = utc_ms(value) if f.is_date and value is not None else value
        return cls(**values)

    def to_api(self) -> dict[str, Any]:
        """GetOperation's ``Operation``; absent fields are omitted, as the service does."""
        out: dict[str, Any] = {
            f.api: value for f in FIELDS if f.api and (value := getattr(self, f.name)) is not None
        }
        if targets := self.targets:
            out["Targets"] = targets
        return out

    def values(self) -> dict[str, Any]:
        """Field name → value: the record's part of an ``operations`` row."""
        return {name: getattr(self, name) for name in NAMES}

    def evolve(self, **changes: Any) -> OperationRecord:
        return replace(self, **changes)


@dataclass(frozen=True)
class FieldSpec:
    """What ``meta`` declared for one field, with its Python type resolved."""

    name: str
    api: str | None
    target: str | None
    size: int | None
    free_text: bool
    changes: bool
    is_date: bool
    optional: bool


def _specs() -> tuple[FieldSpec, ...]:
    hints = get_type_hints(OperationRecord)
    out = []
    for f in _fields(OperationRecord):
        hint = hints[f.name]
        out.append(
            FieldSpec(
                name=f.name,
                is_date=datetime in (hint, *getattr(hint, "__args__", ())),
                optional=type(None) in getattr(hint, "__args__", ()),
                **f.metadata,
            )
        )
    return tuple(out)


FIELDS: tuple[FieldSpec, ...] = _specs()
NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)
TARGETS: tuple[FieldSpec, ...] = tuple(f for f in FIELDS if f.target)
#: Target key → field name, for the filters on NAMESPACE_ID and SERVICE_ID.
TARGET_KEYS: dict[str, str] = {f.target: f.name for f in TARGETS if f.target}
