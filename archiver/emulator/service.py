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
import random
import string
import threading
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from archiver.errors import FilterError
from archiver.filters import MAX_EPOCH_MS, validate
from archiver.records import OperationRecord
from archiver.timeutil import now as wall_now
from archiver.timeutil import to_epoch_ms, utc_ms

MAX_TOKEN = 4096


class ApiError(Exception):
    """An error the service answers with: code, HTTP status, message; ``counted``: the
    emulator's counter of its calls (``Counters``)."""

    def __init__(self, code: str, message: str, status: int = 400, *,
                 counted: str = "rejected") -> None:  # fmt: skip
        super().__init__(message)
        self.code, self.status, self.message, self.counted = code, status, message, counted


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
        return _owner_test(values, caller)
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
    return _owner_test(values, caller)


def _owner_test(values: list[Any], caller: str) -> Any:
    """RESOURCE_OWNER EQ SELF or OTHER_ACCOUNTS, over a namespace or a service."""
    if values[0] not in ("SELF", "OTHER_ACCOUNTS"):
        raise invalid("RESOURCE_OWNER takes SELF or OTHER_ACCOUNTS")
    mine = values[0] == "SELF"
    return lambda item: (item.owner == caller) == mine


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
        self._stale: dict[str, tuple[int, OperationRecord]] = {}
        #: Answer AccessDeniedException, not OperationNotFound, for an operation of a
        #: shared namespace asked for without OwnerAccount (AWS does not document which).
        self.deny_without_owner = False
        #: How this service reads UPDATE_DATE values: "ms" (F7) or "s", to prove that the
        #: sync finds out which rather than assuming it.
        self.update_date_unit = update_date_unit

    def hide_briefly(self, op_id: str, times: int = 1) -> None:
        """G3: the next ``times`` GetOperation calls for ``op_id`` answer not found."""
        self._hidden[op_id] = times

    def lag(self, snapshot: OperationRecord, times: int = 1) -> None:
        """A replica that lags: the next ``times`` GetOperation calls for the snapshot's
        id answer it (an older state) instead of the operation as it is."""
        self._stale[snapshot.id] = (times, snapshot)

    def reveal(self) -> None:
        """Every operation is found, as it is, from now on: none hidden, none lagging."""
        self._hidden.clear()
        self._stale.clear()

    # --- tokens (P4) ------------------------------------------------------------------------

    def _token(self, position: tuple[int, str]) -> str:
        payload = json.dumps(list(position), separators=(",", ":")).encode()
        mac = hmac.new(self._secret, payload, hashlib.sha256).digest()[:12]
        return base64.urlsafe_b64encode(mac + payload).decode()

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
        max_results = self._max_results(params)
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
        caller = self.account.caller
        owner = (op.owner_account or caller) if self.account.shared else caller
        if (params.get("OwnerAccount") or caller) != owner:
            if self.deny_without_owner and "OwnerAccount" not in params:
                raise ApiError("AccessDeniedException", f"not authorized for {op_id}")
            raise ApiError("OperationNotFound", f"Operation {op_id} not found")
        times, snapshot = self._stale.get(op_id, (0, op))
        if times:
            self._stale[op_id] = (times - 1, snapshot)
        return {"Operation": (snapshot if times else op).to_api()}  # G4: absent fields omitted

    def _max_results(self, params: dict[str, Any]) -> int:
        """P1: at most 100 a page."""
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
            "Description": f"namespace {n.name}",
            "ServiceCount": sum(1 for s in self.account.services if s.namespace_id == n.id),
            "Properties": {"DnsProperties": {"SOA": {"TTL": 60}},
                           "HttpProperties": {"HttpName": n.name}},
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
            "Description": f"service {s.name}",
            "InstanceCount": 0,
            "DnsConfig": {"RoutingPolicy": "MULTIVALUE", "DnsRecords": [{"Type": "A", "TTL": 60}]},
            "HealthCheckConfig": {"Type": "HTTP", "ResourcePath": "/health", "FailureThreshold": 3},
            "HealthCheckCustomConfig": {"FailureThreshold": 1},
            "CreateDate": s.create_date,
            "CreatedByAccount": s.owner,
        })  # fmt: skip
        return {"Services": page, **({"NextToken": token} if token else {})}

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        answers = {
            "ListOperations": self.list_operations,
            "GetOperation": self.get_operation,
            "ListNamespaces": self.list_namespaces,
            "ListServices": self.list_services,
        }
        if operation not in answers:
            raise ApiError("UnknownOperationException", f"Operation {operation} is not supported")
        return answers[operation](params)


