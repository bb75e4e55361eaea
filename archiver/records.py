"""The operation record shared by the API client, the archive and the emulator.

One shape for GetOperation's ``Operation`` (O1), so that the sync, the store, the
emulator and the filters' ``matches()`` all speak of the same fields.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

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
TARGET_KEYS = {"NAMESPACE": "namespace_id", "SERVICE": "service_id", "INSTANCE": "instance_id"}


@dataclass(frozen=True, slots=True)
class OperationRecord:
    id: str
    type: str
    status: str
    create_date: datetime
    update_date: datetime
    error_code: str | None = None
    error_message: str | None = None
    namespace_id: str | None = None
    service_id: str | None = None
    instance_id: str | None = None
    owner_account: str | None = None

    @property
    def targets(self) -> dict[str, str]:
        """Targets as GetOperation returns them: only the keys that are present (O4)."""
        return {
            key: value
            for key, attr in TARGET_KEYS.items()
            if (value := getattr(self, attr)) is not None
        }

    @classmethod
    def from_api(cls, op: dict[str, Any]) -> OperationRecord:
        """From botocore's parsed ``Operation`` (datetimes already parsed)."""
        targets = op.get("Targets") or {}
        return cls(
            id=op["Id"],
            type=op["Type"],
            status=op["Status"],
            create_date=utc_ms(op["CreateDate"]),
            update_date=utc_ms(op["UpdateDate"]),
            error_code=op.get("ErrorCode"),
            error_message=op.get("ErrorMessage"),
            namespace_id=targets.get("NAMESPACE"),
            service_id=targets.get("SERVICE"),
            instance_id=targets.get("INSTANCE"),
            owner_account=op.get("OwnerAccount"),
        )

    def to_api(self) -> dict[str, Any]:
        """GetOperation's ``Operation``; absent fields are omitted, as the service does."""
        out: dict[str, Any] = {"Id": self.id}
        if self.owner_account is not None:
            out["OwnerAccount"] = self.owner_account
        out["Type"] = self.type
        out["Status"] = self.status
        if self.error_code is not None:
            out["ErrorCode"] = self.error_code
        if self.error_message is not None:
            out["ErrorMessage"] = self.error_message
        out["CreateDate"] = self.create_date
        out["UpdateDate"] = self.update_date
        if self.targets:
            out["Targets"] = self.targets
        return out

    def evolve(self, **changes: Any) -> OperationRecord:
        return replace(self, **changes)
