"""A second, independent peer: moto's server, which no one here wrote, driven by real
boto3 calls, then synced from and compared with its own GetOperation answers.

moto departs from AWS in ways archiver must cope with, and this test relies on none
of them being otherwise:

- ListOperations ignores Filters and paging: every call answers every operation it
  still holds, so the sync's UPDATE_DATE windows (and its unit check) see everything.
- ListOperations forgets, for good, every operation whose NAMESPACE target is not an
  existing namespace: those of deleted namespaces, and every service and instance
  operation (moto targets REGISTER_INSTANCE at INSTANCE alone, where AWS names the
  SERVICE too). GetOperation then answers OperationNotFound for them.
- Every operation is SUCCESS at once; ListNamespaces carries no ResourceOwner, so
  no namespace looks shared; ListServices ignores its NAMESPACE_ID filter.

What a client can know of moto is what it lists, so the archive must hold exactly
that, each operation equal to moto's GetOperation field by field, and keep what moto
later forgets.
"""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Iterator

import boto3
import pytest
from sqlalchemy import select, text

from archiver.records import OperationRecord
from archiver.store.archive import Archive
from archiver.store.models import Service
from tests.helpers import archived, cli_sync, read_rows

pytestmark = [pytest.mark.slow, pytest.mark.engine_free]  # over HTTP or in subprocesses; no engine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    # moto keeps its accounts in the process, not in the server: each test starts afresh
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"))
    try:
        yield url
    finally:
        server.stop()


def _listed(sd) -> set[str]:  # type: ignore[no-untyped-def]
    return {o["Id"] for o in sd.list_operations()["Operations"]}


def _as_moto_answers(sd, ids) -> dict[str, OperationRecord]:  # type: ignore[no-untyped-def]
    return {i: OperationRecord.from_api(sd.get_operation(OperationId=i)["Operation"]) for i in ids}


def test_syncs_from_moto_equal_its_own_answers(runner, archive, moto_url) -> None:
    sd = boto3.client("servicediscovery", endpoint_url=moto_url, region_name="us-east-1")
    sd.create_private_dns_namespace(Name="internal.example", Vpc="vpc-0123")  # listed first
    http = sd.create_http_namespace(Name="orders")["OperationId"]
    public = sd.create_public_dns_namespace(Name="public.example")["OperationId"]
    namespaces = {n["Name"]: n["Id"] for n in sd.list_namespaces()["Namespaces"]}
    service = sd.create_service(Name="api", NamespaceId=namespaces["orders"])["Service"]["Id"]
    sd.register_instance(
        ServiceId=service, InstanceId="i-1", Attributes={"AWS_INSTANCE_IPV4": "10.0.0.1"}
    )
    sd.deregister_instance(ServiceId=service, InstanceId="i-1")
    sd.delete_namespace(Id=namespaces["public.example"])

    first = cli_sync(runner, archive, moto_url, "--source", "moto")
    assert first.exit_code == 0, first.output
    truth = _listed(sd)  # what moto still holds: the live namespaces' operations
    assert http in truth and public not in truth  # its departures, as named above
    got = archived(archive)
    assert set(got) == truth
    assert got == _as_moto_answers(sd, truth)  # every field, dates to the millisecond
    # the service's namespace: moto's ListServices ignores NAMESPACE_ID, so it lists
    # the service under both namespaces (internal.example's first), and the sync asks
    # GetService instead
    links = read_rows(archive, select(Service.id, Service.namespace_id))
    assert [tuple(r) for r in links] == [(service, namespaces["orders"])]

    sd.create_http_namespace(Name="billing")
    sd.delete_namespace(Id=namespaces["orders"])  # moto forgets its operations
    second = cli_sync(runner, archive, moto_url, "--source", "moto", "--json")
    assert second.exit_code == 0, second.output
    assert second.stderr == ""  # a peer's quiet night: no listing late or behind to tell
    summary = json.loads(second.stdout)
    now_listed = _listed(sd)
    new = now_listed - truth
    assert len(new) == 1 and summary["inserted"] == 1 and summary["updated"] == 0
    after = archived(archive)
    assert set(after) == truth | new  # nothing moto forgot is lost from the archive
    assert {i: after[i] for i in new} == _as_moto_answers(sd, new)
    assert after[http] == got[http]

    # The names, as moto lists them: the deleted namespace kept, marked gone.
    names = _names(archive)
    assert {n: gone for n, (_, gone) in names["namespaces"].items()} == {
        "orders": True, "internal.example": False, "billing": False}  # fmt: skip
    assert names["namespaces"]["orders"][0] == namespaces["orders"]
    assert set(names["services"]) == {"api"} and names["services"]["api"][0] == service