# Weights of a realistic account: mostly instance churn, some service and namespace work.
TYPE_WEIGHTS = {
    "REGISTER_INSTANCE": 40,
    "DEREGISTER_INSTANCE": 30,
    "UPDATE_SERVICE": 10,
    "CREATE_NAMESPACE": 8,
    "UPDATE_NAMESPACE": 7,
    "DELETE_NAMESPACE": 5,
}
ERROR_CODES = ("INTERNAL_FAILURE", "CANNOT_CREATE_HOSTED_ZONE", "DUPLICATE_REQUEST", "=ERR")
# Free text that breaks naive CSV writers and tempts spreadsheets to evaluate formulas.
ERROR_MESSAGES = (
    "Service limit exceeded, please retry",
    'The "hosted zone" already exists, id Z123',
    "Health check failed:\nconnection refused",
    "Ünïcödé: 服务不可用 🚫",
    '=HYPERLINK("http://example.invalid","click")',
    "+CMD|' /C calc'!A0",
    "-2+3",
    "@SUM(1+1)",
    "\tindented reason",
)


class Clock:
    """Wall time plus an offset that tests can move; millisecond precision."""

    def __init__(self, start: datetime | None = None) -> None:
        self._offset = (utc_ms(start) - wall_now()) if start else timedelta(0)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return utc_ms(wall_now() + self._offset)

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            self._offset += delta


def _key(op: OperationRecord) -> tuple[int, str]:
    """P3: the emulator's fixed order is (CreateDate ascending, Id ascending)."""
    return (to_epoch_ms(op.create_date), op.id)


#: The accounts that share namespaces with the caller when sharing is on.
OTHER_ACCOUNTS = ("123456789012", "210987654321")
NAMESPACE_TYPES = ("DNS_PRIVATE", "DNS_PUBLIC", "HTTP")
SERVICE_TYPES = ("DNS_HTTP", "HTTP", "DNS")


@dataclass(frozen=True)
class Namespace:
    """One namespace, as ListNamespaces summarises it."""

    id: str
    name: str
    type: str
    owner: str  # its ResourceOwner: the caller's account, or one that shares it
    create_date: datetime


@dataclass(frozen=True)
class Service:
    """One service, as ListServices summarises it; it lives in ``namespace_id``."""

    id: str
    name: str
    type: str
    namespace_id: str
    owner: str  # its namespace's owner
    create_date: datetime


