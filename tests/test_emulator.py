"""The emulator answers real boto3 clients exactly as docs/filters.md says the API does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from datetime import UTC

import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archiver.emulator import Emulator
from archiver.filters import validate
from archiver.records import STATUSES, TYPES
from archiver.timeutil import to_epoch_ms
from tests.clients import client, protocol_session

pytestmark = [pytest.mark.slow, pytest.mark.engine_free]  # over HTTP or in subprocesses; no engine


@pytest.fixture(scope="module")
def emu():
    with Emulator(seed_operations=1000, days=30, seed=7) as e:
        yield e


@pytest.fixture(scope="module", params=["json", "smithy-rpc-v2-cbor"])
def sd(request, emu, tmp_path_factory):
    """A boto3 client over each wire protocol botocore knows for this service (#6)."""
    session = None
    if request.param != "json":
        session = protocol_session(request.param, tmp_path_factory.mktemp("model"))
    c = client(emu.url, session=session)
    assert c.meta.service_model.resolved_protocol == request.param
    return c


def paginate(sd, filters, page_size=100) -> list[str]:
    pages = sd.get_paginator("list_operations").paginate(
        Filters=filters, PaginationConfig={"PageSize": page_size}
    )
    return [o["Id"] for page in pages for o in page["Operations"]]


@st.composite
def filter_sets(draw, ops):
    raw = []
    for _ in range(draw(st.integers(1, 3))):
        name = draw(
            st.sampled_from(["NAMESPACE_ID", "SERVICE_ID", "STATUS", "TYPE", "UPDATE_DATE"])
        )
        some = draw(st.sampled_from(ops))
        if name == "NAMESPACE_ID":
            raw.append({"Name": name, "Values": [some.namespace_id or "ns-none"]})
        elif name == "SERVICE_ID":
            raw.append({"Name": name, "Condition": "EQ", "Values": [some.service_id or "srv-none"]})
        elif name in ("STATUS", "TYPE"):
            pool = STATUSES if name == "STATUS" else TYPES
            raw.append(
                {
                    "Name": name,
                    "Condition": "IN",
                    "Values": draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3)),
                }
            )
        else:
            a, b = sorted(to_epoch_ms(draw(st.sampled_from(ops)).update_date) for _ in range(2))
            raw.append({"Name": name, "Condition": "BETWEEN", "Values": [str(a), str(b)]})
    return raw


def test_paginator_collects_exactly_what_matches_keeps(emu, sd) -> None:
    ops = emu.account.all()

    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
    @given(raw=filter_sets(ops), page_size=st.sampled_from([7, 100]))
    def check(raw, page_size):
        fs = validate(raw)
        assert sorted(paginate(sd, raw, page_size)) == sorted(o.id for o in ops if fs.matches(o))

    check()


def test_get_operation_returns_every_field_to_the_millisecond(emu, sd) -> None:
    failed = next(o for o in emu.account.all() if o.status == "FAIL" and o.owner_account)
    got = sd.get_operation(OperationId=failed.id)["Operation"]
    assert got["CreateDate"].astimezone(UTC) == failed.create_date
    assert got["UpdateDate"].astimezone(UTC) == failed.update_date
    got = {k: v for k, v in got.items() if k not in ("CreateDate", "UpdateDate")}
    assert got == {
        "Id": failed.id,
        "Type": failed.type,
        "Status": "FAIL",
        "OwnerAccount": failed.owner_account,
        "ErrorCode": failed.error_code,
        "ErrorMessage": failed.error_message,
        "Targets": failed.targets,
    }
    ok = next(o for o in emu.account.all() if o.status == "SUCCESS")
    assert "ErrorCode" not in sd.get_operation(OperationId=ok.id)["Operation"]  # G4


@pytest.mark.parametrize(
    ("params", "rule"),
    [
        ({"Filters": [{"Name": "INSTANCE_ID", "Values": ["x"]}]}, "F2"),
        ({"Filters": [{"Name": "STATUS", "Condition": "IN", "Values": []}]}, "F3"),
        ({"Filters": [{"Name": "NAMESPACE_ID", "Values": ["x" * 256]}]}, "F3"),
        ({"Filters": [{"Name": "SERVICE_ID", "Condition": "IN", "Values": ["a"]}]}, "F4"),
        ({"Filters": [{"Name": "STATUS", "Condition": "BEGINS_WITH", "Values": ["S"]}]}, "F4"),
        ({"Filters": [{"Name": "UPDATE_DATE", "Condition": "EQ", "Values": ["1"]}]}, "F4"),
        ({"Filters": [{"Name": "STATUS", "Condition": "EQ", "Values": ["FAIL", "SUCCESS"]}]}, "F5"),
        ({"Filters": [{"Name": "UPDATE_DATE", "Condition": "BETWEEN", "Values": ["1"]}]}, "F5"),
        ({"Filters": [{"Name": "STATUS", "Values": ["SUCCEED"]}]}, "F6"),
        (
            {
                "Filters": [
                    {
                        "Name": "UPDATE_DATE",
                        "Condition": "BETWEEN",
                        "Values": ["2026-01-01T00:00:00Z", "1"],
                    }
                ]
            },
            "F7",
        ),
        ({"MaxResults": 101}, "P1"),
        ({"NextToken": "bm90LW91cnM="}, "P4"),
    ],
)
def test_invalid_list_requests_are_InvalidInput(sd, params, rule) -> None:
    with pytest.raises(ClientError) as info:
        sd.list_operations(**params)
    assert info.value.response["Error"]["Code"] == "InvalidInput"
    if rule.startswith("F"):
        assert f"({rule})" in info.value.response["Error"]["Message"]