def _names(db: str) -> dict[str, dict[str, tuple[str, bool]]]:
    """name → (id, gone) of each kept namespace and service."""
    from sqlalchemy import select

    from archiver.store.models import Namespace, Service
    from tests.helpers import read_rows

    return {
        kind: {r.name: (r.id, r.gone_at is not None)
               for r in read_rows(db, select(model.id, model.name, model.gone_at))}
        for kind, model in (("namespaces", Namespace), ("services", Service))
    }  # fmt: skip


def test_an_organization_is_synced_account_by_account_region_by_region(
    runner, tmp_path, moto_url, monkeypatch
) -> None:
    """[[organization]]: the active accounts from Organizations' ListAccounts, each in
    each region a source that assumes the role through STS (moto serves all three
    APIs, and keeps each account's and region's Cloud Map apart). One of the six
    fails (another sync holds its lock): the five others are synced all the same,
    and the exit is the worst outcome."""
    from tests.conftest import invoke

    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_ORGANIZATIONS", moto_url)
    org = boto3.client("organizations", endpoint_url=moto_url, region_name="us-east-1")
    org.create_organization(FeatureSet="ALL")
    for name in ("billing", "orders"):
        org.create_account(AccountName=name, Email=f"{name}@example.invalid")
    accounts = [a["Id"] for a in org.list_accounts()["Accounts"]]
    sts = boto3.client("sts", endpoint_url=moto_url, region_name="us-east-1")
    want: dict[str, set[str]] = {}
    for account in accounts:
        c = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/ArchiverRead",
                            RoleSessionName="setup")["Credentials"]  # fmt: skip
        for region in ("us-east-1", "eu-west-1"):
            sd = boto3.client("servicediscovery", endpoint_url=moto_url, region_name=region,
                              aws_access_key_id=c["AccessKeyId"],
                              aws_secret_access_key=c["SecretAccessKey"],
                              aws_session_token=c["SessionToken"])  # fmt: skip
            sd.create_http_namespace(Name=f"ns-{account}-{region}")
            want[f"{account}@{region}"] = _listed(sd)
    config = tmp_path / "fleet.toml"
    config.write_text(f'''db = "archive.db"
[defaults]
endpoint_url = "{moto_url}"
[[organization]]
role_name = "ArchiverRead"
regions = ["us-east-1", "eu-west-1"]
''')
    planned = invoke(runner, "--config", str(config), "sources", "plan")
    assert planned.exit_code == 0, planned.output
    assert all(name in planned.stdout for name in want) and len(want) == 6
    db = str(tmp_path / "archive.db")
    busy = f"{accounts[1]}@eu-west-1"
    with Archive.open(db, create_missing=True) as held, held.lock(busy):
        done = invoke(runner, "--config", str(config), "sync", "--all", "--parallel", "3")
    assert done.exit_code == 3, done.output  # the worst outcome: one source was busy
    assert busy in done.stderr
    got: dict[str, set[str]] = {}
    for row in read_rows(db, text("SELECT s.name, o.id FROM operations o "
                                  "JOIN sources s ON s.id = o.source_id")):  # fmt: skip
        got.setdefault(row.name, set()).add(row.id)
    assert got == {name: ids for name, ids in want.items() if name != busy}


