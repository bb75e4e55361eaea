"""What AWS adds later is kept: a field added to Operation, a Targets key beyond the
three known, a TYPE or STATUS the service model does not list yet."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from archiver.emulator import Emulator
from archiver.records import OperationRecord
from archiver.sync.options import ClientSettings
from archiver.sync.run import SyncOptions
from tests.clients import protocol_session
from tests.conftest import invoke
from tests.helpers import archived, assert_archive_equals, run_library_sync

pytestmark = pytest.mark.slow  # over HTTP or in subprocesses (docs/design.md, "Tests")

EXTRA = {"ResolvedBy": "agent-7", "Targets": {"ENDPOINT": "ep-0123"}}


def _novel(emu: Emulator) -> OperationRecord:
    base = emu.account.all()[0]
    novel = replace(base, id="op-novel-1", type="DELETE_SERVICE", status="CANCELLED",
                        extra=json.dumps(EXTRA, sort_keys=True))  # fmt: skip
    emu.account.put(novel)
    return novel


@pytest.mark.parametrize("protocol", ["json", "smithy-rpc-v2-cbor"])
def test_fields_aws_adds_later_are_kept_and_the_record_rebuilds(archive, tmp_path, protocol):
    with Emulator(seed_operations=30, seed=51) as emu:
        novel = _novel(emu)
        session = protocol_session(protocol, tmp_path / "models")
        settings = ClientSettings(region="us-east-1", endpoint_url=emu.url)
        run_library_sync(archive, SyncOptions(source="acct"), settings, session=session)
        assert_archive_equals(archive, emu.account)  # extra included, every field
        got = archived(archive)["op-novel-1"]
        assert got.to_api() == novel.to_api()  # rebuilt as the service sent it
        assert got.to_api()["Targets"]["ENDPOINT"] == "ep-0123"
        assert got.to_api()["ResolvedBy"] == "agent-7"
        plain = archived(archive)[emu.account.all()[1].id]
        assert plain.extra is None  # nothing more: nothing stored


def test_new_types_and_statuses_are_queryable_and_shown_whole(runner, archive) -> None:
    with Emulator(seed_operations=30, seed=52) as emu:
        _novel(emu)
        settings = ClientSettings(region="us-east-1", endpoint_url=emu.url)
        run_library_sync(archive, SyncOptions(source="acct"), settings)
    ids = ("--db", archive, "query", "-o", "ids", "--filters")
    assert invoke(runner, *ids, "Name=TYPE,Values=DELETE_SERVICE").stdout == "op-novel-1\n"
    assert invoke(runner, *ids, "Name=STATUS,Values=CANCELLED").stdout == "op-novel-1\n"
    both = "Name=STATUS,Condition=IN,Values=CANCELLED,NOT_A_STATUS"
    refused = invoke(runner, *ids, both)
    assert refused.exit_code == 2 and "NOT_A_STATUS" in refused.stderr
    unknown = invoke(runner, *ids, "Name=TYPE,Values=NOT_A_TYPE")
    assert unknown.exit_code == 2 and unknown.stderr.startswith("error: InvalidInput:")
    rows = json.loads(invoke(runner, "--db", archive, "query", "-o", "json").stdout)
    (shown,) = [r for r in rows if r["Id"] == "op-novel-1"]
    assert shown["Targets"]["ENDPOINT"] == "ep-0123" and shown["ResolvedBy"] == "agent-7"
    assert (shown["Type"], shown["Status"]) == ("DELETE_SERVICE", "CANCELLED")
