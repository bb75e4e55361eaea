"""Names kept forever (issue: the archive answers in names): namespaces and services
listed by each sync, kept after they are deleted, and shown in every output."""

from __future__ import annotations

import csv
import io
import json

import pytest
from sqlalchemy import select, text

from archiver.emulator import Emulator
from archiver.store.models import Namespace, Service
from tests.conftest import invoke
from tests.helpers import cli_sync, read_rows

pytestmark = pytest.mark.slow  # over HTTP (docs/design.md, "Tests")

HOSTILE = "=cmd|' /C calc'!A0"


def listed(db: str, model) -> dict[str, tuple]:  # type: ignore[no-untyped-def]
    cols = (model.id, model.name, model.type, model.resource_owner, model.create_date,
            model.last_seen_at, model.gone_at)  # fmt: skip
    return {r.id: r for r in read_rows(db, select(*cols))}


def test_names_equal_the_emulators_and_outlive_a_deletion(runner, db) -> None:
    with Emulator(seed_operations=400, days=20, seed=5, shared=0.2) as emu:
        account = emu.account
        single, empty = account.namespaces[0].id, account.namespaces[1].id  # 1 service, 0
        for s in [s for s in account.services if s.namespace_id == single][1:]:
            account.delete_service(s.id)
        for s in [s for s in account.services if s.namespace_id == empty]:
            account.delete_service(s.id)
        first = cli_sync(runner, db, emu.url, "--source", "acct", "--json")
        assert first.exit_code == 0 and first.stderr == "", first.output
        summary = json.loads(first.stdout)
        # one ListNamespaces (shared ones too); one ListServices for the names, and on
        # a first run one per namespace holding a service, for the links
        assert summary["api_calls"]["ListNamespaces"] == 1
        holding = {s.namespace_id for s in account.services}
        assert empty not in holding and summary["api_calls"]["ListServices"] == 1 + len(holding)
        quiet = cli_sync(runner, db, emu.url, "--source", "acct", "--json")
        assert json.loads(quiet.stdout)["api_calls"]["ListServices"] == 1  # links known
        links = read_rows(db, select(Service.id, Service.namespace_id))
        assert dict(links) == {s.id: s.namespace_id for s in account.services}
        namespaces, services = listed(db, Namespace), listed(db, Service)
        want_ns = {n.id: (n.name, n.type, n.owner, n.create_date) for n in account.namespaces}
        want_srv = {s.id: (s.name, s.type, s.owner, s.create_date) for s in account.services}
        assert {i: tuple(r[1:5]) for i, r in namespaces.items()} == want_ns
        assert {i: tuple(r[1:5]) for i, r in services.items()} == want_srv
        assert {r.resource_owner for r in namespaces.values()} >= {"111122223333", "123456789012"}
        assert all(r.gone_at is None for r in [*namespaces.values(), *services.values()])

        doomed_ns = account.namespaces[5]
        doomed_srv = next(s for s in account.services if s.namespace_id != doomed_ns.id)
        its_services = {s.id for s in account.services if s.namespace_id == doomed_ns.id}
        account.delete_namespace(doomed_ns.id)
        account.delete_service(doomed_srv.id)
        second = cli_sync(runner, db, emu.url, "--source", "acct")
        assert second.exit_code == 0, second.output

    after_ns, after_srv = listed(db, Namespace), listed(db, Service)
    assert after_ns.keys() == namespaces.keys() and after_srv.keys() == services.keys()  # kept
    gone_ns = {i for i, r in after_ns.items() if r.gone_at is not None}
    gone_srv = {i for i, r in after_srv.items() if r.gone_at is not None}
    assert gone_ns == {doomed_ns.id} and gone_srv == {doomed_srv.id, *its_services}
    kept = after_ns[doomed_ns.id]
    assert kept.name == doomed_ns.name  # still answers in its name
    assert kept.last_seen_at == namespaces[doomed_ns.id].last_seen_at < kept.gone_at  # before
    live = next(i for i in after_ns if i != doomed_ns.id)
    assert after_ns[live].last_seen_at > namespaces[live].last_seen_at  # seen again


def test_a_failed_listing_warns_keeps_the_names_and_marks_nothing_gone(runner, db) -> None:
    with Emulator(seed_operations=100, days=5, seed=6) as emu:
        assert cli_sync(runner, db, emu.url, "--source", "acct").exit_code == 0
        before = listed(db, Service)
        emu.account.delete_service(emu.account.services[0].id)
        emu.set_faults("ListServices", error_rate=1.0)
        result = cli_sync(runner, db, emu.url, "--source", "acct", "--max-attempts", "1")
        # no service listed to compare with: each namespace holding one is listed too
        holding = len({s.namespace_id for s in emu.account.services})
    assert result.exit_code == 0, result.output  # the operations were archived
    assert result.stderr.count("\n") == 1 and "cannot list the services" in result.stderr
    assert result.stderr.endswith(
        f"; their names are not refreshed (and {holding} more namespaces' services)\n"
    )
    assert listed(db, Service) == before  # nothing marked gone on a partial answer


def test_a_failed_namespace_listing_says_what_the_run_goes_without(runner, db) -> None:
    """Without the namespaces, the services are listed unfiltered (names, no links),
    and the one warning says that operations of shared namespaces stay incomplete."""
    with Emulator(seed_operations=50, days=5, seed=6) as emu:
        emu.set_faults("ListNamespaces", error_rate=1.0)
        result = cli_sync(runner, db, emu.url, "--source", "acct", "--max-attempts", "1")
        assert emu.counters.calls["ListServices"] == 1
    assert result.exit_code == 0, result.output
    (line,) = result.stderr.splitlines()
    assert "cannot list the namespaces" in line and "shared namespaces are kept incomplete" in line
    assert len(listed(db, Service)) == len(emu.account.services)


