"""The emulator's account: operations in the service's fixed order, a clock, and the
moves of a live account (new operations, pending ones finishing).

Seeded and deterministic, so that a test or benchmark can name an account by its seed.
"""

from __future__ import annotations

import bisect
import random
import string
import threading
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from archiver.records import OperationRecord
from archiver.timeutil import now as wall_now
from archiver.timeutil import to_epoch_ms, utc_ms

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

    def owner_of(self, op: OperationRecord) -> str:
        """The account that owns the operation's namespace (the caller's by default)."""
        if not self.shared:
            return self.caller
        return op.owner_account or self.caller

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
                    new = op.evolve(status="FAIL", update_date=now, **self._error())
                else:
                    new = op.evolve(status="SUCCESS", update_date=now)
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

    def update(self, op_id: str, **changes: object) -> OperationRecord:
        with self._lock:
            new = self._ops[op_id].evolve(**changes)
            self.put(new)
            return new

    # --- generation ------------------------------------------------------------------------

    def _rid(self, prefix: str, n: int = 16) -> str:
        return prefix + "".join(self._rng.choices(string.ascii_lowercase + string.digits, k=n))

    def _home(self, service_id: str | None) -> str:
        return self._namespaces[self._services.index(service_id or "") % len(self._namespaces)]

    def _error(self) -> dict[str, str]:
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
            fields["instance_id"] = self._rid("i-", 12)

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
