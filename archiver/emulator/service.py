"""The Cloud Map operations API's semantics, independent of the wire protocol.

ListOperations follows docs/filters.md: validation (F1–F9, P1) with the same
``filters.validate`` the CLI uses, matching with ``Filters.matches`` (M1–M5), and
paging that scans MaxResults operations of the fixed order and then filters (P2–P6).
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import hmac
import json
import os
from typing import Any

from archiver.emulator.state import Account
from archiver.errors import FilterError
from archiver.filters import MAX_EPOCH_MS, validate
from archiver.timeutil import to_epoch_ms

MAX_TOKEN = 4096


class ApiError(Exception):
    """An error the service answers with: code, HTTP status, message."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message


def invalid(message: str) -> ApiError:
    return ApiError("InvalidInput", message)


def _namespace_test(entry: Any, caller: str) -> Any:
    """One ListNamespaces filter as a predicate over a Namespace; bad ones InvalidInput."""
    if not isinstance(entry, dict) or not isinstance(entry.get("Values"), list):
        raise invalid("a namespace filter has Name, Values and an optional Condition")
    name, values = entry.get("Name"), entry["Values"]
    condition = entry.get("Condition", "EQ")
    allowed = {"TYPE": ("EQ", "IN"), "NAME": ("EQ", "BEGINS_WITH"), "RESOURCE_OWNER": ("EQ",),
               "HTTP_NAME": ("EQ", "BEGINS_WITH")}  # fmt: skip
    if name not in allowed or condition not in allowed[name] or not values:
        raise invalid(f"namespace filter {name} {condition} is not supported")
    if name == "TYPE":
        return lambda n: n.type in values
    if name == "RESOURCE_OWNER":
        if values[0] not in ("SELF", "OTHER_ACCOUNTS"):
            raise invalid("RESOURCE_OWNER takes SELF or OTHER_ACCOUNTS")
        mine = values[0] == "SELF"
        return lambda n: (n.owner == caller) == mine
    if condition == "BEGINS_WITH":
        return lambda n: n.name.startswith(values[0])
    return lambda n: n.name == values[0]


def _service_test(entry: Any, caller: str) -> Any:
    """One ListServices filter as a predicate over a Service; bad ones InvalidInput."""
    if not isinstance(entry, dict) or not isinstance(entry.get("Values"), list):
        raise invalid("a service filter has Name, Values and an optional Condition")
    name, values = entry.get("Name"), entry["Values"]
    condition = entry.get("Condition", "EQ")
    if name not in ("NAMESPACE_ID", "RESOURCE_OWNER") or condition != "EQ" or len(values) != 1:
        raise invalid(f"service filter {name} {condition} is not supported")
    if name == "NAMESPACE_ID":  # an id, or the ARN of a shared namespace
        return lambda s: values[0] in (s.namespace_id, _arn("namespace", s.owner, s.namespace_id))
    if values[0] not in ("SELF", "OTHER_ACCOUNTS"):
        raise invalid("RESOURCE_OWNER takes SELF or OTHER_ACCOUNTS")
    mine = values[0] == "SELF"
    return lambda s: (s.owner == caller) == mine


def _arn(kind: str, owner: str, rid: str) -> str:
    return f"arn:aws:servicediscovery:us-east-1:{owner}:{kind}/{rid}"


def _seconds_read_as_ms(entry: Any) -> Any:
    """An UPDATE_DATE filter as a service reading seconds sees it: milliseconds sent to
    it are read as a time far in the future (clamped to the last one there is)."""
    if not isinstance(entry, dict) or entry.get("Name") != "UPDATE_DATE":
        return entry
    values = entry.get("Values")
    if not isinstance(values, list) or not all(isinstance(v, str) and v.isdigit() for v in values):
        return entry
    return {**entry, "Values": [str(min(int(v) * 1000, MAX_EPOCH_MS)) for v in values]}