def _names_by_id(rows) -> dict[str, tuple[str, str]]:  # type: ignore[no-untyped-def]
    return {r["id"]: (r["namespace_name"], r["service_name"]) for r in rows}


def test_every_output_shows_the_names_and_guards_them(runner, db) -> None:
    with Emulator(seed_operations=300, days=10, seed=7) as emu:
        account = emu.account
        target = account.namespaces[0]
        account.rename_namespace(target.id, HOSTILE)
        assert cli_sync(runner, db, emu.url, "--source", "acct").exit_code == 0
        ns_names = {n.id: n.name for n in account.namespaces}
        srv_names = {s.id: s.name for s in account.services}
        home = {s.id: s.namespace_id for s in account.services}
        ops = account.all()
    # an operation of a service (no NAMESPACE target) is named after its service's namespace
    want = {o.id: (ns_names.get(o.namespace_id or home.get(o.service_id), ""),
                   srv_names.get(o.service_id, "")) for o in ops}  # fmt: skip
    assert any(n == HOSTILE for n, _ in want.values())
    assert all(want[o.id][0] for o in ops if o.service_id and not o.namespace_id)

    def guarded(pair: tuple[str, str]) -> tuple[str, str]:
        return tuple("'" + v if v.startswith("=") else v for v in pair)  # type: ignore[return-value]

    exported = invoke(runner, "--db", db, "export")
    assert exported.exit_code == 0, exported.output
    rows = list(csv.DictReader(io.StringIO(exported.stdout, newline="")))
    assert list(rows[0])[-2:] == ["namespace_name", "service_name"]  # at the end
    assert _names_by_id(rows) == {i: guarded(p) for i, p in want.items()}
    assert "'" + HOSTILE in exported.stdout

    raw = invoke(runner, "--db", db, "export", "--raw")
    assert _names_by_id(csv.DictReader(io.StringIO(raw.stdout, newline=""))) == want

    as_csv = invoke(runner, "--db", db, "query", "-o", "csv")
    assert _names_by_id(csv.DictReader(io.StringIO(as_csv.stdout, newline=""))) == {
        i: guarded(p) for i, p in want.items()
    }

    as_json = json.loads(invoke(runner, "--db", db, "query", "-o", "json").stdout)
    for obj in as_json:
        ns, srv = want[obj["Id"]]
        assert (obj.get("NamespaceName", ""), obj.get("ServiceName", "")) == (ns, srv)
        keys = list(obj)
        if "NamespaceName" in obj or "ServiceName" in obj:  # beside Targets
            assert keys[keys.index("Targets") + 1] in ("NamespaceName", "ServiceName")
    hostile_op = next(i for i, (n, _) in want.items() if n == HOSTILE)
    shown = next(o for o in as_json if o["Id"] == hostile_op)
    assert shown["NamespaceName"] == HOSTILE  # JSON is data, not a spreadsheet: as it is

    table = invoke(runner, "--db", db, "query", "--max-items", "50").stdout
    assert "svc" in table and "Name" in table.splitlines()[0]

    view = read_rows(db, text("SELECT id, namespace_name FROM operations_named"))
    assert {r.id: r.namespace_name or "" for r in view} == {i: n for i, (n, _) in want.items()}


def test_every_member_of_a_namespace_or_service_summary_is_kept(runner, db) -> None:
    """Each summary as a boto3 client reads it equals the archived row: its columns,
    ``description``, and ``extra`` for every other member of the service model's shape."""
    import boto3

    model = botocore_model()
    with Emulator(seed_operations=50, days=5, seed=9) as emu:
        assert cli_sync(runner, db, emu.url, "--source", "acct").exit_code == 0
        client = boto3.client("servicediscovery", endpoint_url=emu.url, region_name="us-east-1",
                              aws_access_key_id="x", aws_secret_access_key="y")  # fmt: skip
        answers = {"namespaces": client.list_namespaces()["Namespaces"],
                   "services": client.list_services()["Services"]}  # fmt: skip
    for kind, shape in (("namespaces", "NamespaceSummary"), ("services", "ServiceSummary")):
        assert {k for a in answers[kind] for k in a} == set(model.shape_for(shape).members)
        rows = read_rows(db, text(f"SELECT id, name, type, arn, resource_owner, description, "
                                  f"create_date, extra FROM {kind}"))  # fmt: skip
        kept = {
            r.id: {"Id": r.id, "Name": r.name, "Type": r.type, "Arn": r.arn,
                   "ResourceOwner": r.resource_owner, "Description": r.description,
                   **json.loads(r.extra)}
            for r in rows
        }  # fmt: skip
        assert kept == {a["Id"]: {k: v for k, v in a.items() if k != "CreateDate"}
                        for a in answers[kind]}  # fmt: skip


def botocore_model():  # type: ignore[no-untyped-def]
    import botocore.session

    return botocore.session.get_session().get_service_model("servicediscovery")


def test_removing_a_source_removes_its_names(runner, db) -> None:
    with Emulator(seed_operations=50, days=5, seed=8) as emu:
        assert cli_sync(runner, db, emu.url, "--source", "acct").exit_code == 0
    assert listed(db, Namespace) and listed(db, Service)
    result = invoke(runner, "--db", db, "sources", "remove", "acct", "--yes")
    assert result.exit_code == 0, result.output
    assert listed(db, Namespace) == {} and listed(db, Service) == {}