class Account:
    """All operations of one account, thread-safe, kept in the service's fixed order.

    ``caller`` is the account making the calls. With ``shared`` > 0 that share of its
    namespaces is owned by OTHER_ACCOUNTS and shared with it (AWS RAM): their
    operations (and those of their services) carry that owner as OwnerAccount, and
    GetOperation finds them only when asked with it. With ``shared`` = 0 (the default)
    a random 30% of operations name another owner but are found without it.
    """

    def __init__(
        self,
        clock: Clock | None = None,
        seed: int = 0,
        *,
        caller: str = "111122223333",
        shared: float = 0.0,
    ) -> None:
        self.clock = clock or Clock()
        self.caller = caller
        self.shared = shared
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._keys: list[tuple[int, str]] = []
        self._ops: dict[str, OperationRecord] = {}
        self._namespaces = [self._rid("ns-") for _ in range(20)]
        self._services = [self._rid("srv-") for _ in range(100)]
        # Namespaces' own attributes come from a second generator, so that the
        # operations of a given seed are the same whether or not anything asks.
        meta = random.Random(seed + 1)
        n_shared = round(shared * len(self._namespaces))
        start = self.clock.now() - timedelta(days=400)
        self.namespaces = [
            Namespace(
                id=ns,
                name=f"ns{i}.example.internal",
                type=meta.choice(NAMESPACE_TYPES),
                owner=OTHER_ACCOUNTS[i % len(OTHER_ACCOUNTS)] if i < n_shared else caller,
                create_date=start + timedelta(days=i),
            )
            for i, ns in enumerate(self._namespaces)
        ]
        self._owner = {n.id: n.owner for n in self.namespaces}
        self.services = [
            Service(
                id=srv,
                name=f"svc{i}",
                type=meta.choice(SERVICE_TYPES),
                namespace_id=(home := self._home(srv)),
                owner=self._owner[home],
                create_date=start + timedelta(days=len(self._namespaces) + i),
            )
            for i, srv in enumerate(self._services)
        ]

    # --- reads -----------------------------------------------------------------------------

    def get(self, op_id: str) -> OperationRecord | None:
        with self._lock:
            return self._ops.get(op_id)

    def scan(self, after: tuple[int, str] | None, count: int) -> tuple[list[OperationRecord], bool]:
        """The next ``count`` operations after position ``after``, and whether more remain."""
        with self._lock:
            start = bisect.bisect_right(self._keys, after) if after else 0
            keys = self._keys[start : start + count]
            return [self._ops[k[1]] for k in keys], start + count < len(self._keys)

    def all(self) -> list[OperationRecord]:
        with self._lock:
            return [self._ops[k[1]] for k in self._keys]

    def __len__(self) -> int:
        return len(self._keys)

    # --- writes ----------------------------------------------------------------------------

    def put(self, op: OperationRecord) -> None:
        with self._lock:
            old = self._ops.get(op.id)
            if old is not None:
                if _key(old) != _key(op):
                    raise ValueError("CreateDate never changes (O5)")
            else:
                bisect.insort(self._keys, _key(op))
            self._ops[op.id] = op

    def seed(
        self, count: int, *, days: float = 90, end: datetime | None = None
    ) -> list[OperationRecord]:
        """``count`` operations spread over the ``days`` before ``end`` (default: now)."""
        end = utc_ms(end) if end else self.clock.now()
        span_ms = int(days * 86_400_000)
        made = []
        for _ in range(count):
            created = end - timedelta(milliseconds=self._rng.randrange(max(span_ms, 1)))
            made.append(self._make(created, end))
        for op in made:
            self.put(op)
        return made

    def add_operations(self, count: int, *, pending_share: float = 0.3) -> list[OperationRecord]:
        """New operations, created just now; some still SUBMITTED or PENDING."""
        now = self.clock.now()
        made = []
        for _ in range(count):
            created = now - timedelta(milliseconds=self._rng.randrange(1, 60_000))
            if self._rng.random() < pending_share:
                status = self._rng.choice(("SUBMITTED", "PENDING"))
            else:
                status = "FAIL" if self._rng.random() < 0.08 else "SUCCESS"
            made.append(self._make(created, now, status=status))
        for op in made:
            self.put(op)
        return made

    def finish_pending(
        self, count: int | None = None, *, fail_share: float = 0.2
    ) -> list[OperationRecord]:
        """Finish up to ``count`` unfinished operations now: SUCCESS or FAIL, new UpdateDate."""
        with self._lock:
            pending = [op for op in self.all() if op.status in ("SUBMITTED", "PENDING")]
            chosen = pending if count is None else pending[:count]
            now = self.clock.now()
            done = []
            for op in chosen:
                if self._rng.random() < fail_share:
                    new = replace(op, status="FAIL", update_date=now, **self._error())
                else:
                    new = replace(op, status="SUCCESS", update_date=now)
                self.put(new)
                done.append(new)
            return done

    def delete_namespace(self, ns_id: str) -> None:
        """The namespace and its services leave the listings; their operations stay."""
        with self._lock:
            self.namespaces = [n for n in self.namespaces if n.id != ns_id]
            self.services = [s for s in self.services if s.namespace_id != ns_id]

    def delete_service(self, srv_id: str) -> None:
        with self._lock:
            self.services = [s for s in self.services if s.id != srv_id]

    def rename_namespace(self, ns_id: str, name: str) -> None:
        """Give a namespace another name (what a test needs for a hostile one)."""
        with self._lock:
            self.namespaces = [replace(n, name=name) if n.id == ns_id else n
                               for n in self.namespaces]  # fmt: skip

    def forget(self, before: datetime) -> None:
        """Cloud Map forgets an operation a while after its last change: those updated
        before ``before`` leave the listings and GetOperation (the archive keeps them)."""
        with self._lock:
            self._ops = {i: op for i, op in self._ops.items() if op.update_date >= before}
            self._keys = [k for k in self._keys if k[1] in self._ops]

    def update(self, op_id: str, **changes: Any) -> OperationRecord:
        with self._lock:
            new = replace(self._ops[op_id], **changes)
            self.put(new)
            return new

    # --- generation ------------------------------------------------------------------------

    def _rid(self, prefix: str, n: int = 16) -> str:
        return prefix + "".join(self._rng.choices(string.ascii_lowercase + string.digits, k=n))

    def _home(self, service_id: str | None) -> str:
        return self._namespaces[self._services.index(service_id or "") % len(self._namespaces)]

    def _error(self) -> dict[str, Any]:
        return {
            "error_code": self._rng.choice(ERROR_CODES),
            "error_message": self._rng.choice(ERROR_MESSAGES),
        }

    def _make(self, created: datetime, now: datetime, status: str | None = None) -> OperationRecord:
        rng = self._rng
        op_type = rng.choices(list(TYPE_WEIGHTS), weights=list(TYPE_WEIGHTS.values()))[0]
        age = now - created
        if status is None:
            if age < timedelta(minutes=10) and rng.random() < 0.3:
                status = rng.choice(("SUBMITTED", "PENDING"))
            else:
                status = "FAIL" if rng.random() < 0.08 else "SUCCESS"
        if status in ("SUCCESS", "FAIL"):
            took = timedelta(milliseconds=rng.randrange(200, 120_000))
            update = min(created + took, now)
        else:
            update = min(created + timedelta(milliseconds=rng.randrange(0, 500)), now)
        fields: dict[str, str | None] = {}
        ns = rng.choice(self._namespaces)
        if op_type.endswith("NAMESPACE"):
            fields["namespace_id"] = ns
        elif op_type == "UPDATE_SERVICE":
            fields["service_id"] = rng.choice(self._services)
        else:
            fields["service_id"] = rng.choice(self._services)
            # a few ids per service, so that instances come and go and come back
            fields["instance_id"] = self._rid("i-", 12)[:3]

        if status == "FAIL":
            fields.update(self._error())
        op_id = self._rid("", 32) + "-" + self._rid("", 8)  # drawn in the order seeds expect
        owner = rng.choice(OTHER_ACCOUNTS) if rng.random() < 0.3 else None
        if self.shared:  # the owner of its namespace (a service's: by its index)
            home = ns if "namespace_id" in fields else self._home(fields["service_id"])
            owner = None if self._owner[home] == self.caller else self._owner[home]
        return OperationRecord(
            id=op_id,
            type=op_type,
            status=status,
            create_date=created,
            update_date=update,
            owner_account=owner,
            **fields,
        )
