"""The Cloud Map client, built from the usual AWS settings, its typed calls, and
their pace (``RateLimit``, ``AdaptiveLimit``).

This is the edge where botocore's exceptions become the project's own: missing
credentials or a broken profile are bad input (exit 2), a refused NextToken is
``TokenRefused``, and any other failure after botocore's retries is ``WorkFailed``
naming the call. Nothing past this module knows botocore's exception classes.
Retries are botocore's ``standard`` mode (older botocore defaults to ``legacy``,
which does not retry a 400 ``RequestLimitExceeded``). Credentials are left to
boto3's chain and never logged or stored.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from archiver import __version__, stopping
from archiver.errors import TokenRefused, UsageError, WorkFailed, first_line
from archiver.guards import excerpt, redact
from archiver.records import Listed, OperationRecord
from archiver.sync import wire
from archiver.sync.options import ClientSettings, check_endpoint, resolve_region, session
from archiver.timeutil import to_epoch_ms

if TYPE_CHECKING:  # the stubs' client: the calls and their arguments, checked by mypy
    from mypy_boto3_servicediscovery import ServiceDiscoveryClient

    CloudMapClient = ServiceDiscoveryClient

PAGE_SIZE = 100  # P1: the most the service gives per page

_CREDENTIALS = "use --profile, the AWS_* variables or an instance role"  # where they come from
_CONFIGURED = "AWS_ENDPOINT_URL_SERVICEDISCOVERY, AWS_ENDPOINT_URL or the profile's endpoint_url"


@contextlib.contextmanager
def translated(call: str, *, token_sent: bool = False) -> Iterator[None]:
    """botocore's exceptions, raised in ``call``, as the project's own."""
    from botocore import exceptions as bx

    try:
        yield
    except (bx.NoCredentialsError, bx.PartialCredentialsError):
        raise UsageError(f"no AWS credentials found: {_CREDENTIALS}") from None
    except bx.ClientError as exc:
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "?"), excerpt(str(error.get("Message", "")), 500)
        if token_sent and code == "InvalidInput":
            raise TokenRefused(f"{call}: the service refused NextToken: {message}") from None
        said = f"{code}: {message}" if message else code  # a bare 500 has no message
        raise WorkFailed(redact(f"{call} failed: {said}")) from None
    except bx.BotoCoreError as exc:
        said = f"{call} failed: {excerpt(first_line(exc), 500)}{_system_reason(exc)}"
        raise WorkFailed(redact(said)) from None


def _system_reason(exc: BaseException) -> str:
    """The system's words under botocore's and urllib3's, for a call that could not
    connect: " (Connection refused)", " (Too many open files)", or "" when none."""
    cause: BaseException | None = exc
    for _ in range(5):  # botocore's error, urllib3's, then the socket's
        cause = (cause.__cause__ or cause.__context__) if cause else None
        if isinstance(cause, OSError) and cause.strerror:
            return f" ({cause.strerror})"
    return ""


#: Attempts per call when neither --max-attempts, AWS_MAX_ATTEMPTS nor the profile
#: says: more than botocore's 3, which lose calls when many are throttled.
DEFAULT_ATTEMPTS = 12
_MODES = ("standard", "adaptive", "legacy")


def retry_settings(settings: ClientSettings, profile: dict[str, Any]) -> tuple[int, str]:
    """Attempts and retry mode as every AWS SDK resolves them: the option, then
    AWS_MAX_ATTEMPTS / AWS_RETRY_MODE, then the profile's max_attempts / retry_mode;
    our defaults last (12 attempts, standard mode). A bad value is bad input."""
    raw = settings.max_attempts or os.environ.get("AWS_MAX_ATTEMPTS") or profile.get("max_attempts")
    try:
        attempts = int(raw) if raw is not None else DEFAULT_ATTEMPTS
    except ValueError:
        raise UsageError(f"max_attempts {raw!r} (AWS_MAX_ATTEMPTS or the profile's) is not "
                         "a whole number") from None  # fmt: skip
    if not 1 <= attempts <= 50:
        raise UsageError(f"max_attempts {attempts} is not from 1 to 50")
    mode = settings.retry_mode or os.environ.get("AWS_RETRY_MODE") or profile.get("retry_mode")
    if mode is not None and mode not in _MODES:
        raise UsageError(f"retry_mode {mode!r} is not one of {', '.join(_MODES)}")
    return attempts, mode or "standard"


def _check_credentials(boto3_session: Any) -> None:
    """Resolve the credentials when the client is made, not at its first call, so that
    missing ones are bad input before the archive is touched (a new archive file was
    made, then the run said "no AWS credentials"), and an SSO profile whose token is
    missing or expired says what fixes it (it said "Error loading SSO Token", exit 1)."""
    from botocore import exceptions as bx

    name = boto3_session.profile_name  # the one botocore read: --profile, AWS_PROFILE, …
    try:  # a stop ends the wait: a profile's role is assumed by botocore's own STS client
        if (credentials := wire.waited(boto3_session.get_credentials)) is None:
            raise UsageError(f"no AWS credentials found for profile {name!r}: add them to it, "
                             f"or {_CREDENTIALS}")  # fmt: skip
        wire.waited(credentials.get_frozen_credentials)
    except (bx.SSOTokenLoadError, bx.SSOError, bx.TokenRetrievalError) as exc:
        raise UsageError(
            f"the AWS SSO session of profile {name!r} is missing or expired "
            f"({first_line(exc)}): run `aws sso login --profile {name}`"
        ) from None
    except bx.BotoCoreError as exc:  # a credential_process that fails, a source_profile gone
        raise UsageError(f"no AWS credentials from profile {name!r}: {first_line(exc)}") from None
    except bx.ClientError as exc:  # STS refused the profile's role: the service's answer
        with translated(f"{exc.operation_name} for profile {name!r}"):
            raise


def make_client(settings: ClientSettings, *, pool_size: int = 10,
                botocore_session: Any = None) -> CloudMapClient:  # fmt: skip
    """A servicediscovery client; a missing profile or region is bad input (exit 2)."""
    import botocore.session
    from botocore.config import Config

    botocore_session = botocore_session or botocore.session.get_session()
    botocore_session.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=wire.api_timestamp
    )
    boto3_session = session(settings, botocore_session)
    if not (region := resolve_region(settings, boto3_session.region_name)):
        raise UsageError("no AWS region: pass --region or set AWS_REGION")
    attempts, mode = retry_settings(settings, botocore_session.get_scoped_config())
    config = Config(
        retries={"mode": mode, "total_max_attempts": attempts},  # N attempts in all
        # botocore's socket limits; call_timeout bounds the whole attempt (``wire``)
        connect_timeout=5,
        read_timeout=min(30, settings.call_timeout),
        max_pool_connections=pool_size,
        user_agent_appid=f"archiver-{__version__}",
        # Our requests are built here, not by users; validating them is a large share
        # of botocore's CPU per call (bench/README.md).
        parameter_validation=False,
    )
    kwargs: dict[str, Any] = {}
    if settings.access_key:
        kwargs = {"aws_access_key_id": settings.access_key,
                  "aws_secret_access_key": settings.secret_key}  # fmt: skip
    else:
        _check_credentials(boto3_session)
        if settings.role_arn:
            _assume_role(boto3_session, settings, region)
    from botocore.exceptions import InvalidRegionError

    try:
        client = boto3_session.client(
            "servicediscovery",
            region_name=region,
            # Only --endpoint-url is ours to pass: botocore resolves the rest as the
            # AWS CLI does (AWS_ENDPOINT_URL_SERVICEDISCOVERY, AWS_ENDPOINT_URL, the
            # profile's endpoint_url, AWS_IGNORE_CONFIGURED_ENDPOINT_URLS).
            endpoint_url=settings.endpoint_url,
            config=config,
            **kwargs,
        )
    except InvalidRegionError:
        raise UsageError(f"{region!r} is not a valid AWS region name") from None
    except ValueError as exc:  # a configured endpoint_url (--endpoint-url is checked before)
        raise UsageError(f"{_CONFIGURED}: {redact(first_line(exc))}") from None
    check_endpoint(_CONFIGURED, client.meta.endpoint_url)  # one botocore took: ftp://…
    wire.install(client, call_timeout=settings.call_timeout)
    return client  # type: ignore[no-any-return]


def _assume_role(boto3_session: Any, settings: ClientSettings, region: str) -> None:
    """From now on the session's calls are the role's: STS AssumeRole's credentials,
    fetched at the run's first call (a refused role is a failed run, which `status
    --check` sees) and refreshed by botocore before they expire (a run may outlast an hour)."""
    from botocore.credentials import DeferredRefreshableCredentials

    sts = boto3_session.client("sts", region_name=region)  # AWS_ENDPOINT_URL_STS applies
    wire.install(sts, call_timeout=settings.call_timeout)
    extra = {"ExternalId": settings.external_id} if settings.external_id else {}

    first: list[WorkFailed | None] = []  # how the first fetch ended (None: with credentials)

    def fetch() -> dict[str, str]:
        if first and first[0]:  # the run's first calls wait in turn: one refusal serves all
            raise first[0]
        try:
            with translated("AssumeRole"):
                got = sts.assume_role(RoleArn=settings.role_arn,
                                      RoleSessionName=settings.session_name, **extra)  # fmt: skip
        except WorkFailed as exc:
            first[:] = first or [exc]
            raise
        first[:] = first or [None]
        c = got["Credentials"]
        return {"access_key": c["AccessKeyId"], "secret_key": c["SecretAccessKey"],
                "token": c["SessionToken"], "expiry_time": c["Expiration"].isoformat()}  # fmt: skip

    credentials = DeferredRefreshableCredentials(refresh_using=fetch, method="assume-role")
    boto3_session._session._credentials = credentials  # the session's own, for every client


def organization_accounts(settings: ClientSettings) -> list[str]:
    """The ids of the organization's active accounts (Organizations ListAccounts)."""
    boto3_session = session(settings)
    _check_credentials(boto3_session)
    org = boto3_session.client("organizations", region_name=resolve_region(settings, None)
                               or boto3_session.region_name or "us-east-1")  # fmt: skip
    found = []
    for answer in _paged("ListAccounts", org.list_accounts, {}):
        found += [a["Id"] for a in answer.get("Accounts", [])
                  if a.get("State", a.get("Status")) == "ACTIVE"]  # fmt: skip
    return found


def describe_access(settings: ClientSettings) -> dict[str, Any]:
    """Where a run would go and as whom, without a call: the resolved region, the
    endpoint botocore chose, and where the credentials come from (their provider's
    name, never a secret), resolved once. For ``--dry-run``, so a role_arn is named,
    not assumed: AssumeRole is a call, and may fail where the plan should not."""
    import botocore.session

    botocore_session = botocore.session.get_session()
    client = make_client(replace(settings, role_arn=None), botocore_session=botocore_session)
    found = None if settings.access_key else botocore_session.get_credentials()
    method = "explicit" if settings.access_key else found.method if found else "none found"
    role = f", then assume-role {settings.role_arn}" if settings.role_arn else ""
    return {"region": client.meta.region_name, "endpoint": redact(client.meta.endpoint_url),
            "credentials": method + role}  # fmt: skip


def source_endpoint(given: str | None, resolved: str) -> str | None:
    """The endpoint a source records (``store.read_from``): the one given, else the one
    botocore found configured (AWS_ENDPOINT_URL, a profile's endpoint_url); None for
    AWS's own in any partition and form (FIPS, dual-stack, a VPC endpoint), as before."""
    from botocore.loaders import create_loader  # botocore's partitions: their DNS suffixes

    outputs = [p["outputs"] for p in create_loader().load_data("partitions")["partitions"]]
    aws = tuple(f".{o[k]}" for o in outputs for k in ("dnsSuffix", "dualStackDnsSuffix"))
    return given or (None if (urlsplit(resolved).hostname or "").endswith(aws) else resolved)


@dataclass(frozen=True)
class Page:
    """One ListOperations answer: (Id, Status) pairs and the token after it."""

    operations: list[tuple[str, str]]
    next_token: str | None
    retries: int


class RateLimit:
    """At most ``rate`` calls per second across threads (``--max-rps``)."""

    def __init__(self, rate: float | None) -> None:
        self._interval = 1.0 / rate if rate else 0.0
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self._interval:
            return
        with self._lock:
            now = time.monotonic()
            delay = self._next - now
            self._next = max(now, self._next) + self._interval
        if delay > 0:
            stopping.sleep(delay)


UNLIMITED = RateLimit(None)  # no --max-rps: every call goes at once


def window_filter(start: datetime, end: datetime, unit: str = "ms") -> list[dict[str, Any]]:
    """UPDATE_DATE BETWEEN [start, end] in epoch milliseconds (F7, M4 inclusive), or in
    seconds for a service found to read seconds (widened to whole seconds, so nothing
    at either edge is missed)."""
    lo, hi = to_epoch_ms(start), to_epoch_ms(end)
    if unit == "s":
        lo, hi = lo // 1000, -(-hi // 1000)
    return [{"Name": "UPDATE_DATE", "Condition": "BETWEEN", "Values": [str(lo), str(hi)]}]


def first_page(
    client: CloudMapClient, filters: list[dict[str, Any]], *, limit: RateLimit = UNLIMITED
) -> list[str]:
    """The ids of one ListOperations page (the first) under ``filters``."""
    params = {"MaxResults": PAGE_SIZE, **({"Filters": filters} if filters else {})}
    answer = next(_paged("ListOperations", client.list_operations, params, limit=limit))
    return [o["Id"] for o in answer.get("Operations", [])]


def _paged(call: str, send: Any, params: dict[str, Any], *, token: str | None = None,
           limit: RateLimit = UNLIMITED) -> Iterator[dict[str, Any]]:  # fmt: skip
    """Every answer of one pass of a paged call, following NextToken until it is absent.

    A token handed back twice in one pass would page for ever: the pass stops with
    WorkFailed, and since its last page never comes, nothing of it moves a watermark.
    """
    seen: set[str | None] = {token} if token else set()
    while True:
        page_params = {**params, **({"NextToken": token} if token else {})}
        limit.wait()
        with translated(call, token_sent=token is not None):
            answer: dict[str, Any] = send(**page_params)
        if (token := answer.get("NextToken")) in seen:
            raise WorkFailed(
                f"{call} returned a NextToken it had already returned in this pass; "
                "stopping instead of paging for ever"
            )
        seen.add(token)
        yield answer
        if not token:
            return


def list_operations(client: CloudMapClient, start: datetime, end: datetime, *,
                    token: str | None = None, limit: RateLimit = UNLIMITED,
                    unit: str = "ms") -> Iterator[Page]:  # fmt: skip
    """Every page of one pass over the window, following NextToken across empty pages (P2)."""
    params = {"Filters": window_filter(start, end, unit), "MaxResults": PAGE_SIZE}
    for answer in _paged("ListOperations", client.list_operations, params, token=token,
                         limit=limit):  # fmt: skip
        yield Page([(o["Id"], o["Status"]) for o in answer.get("Operations", [])],
                   answer.get("NextToken"),
                   answer.get("ResponseMetadata", {}).get("RetryAttempts", 0))  # fmt: skip


def list_catalog(client: CloudMapClient, kind: str, *, namespace: Listed | None = None,
                 limit: RateLimit = UNLIMITED) -> list[Listed]:  # fmt: skip
    """Every namespace (``kind`` "namespaces") or service ("services").

    ``namespace``: only the services of that namespace (NAMESPACE_ID: its ARN, which
    names a shared one too), which ServiceSummary does not otherwise tell.
    Both calls page as ListOperations does (P2): a page may be empty with more to come.
    """
    call, send, key = (
        ("ListNamespaces", client.list_namespaces, "Namespaces")
        if kind == "namespaces"
        else ("ListServices", client.list_services, "Services")
    )
    params: dict[str, Any] = {"MaxResults": PAGE_SIZE}
    if namespace:
        params["Filters"] = [{"Name": "NAMESPACE_ID", "Condition": "EQ",
                              "Values": [namespace.arn or namespace.id]}]  # fmt: skip
    found: dict[str, Listed] = {}
    home = namespace.id if namespace else None
    for answer in _paged(call, send, params, limit=limit):
        for item in answer.get(key, []):
            if item["Id"]:  # Id and Name are text (``wire``); an empty Id names nothing
                found[item["Id"]] = Listed.from_api(item, namespace_id=home)
    return list(found.values())


def service_namespace(client: CloudMapClient, service_id: str, *,
                      limit: RateLimit = UNLIMITED) -> str | None:  # fmt: skip
    """The namespace of a service, by GetService: only for a service that ListServices
    by NAMESPACE_ID put in several namespaces (a server that ignores the filter)."""
    limit.wait()
    with translated("GetService"):
        found = client.get_service(Id=service_id).get("Service", {}).get("NamespaceId")
    return found if isinstance(found, str) else None


def get_operation(client: CloudMapClient, op_id: str, *, owner: str | None = None,
                  limit: RateLimit = UNLIMITED) -> tuple[OperationRecord | None, int]:  # fmt: skip
    """The full record, or None when the service does not know the id (G2); and retries.

    ``owner``: the account that owns the operation's namespace, required for namespaces
    shared with ours.
    """
    limit.wait()
    params = {"OperationId": op_id, **({"OwnerAccount": owner} if owner else {})}
    with translated("GetOperation"):
        try:
            answer = client.get_operation(**params)
        except client.exceptions.ClientError as exc:  # OperationNotFound (G2) is a 4xx too
            if not _unreadable(exc.response):
                raise
            return None, 0
    retries = answer.get("ResponseMetadata", {}).get("RetryAttempts", 0)
    raw = cast("dict[str, Any] | None", answer.get(wire.RAW_OPERATION))  # as sent, all members
    if (got := answer["Operation"]["Id"]) != op_id:  # a proxy's or a cache's mix-up
        endpoint = redact(client.meta.endpoint_url)
        raise wire.JunkAnswer(f"GetOperation: {endpoint} answered operation "
                              f"{excerpt(repr(got))} when asked for {op_id!r}; nothing of it "
                              "was stored")  # fmt: skip
    return OperationRecord.from_api(cast("dict[str, Any]", answer["Operation"]), raw), retries


def _unreadable(response: dict[str, Any]) -> bool:
    """An answer that says this caller may not read the operation as asked: any 4xx
    but throttling and a malformed request. AWS does not document which code an
    operation of a shared namespace gets without OwnerAccount; AccessDeniedException
    is as likely as OperationNotFound, and either means: try the owners."""
    code = response.get("Error", {}).get("Code")
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return 400 <= status < 500 and code not in wire.THROTTLING and code not in _MALFORMED


_MALFORMED = frozenset({"InvalidInput", "ValidationException", "SerializationException"})


START = 8
FLOOR = 4  # never fewer in flight: below it botocore's backoff paces the calls itself
AVOIDANCE = 16  # rounds of clean answers per added call, once the service has throttled


class AdaptiveLimit:
    """Calls in flight, between 1 and ``cap``, adapted by AIMD."""

    def __init__(self, cap: int, start: int | None = None, *, fixed: bool = False) -> None:
        self.cap = cap
        self.fixed = fixed  # exactly ``cap`` in flight, never adapted (for comparisons)
        self.limit = float(cap if fixed else min(START if start is None else start, cap))
        self.in_flight = 0
        self.peak = int(self.limit)
        self.cuts = 0
        self.slow_start = True
        self._window = 0
        self._cond = threading.Condition()

    def acquire(self) -> int:
        """A call's permission to run: the round it was sent in, for ``release``."""
        with self._cond:
            while self.in_flight >= int(self.limit):
                self._cond.wait(0.5)
            self.in_flight += 1
            return self._window

    def release(self, ticket: int, *, throttled: bool) -> None:
        with self._cond:
            self.in_flight -= 1
            self._cond.notify_all()
            if self.fixed:
                return
            if throttled:
                self.slow_start = False
                if ticket == self._window:  # the first news of this round
                    self.limit = max(float(min(FLOOR, self.cap)), self.limit / 2)
                    self._window += 1
                    self.cuts += 1
            elif self.limit < self.cap:
                step = 1.0 if self.slow_start else 1 / (self.limit * AVOIDANCE)
                self.limit = min(float(self.cap), self.limit + step)
                self.peak = max(self.peak, int(self.limit))
