"""The sync finds its own concurrency (AIMD): fast while the service keeps up, gentle
once it throttles, never past --workers and never below its floor."""

from __future__ import annotations

import json

import pytest

from archiver.sync.client import AVOIDANCE, FLOOR, START, AdaptiveLimit


def answer(limit: AdaptiveLimit, n: int, *, throttled: bool = False) -> None:
    for _ in range(n):
        ticket = limit.acquire()
        limit.release(ticket, throttled=throttled)


def test_it_starts_at_eight_and_doubles_each_round_up_to_the_cap() -> None:
    limit = AdaptiveLimit(32)
    assert limit.limit == START == 8
    answer(limit, 8)  # one round of clean answers
    assert limit.limit == 16
    answer(limit, 100)
    assert limit.limit == 32 and limit.peak == 32  # capped by --workers


def test_a_burst_of_throttled_answers_halves_it_once() -> None:
    limit = AdaptiveLimit(32)
    answer(limit, 100)
    tickets = [limit.acquire() for _ in range(20)]  # all sent in the same round
    for t in tickets:
        limit.release(t, throttled=True)
    assert limit.limit == 16 and limit.cuts == 1
    answer(limit, 1, throttled=True)  # news from a later round cuts again
    assert limit.limit == 8 and limit.cuts == 2


def test_after_throttling_it_grows_slowly_and_never_below_its_floor() -> None:
    limit = AdaptiveLimit(32)
    for _ in range(10):
        answer(limit, 1, throttled=True)
    assert limit.limit == FLOOR == 4
    answer(limit, FLOOR * AVOIDANCE)  # AVOIDANCE rounds of FLOOR answers: one more call
    assert 4.8 < limit.limit <= 5.0
    answer(limit, 10 * AVOIDANCE)
    assert limit.limit < 8  # no longer doubling
    assert AdaptiveLimit(2).limit == 2  # a cap under the floor is still the cap


def test_fixed_is_exactly_the_workers() -> None:
    limit = AdaptiveLimit(4, fixed=True)
    answer(limit, 50)
    answer(limit, 5, throttled=True)
    assert limit.limit == 4


@pytest.mark.slow
def test_a_throttling_service_is_synced_whole_and_gently(runner, db) -> None:
    from archiver.emulator import Emulator
    from tests.helpers import assert_archive_equals, cli_sync

    with Emulator(seed_operations=800, days=10, seed=21, latency_ms=5, rate_limit=150,
                  burst=30) as emu:  # fmt: skip
        result = cli_sync(runner, db, emu.url, "--source", "acct", "--json")
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        throttled = sum(emu.counters.throttled.values())
        calls = sum(emu.counters.calls.values())
        assert_archive_equals(db, emu.account)  # nothing lost to throttling
    assert summary["throttled"] == emu.counters.throttled["GetOperation"] > 0
    assert throttled / calls < 0.10  # the benchmark holds it to 5% at scale
    assert summary["concurrency_final"] < summary["concurrency_peak"] <= 32


@pytest.mark.slow
@pytest.mark.engine_free
def test_the_emulators_token_bucket_throttles_past_its_rate() -> None:
    import time

    import boto3
    from botocore.config import Config

    from archiver.emulator import Emulator

    with Emulator(seed_operations=10, rate_limit=20, burst=5) as emu:
        client = boto3.client("servicediscovery", endpoint_url=emu.url, region_name="us-east-1",
                              config=Config(retries={"max_attempts": 0}))  # fmt: skip
        codes = []
        for _ in range(15):  # far faster than 20 a second
            try:
                client.list_operations()
                codes.append("ok")
            except client.exceptions.ClientError as exc:
                codes.append(exc.response["Error"]["Code"])
        assert codes[:5] == ["ok"] * 5 and "ThrottlingException" in codes
        time.sleep(0.3)  # the bucket refills at 20 a second
        client.list_operations()