def test_an_account_whose_role_is_refused_is_a_failed_run_that_status_check_sees(
    runner, tmp_path, moto_url, monkeypatch
) -> None:
    """An organization's account whose role cannot be assumed (a new account without
    it; here STS does not answer) failed every night before its run began: nothing in
    the archive, so the README's morning `status --check` and the metrics were silent
    while the account went unarchived. The role is assumed at the run's first call now,
    and its refusal is the source's failed run."""
    from tests.conftest import invoke

    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", f"http://127.0.0.1:{_free_port()}")  # no one there
    monkeypatch.setenv("AWS_ENDPOINT_URL_ORGANIZATIONS", moto_url)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    org = boto3.client("organizations", endpoint_url=moto_url, region_name="us-east-1")
    org.create_organization(FeatureSet="ALL")
    org.create_account(AccountName="new", Email="new@example.invalid")
    names = [f"{a['Id']}@us-east-1" for a in org.list_accounts()["Accounts"]]
    config = tmp_path / "fleet.toml"
    config.write_text(f'db = "archive.db"\n[defaults]\nendpoint_url = "{moto_url}"\n'
                      '[[organization]]\nrole_name = "ArchiverRead"\nregions = ["us-east-1"]\n')  # fmt: skip
    prom = tmp_path / "archiver.prom"
    done = invoke(runner, "--config", str(config), "sync", "--all", "--metrics-file", str(prom))
    assert done.exit_code == 1 and done.stderr.count("AssumeRole failed") == 2, done.output
    check = invoke(runner, "--config", str(config), "status", "--check")
    assert check.exit_code == 1, check.output
    for name in names:
        assert f"failing: source {name}: its latest run" in check.stdout, check.output
        assert f'archiver_sync_last_run_outcome{{outcome="failed",source="{name}"}} 1.0' in (
            prom.read_text())  # fmt: skip


def test_include_and_exclude_narrow_an_organization_to_its_active_accounts(
    runner, tmp_path, moto_url, monkeypatch
) -> None:
    """ListAccounts' active accounts, less a suspended one; `include` keeps only the
    accounts it names and `exclude` drops the ones it names. An include with a mistyped
    account id (11 digits) or a suspended account synced nothing of it, and said
    nothing, exit 0: now a warning names them."""
    from tests.conftest import invoke

    monkeypatch.setenv("AWS_ENDPOINT_URL_ORGANIZATIONS", moto_url)
    org = boto3.client("organizations", endpoint_url=moto_url, region_name="us-east-1")
    org.create_organization(FeatureSet="ALL")
    for name in ("orders", "sandbox", "closed"):
        org.create_account(AccountName=name, Email=f"{name}@example.invalid")
    ids = {a["Name"]: a["Id"] for a in org.list_accounts()["Accounts"]}
    org.close_account(AccountId=ids["closed"])
    orders, sandbox, closed = ids["orders"], ids["sandbox"], ids["closed"]
    config = tmp_path / "fleet.toml"

    def planned(narrowed: str) -> tuple[set[str], str]:
        config.write_text('[[organization]]\nrole_name = "R"\nregions = ["us-east-1"]\n'
                          + narrowed, encoding="utf-8")  # fmt: skip
        done = invoke(runner, "--config", str(config), "sources", "plan", "--json")
        assert done.exit_code == 0, done.output
        return {row["name"] for row in json.loads(done.stdout)}, done.stderr

    active = {f"{i}@us-east-1" for i in ids.values() if i != closed}
    assert planned("") == (active, "") and len(active) == 3  # the management account too
    assert planned(f'exclude = ["{sandbox}"]\n') == (active - {f"{sandbox}@us-east-1"}, "")
    assert planned(f'include = ["{orders}", "{orders[:-1]}", "{closed}"]\n') == (
        {f"{orders}@us-east-1"},
        f"WARNING: config {config}: [[organization]] 1: include names "
        f"{', '.join(sorted([orders[:-1], closed]))}, no active account of the organization: "
        "not synced\n")  # fmt: skip
    assert planned(f'include = ["{orders}", "{sandbox}"]\nexclude = ["{sandbox}"]\n')[0] == {
        f"{orders}@us-east-1"}  # fmt: skip