def test_get_operation_errors(sd) -> None:
    with pytest.raises(ClientError) as info:
        sd.get_operation(OperationId="x" * 256)  # G1
    assert info.value.response["Error"]["Code"] == "InvalidInput"
    with pytest.raises(sd.exceptions.OperationNotFound):  # G2
        sd.get_operation(OperationId="no-such-operation")


def test_pages_can_be_empty_and_still_carry_a_token(emu, sd) -> None:
    rare = next(o for o in emu.account.all()[500:] if o.status == "FAIL")
    f = [
        {"Name": "SERVICE_ID", "Values": [rare.service_id]},
        {"Name": "STATUS", "Values": ["FAIL"]},
    ]
    pages = list(
        sd.get_paginator("list_operations").paginate(Filters=f, PaginationConfig={"PageSize": 100})
    )
    assert len(pages) == 10  # P2: 1,000 operations scanned 100 at a time
    assert any(not p["Operations"] and p.get("NextToken") for p in pages)
    assert "NextToken" not in pages[-1]  # P5
    assert rare.id in [o["Id"] for p in pages for o in p["Operations"]]
    assert all(set(o) == {"Id", "Status"} for p in pages for o in p["Operations"])  # P6


def test_operations_added_between_pages_do_not_shift_the_first_page(sd) -> None:
    with Emulator(seed_operations=250, seed=3) as small:
        c = client(small.url)
        first = c.list_operations(MaxResults=100)
        small.account.add_operations(50)
        rest = []
        token = first["NextToken"]
        while token:
            page = c.list_operations(MaxResults=100, NextToken=token)
            rest += [o["Id"] for o in page["Operations"]]
            token = page.get("NextToken")
        seen = [o["Id"] for o in first["Operations"]] + rest
        assert len(seen) == len(set(seen)) == 300  # nothing repeated, nothing skipped


def test_a_token_from_another_emulator_is_InvalidInput(emu, sd) -> None:
    with Emulator(seed_operations=300, seed=3) as other:
        token = client(other.url).list_operations(MaxResults=10)["NextToken"]
    with pytest.raises(ClientError) as info:
        sd.list_operations(NextToken=token)
    assert info.value.response["Error"]["Code"] == "InvalidInput"


def test_throttled_client_in_standard_mode_still_completes(tmp_path) -> None:
    with Emulator(seed_operations=1000, seed=5, throttle_rate=0.3) as e:
        c = client(e.url, attempts=10)
        ids = paginate(c, [])
        assert len(ids) == 1000
        assert e.counters.throttled["ListOperations"] > 0
        assert e.counters.list_pages == 10
        assert e.counters.calls["ListOperations"] == 10 + e.counters.throttled["ListOperations"]


def test_unsigned_requests_and_unknown_operations_are_refused(emu, sd) -> None:
    req = urllib.request.Request(
        emu.url,
        data=b"{}",
        method="POST",
        headers={
            "X-Amz-Target": "Route53AutoNaming_v20170314.ListOperations",
            "Content-Type": "application/x-amz-json-1.1",
        },
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=5)
    assert info.value.code == 403
    with pytest.raises(ClientError) as err:
        sd.get_namespace(Id="ns-anything")  # a call the emulator does not serve
    assert err.value.response["Error"]["Code"] == "UnknownOperationException"


@pytest.mark.parametrize(("sig", "host", "shown"), [(signal.SIGINT, "127.0.0.1", "127.0.0.1"),
                                                    (signal.SIGTERM, "::1", "[::1]")])  # fmt: skip
def test_serve_prints_its_url_answers_and_stops_cleanly(sig, host, shown) -> None:
    """On IPv6 too: `--host ::1` was "Address family for hostname not supported"."""
    serve = ["emulator", "serve", "--host", host, "--port", "0", "--seed", "500"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "archiver", *serve],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith(f"http://{shown}:")
        assert len(paginate(client(url), [])) == 500
    finally:
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert err == ""


def test_list_namespaces_filters_and_pages_like_list_operations() -> None:
    from archiver.emulator import Emulator
    from tests.clients import client

    with Emulator(seed_operations=10, seed=3, shared=0.2) as emu:
        sd = client(emu.url)
        truth = emu.account.namespaces
        others = {"Name": "RESOURCE_OWNER", "Condition": "EQ", "Values": ["OTHER_ACCOUNTS"]}
        pages = list(sd.get_paginator("list_namespaces").paginate(
            Filters=[others], PaginationConfig={"PageSize": 3}))  # fmt: skip
        got = [n for p in pages for n in p["Namespaces"]]
        assert {n["Id"] for n in got} == {n.id for n in truth if n.owner != emu.account.caller}
        assert len(pages) == 7  # 20 scanned 3 at a time: pages may be empty (P2)
        assert any(not p["Namespaces"] for p in pages)
        mine = sd.list_namespaces(Filters=[{**others, "Values": ["SELF"]}])["Namespaces"]
        assert len(mine) + len(got) == 20
        kind = truth[0].type
        typed = sd.list_namespaces(Filters=[{"Name": "TYPE", "Values": [kind]}])["Namespaces"]
        assert {n["Id"] for n in typed} == {n.id for n in truth if n.type == kind}
        named = sd.list_namespaces(Filters=[{"Name": "NAME", "Values": [truth[5].name]}])
        assert [n["Id"] for n in named["Namespaces"]] == [truth[5].id]
        shared_op = next(o for o in emu.account.all() if o.owner_account)
        with pytest.raises(sd.exceptions.OperationNotFound):
            sd.get_operation(OperationId=shared_op.id)
        found = sd.get_operation(OperationId=shared_op.id, OwnerAccount=shared_op.owner_account)
        assert found["Operation"]["OwnerAccount"] == shared_op.owner_account