class CloudMapApi:
    """ListOperations and GetOperation over one ``Account``."""

    def __init__(
        self, account: Account, *, secret: bytes | None = None, update_date_unit: str = "ms"
    ) -> None:
        self.account = account
        self._secret = secret or os.urandom(16)
        self._hidden: dict[str, int] = {}
        #: How this service reads UPDATE_DATE values: "ms" (F7) or "s", to prove that the
        #: sync finds out which rather than assuming it.
        self.update_date_unit = update_date_unit

    def hide_briefly(self, op_id: str, times: int = 1) -> None:
        """G3: the next ``times`` GetOperation calls for ``op_id`` answer not found."""
        self._hidden[op_id] = times

    def reveal(self) -> None:
        """Every hidden operation is found again from now on."""
        self._hidden.clear()

    # --- tokens (P4) ------------------------------------------------------------------------

    def _sign(self, payload: bytes) -> str:
        mac = hmac.new(self._secret, payload, hashlib.sha256).digest()[:12]
        return base64.urlsafe_b64encode(mac + payload).decode()

    def _token(self, position: tuple[int, str]) -> str:
        return self._sign(json.dumps(list(position), separators=(",", ":")).encode())

    def _position(self, token: Any) -> tuple[int, str]:
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN:
            raise invalid("NextToken is not valid")
        try:
            raw = base64.urlsafe_b64decode(token.encode())
        except (ValueError, UnicodeEncodeError):
            raise invalid("NextToken is not valid") from None
        mac, payload = raw[:12], raw[12:]
        good = hmac.new(self._secret, payload, hashlib.sha256).digest()[:12]
        if not hmac.compare_digest(mac, good):
            raise invalid("NextToken is not valid")
        created, op_id = json.loads(payload)
        return int(created), str(op_id)

    # --- operations -------------------------------------------------------------------------

    def list_operations(self, params: dict[str, Any]) -> dict[str, Any]:
        max_results = params.get("MaxResults", 100)
        if isinstance(max_results, bool) or not isinstance(max_results, int):
            raise invalid("MaxResults must be an integer")
        if not 1 <= max_results <= 100:  # P1
            raise invalid("MaxResults must be between 1 and 100")
        raw_filters = params.get("Filters") or []
        if not isinstance(raw_filters, list):
            raise invalid("Filters must be a list")
        if self.update_date_unit == "s":
            raw_filters = [_seconds_read_as_ms(f) for f in raw_filters]
        try:
            filters = validate(raw_filters)
        except FilterError as exc:
            raise invalid(exc.args[0]) from None
        after = self._position(params["NextToken"]) if "NextToken" in params else None
        scanned, more = self.account.scan(after, max_results)  # P2: scan, then filter
        out: dict[str, Any] = {
            "Operations": [{"Id": op.id, "Status": op.status}  # P6
                           for op in scanned if filters.matches(op)]
        }  # fmt: skip
        if more and scanned:  # P5
            last = scanned[-1]
            out["NextToken"] = self._token((to_epoch_ms(last.create_date), last.id))
        return out

    def get_operation(self, params: dict[str, Any]) -> dict[str, Any]:
        op_id = params.get("OperationId")
        if not isinstance(op_id, str) or not op_id:  # G1
            raise invalid("OperationId is required")
        if len(op_id) > 255:
            raise invalid("OperationId must be at most 255 characters")
        if self._hidden.get(op_id, 0) > 0:  # G3
            self._hidden[op_id] -= 1
            raise ApiError("OperationNotFound", f"Operation {op_id} not found")
        op = self.account.get(op_id)
        if op is None:  # G2
            raise ApiError("OperationNotFound", f"Operation {op_id} not found")
        # An operation of a namespace shared with the caller is found only when the
        # request names the namespace's owner (as AWS documents for OwnerAccount).
        asked = params.get("OwnerAccount") or self.account.caller
        if asked != self.account.owner_of(op):
            raise ApiError("OperationNotFound", f"Operation {op_id} not found")
        return {"Operation": op.to_api()}  # G4: to_api omits what is absent

    def _max_results(self, params: dict[str, Any]) -> int:
        max_results = params.get("MaxResults", 100)
        if isinstance(max_results, bool) or not isinstance(max_results, int):
            raise invalid("MaxResults must be an integer")
        if not 1 <= max_results <= 100:
            raise invalid("MaxResults must be between 1 and 100")
        return max_results

    def _catalog_page(self, items: list[Any], tests: list[Any], params: dict[str, Any],
                      summary: Any) -> tuple[list[dict[str, Any]], str | None]:  # fmt: skip
        """One page of a listing in (CreateDate, Id) order, scanned then filtered (P2)."""
        max_results = self._max_results(params)
        ordered = sorted(items, key=lambda n: (n.create_date, n.id))
        after = self._position(params["NextToken"]) if "NextToken" in params else None
        keys = [(to_epoch_ms(n.create_date), n.id) for n in ordered]
        start = bisect.bisect_right(keys, after) if after else 0
        scanned = ordered[start : start + max_results]
        page = [summary(n) for n in scanned if all(test(n) for test in tests)]
        token = None
        if start + max_results < len(ordered) and scanned:
            last = scanned[-1]
            token = self._token((to_epoch_ms(last.create_date), last.id))
        return page, token

    def list_namespaces(self, params: dict[str, Any]) -> dict[str, Any]:
        """TYPE (EQ, IN), NAME (EQ, BEGINS_WITH) and RESOURCE_OWNER (EQ: SELF or
        OTHER_ACCOUNTS) filters, scanned then filtered as ListOperations is (P2)."""
        tests = [_namespace_test(f, self.account.caller) for f in params.get("Filters") or []]
        page, token = self._catalog_page(self.account.namespaces, tests, params, lambda n: {
            "Id": n.id,
            "Arn": _arn("namespace", n.owner, n.id),
            "ResourceOwner": n.owner,
            "Name": n.name,
            "Type": n.type,
            "CreateDate": n.create_date,
        })  # fmt: skip
        return {"Namespaces": page, **({"NextToken": token} if token else {})}

    def list_services(self, params: dict[str, Any]) -> dict[str, Any]:
        """NAMESPACE_ID and RESOURCE_OWNER (EQ) filters, scanned then filtered (P2)."""
        tests = [_service_test(f, self.account.caller) for f in params.get("Filters") or []]
        page, token = self._catalog_page(self.account.services, tests, params, lambda s: {
            "Id": s.id,
            "Arn": _arn("service", s.owner, s.id),
            "ResourceOwner": s.owner,
            "Name": s.name,
            "Type": s.type,
            "CreateDate": s.create_date,
            "CreatedByAccount": s.owner,
        })  # fmt: skip
        return {"Services": page, **({"NextToken": token} if token else {})}

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        if operation == "ListOperations":
            return self.list_operations(params)
        if operation == "GetOperation":
            return self.get_operation(params)
        if operation == "ListNamespaces":
            return self.list_namespaces(params)
        if operation == "ListServices":
            return self.list_services(params)
        raise ApiError("UnknownOperationException", f"Operation {operation} is not supported")