def test_a_profiles_role_that_sts_refuses_is_one_line_exit_1(runner, tmp_path, moto_url,
                                                              monkeypatch) -> None:  # fmt: skip
    """A profile with role_arn whose role the caller may not assume (moto enforcing IAM,
    as AWS does): botocore's ClientError got past the client's translation and was
    printed as "ClientError: An error occurred (AccessDenied) …" by the fleet, the one
    error of this edge not told as the project's own."""
    from tests.conftest import invoke

    iam = boto3.client("iam", endpoint_url=moto_url, region_name="us-east-1")
    iam.create_user(UserName="archiver")  # no policy: sts:AssumeRole is denied
    key = iam.create_access_key(UserName="archiver")["AccessKey"]
    (tmp_path / "config").write_text("[profile r]\nregion = us-east-1\nsource_profile = base\n"
                                     "role_arn = arn:aws:iam::123456789012:role/ArchiverRead\n")  # fmt: skip
    (tmp_path / "credentials").write_text(f"[base]\naws_access_key_id = {key['AccessKeyId']}\n"
                                          f"aws_secret_access_key = {key['SecretAccessKey']}\n")  # fmt: skip
    for name, value in (("AWS_CONFIG_FILE", "config"), ("AWS_SHARED_CREDENTIALS_FILE",
                                                         "credentials")):  # fmt: skip
        monkeypatch.setenv(name, str(tmp_path / value))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto_url)

    def checks_iam(count: bytes) -> None:  # moto's setting is its process's, not its server's
        urllib.request.urlopen(urllib.request.Request(f"{moto_url}/moto-api/reset-auth",
                               data=count, headers={"Content-Type": "text/plain"}))  # fmt: skip

    checks_iam(b"0")  # from the next call on, IAM policies apply
    try:
        result = invoke(runner, "--db", str(tmp_path / "a.db"), "sync", "--profile", "r",
                        "--endpoint-url", moto_url)  # fmt: skip
    finally:
        checks_iam(b"inf")  # the tests after this one in this process run without IAM
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: AssumeRole for profile 'r' failed: AccessDenied: ")
    assert result.stderr.count("\n") == 1 and "ClientError" not in result.stderr


def test_an_assumed_role_is_fetched_again_when_it_expires_mid_run(moto_url, monkeypatch) -> None:
    """role_arn: the client's credentials are STS AssumeRole's, and botocore fetches
    new ones (through the sync's own refresh) once they expire, so a run longer than
    the role's session goes on."""
    from datetime import UTC, datetime, timedelta

    from archiver.sync.client import make_client
    from archiver.sync.options import ClientSettings

    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto_url)
    settings = ClientSettings(region="us-east-1", endpoint_url=moto_url,
                              role_arn="arn:aws:iam::210987654321:role/ArchiverRead")  # fmt: skip
    client = make_client(settings)
    credentials = client._request_signer._credentials
    first = credentials.get_frozen_credentials().access_key
    assert credentials.method == "assume-role"
    client.list_operations()  # as the role
    credentials._expiry_time = datetime.now(UTC) - timedelta(seconds=1)  # the session ended
    client.list_operations()
    assert credentials.get_frozen_credentials().access_key != first  # fetched again


def test_a_refused_role_is_asked_for_once_by_the_runs_first_calls(monkeypatch) -> None:
    """The role is fetched at the first call, and a run's first calls start together
    (the unit check and the two listings): each asked STS again once the one before
    was refused, so a stalled STS held a run three times its retries (9 min, not 3)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from archiver.errors import WorkFailed
    from archiver.sync.client import make_client
    from archiver.sync.options import ClientSettings

    refusal = (b'<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>'
               b"not authorized to perform: sts:AssumeRole</Message></Error></ErrorResponse>")  # fmt: skip
    asked: list[str] = []

    class Sts(BaseHTTPRequestHandler):  # STS's query protocol, as a refusing STS answers
        def do_POST(self) -> None:
            asked.append(self.rfile.read(int(self.headers["Content-Length"])).decode())
            self.send_response(403)
            self.send_header("Content-Length", str(len(refusal)))
            self.end_headers()
            self.wfile.write(refusal)

        def log_message(self, *args: object) -> None:
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), Sts) as sts:
        threading.Thread(target=sts.serve_forever, daemon=True).start()
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", f"http://127.0.0.1:{sts.server_port}")
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
        client = make_client(ClientSettings(region="us-east-1", endpoint_url="http://127.0.0.1:9",
                                            role_arn="arn:aws:iam::123456789012:role/R"))  # fmt: skip
        errors: list[BaseException] = []

        def first_call() -> None:
            try:
                client.list_operations()
            except BaseException as exc:  # what each of the run's first calls gets
                errors.append(exc)

        callers = [threading.Thread(target=first_call) for _ in range(3)]
        for t in callers:
            t.start()
        for t in callers:
            t.join(60)
        sts.shutdown()
    assert len(errors) == 3 and all(isinstance(e, WorkFailed) for e in errors), errors
    assert "AssumeRole failed: AccessDenied" in str(errors[0])
    assert len(asked) == 1 and "Action=AssumeRole" in asked[0], asked
