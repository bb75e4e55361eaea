"""Each rule of docs/filters.md, cited by number in the test's name."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from archiver.errors import FilterError
from archiver.filters import Filter, Filters, parse, validate
from archiver.timeutil import to_epoch_ms
from tests.helpers import T0, op

pytestmark = pytest.mark.engine_free  # the archive's engine plays no part


def err(raw) -> str:
    with pytest.raises(FilterError) as info:
        validate(raw) if isinstance(raw, list) else parse(raw)
    return str(info.value)


def f(name, values, condition=None):
    d = {"Name": name, "Values": values}
    if condition is not None:
        d["Condition"] = condition
    return d


# --- F1–F9: validation --------------------------------------------------------------------


def test_F1_missing_condition_means_eq() -> None:
    assert validate([f("STATUS", ["FAIL"])]).items == (Filter("STATUS", ("FAIL",), "EQ"),)


def test_F1_name_and_values_are_required() -> None:
    assert "Name is required" in err([{"Values": ["x"]}])
    assert "Values is required" in err([{"Name": "STATUS"}])
    assert "unknown key 'Value'" in err([{"Name": "STATUS", "Value": ["FAIL"]}])


def test_F2_unknown_name_is_rejected() -> None:
    assert err([f("INSTANCE_ID", ["x"])]).startswith(
        "InvalidInput: filter 1 (INSTANCE_ID): unknown filter name"
    )
    assert "(F2)" in err([f("status", ["FAIL"])])  # names are case-sensitive


def test_F3_values_must_be_a_non_empty_list_of_1_to_255_chars() -> None:
    assert "must not be empty (F3)" in err([f("STATUS", [], "IN")])
    assert "1 to 255 characters" in err([f("NAMESPACE_ID", [""])])
    assert "1 to 255 characters" in err([f("NAMESPACE_ID", ["x" * 256])])
    assert validate([f("NAMESPACE_ID", ["x" * 255])])
    assert "list of strings" in err([f("STATUS", "FAIL")])
    assert "must be a string" in err([f("UPDATE_DATE", [1, 2], "BETWEEN")])


ACCEPTED = {
    ("NAMESPACE_ID", "EQ"),
    ("SERVICE_ID", "EQ"),
    ("STATUS", "EQ"),
    ("STATUS", "IN"),
    ("TYPE", "EQ"),
    ("TYPE", "IN"),
    ("UPDATE_DATE", "BETWEEN"),
}
SAMPLE = {
    "NAMESPACE_ID": ["ns-1", "ns-2"],
    "SERVICE_ID": ["srv-1", "srv-2"],
    "STATUS": ["FAIL", "SUCCESS"],
    "TYPE": ["UPDATE_SERVICE", "CREATE_NAMESPACE"],
    "UPDATE_DATE": ["1000000000000", "2000000000000"],
}


@pytest.mark.parametrize(
    ("name", "condition"),
    [
        (n, c)
        for n in SAMPLE
        for c in ("EQ", "IN", "BETWEEN", "BEGINS_WITH")
        if (n, c) not in ACCEPTED
    ],
)
def test_F4_every_other_name_condition_pair_is_rejected(name, condition) -> None:
    values = SAMPLE[name][:2] if condition == "BETWEEN" else SAMPLE[name][:1]
    message = err([f(name, values, condition)])
    assert f"condition {condition} is not supported for {name}" in message
    assert "(F4)" in message


@pytest.mark.parametrize(("name", "condition"), sorted(ACCEPTED))
def test_F4_the_allowed_pairs_are_accepted(name, condition) -> None:
    values = SAMPLE[name][:2] if condition == "BETWEEN" else SAMPLE[name][:1]
    assert validate([f(name, values, condition)]).items[0].condition == condition


def test_F4_unknown_condition_is_rejected() -> None:
    assert "unknown condition 'LIKE'" in err([f("STATUS", ["FAIL"], "LIKE")])
    assert "unknown condition 'eq'" in err([f("STATUS", ["FAIL"], "eq")])


@pytest.mark.parametrize(
    ("name", "condition", "count", "ok"),
    [
        ("STATUS", "EQ", 1, True),
        ("STATUS", "EQ", 2, False),
        ("NAMESPACE_ID", "EQ", 2, False),
        ("STATUS", "IN", 1, True),
        ("STATUS", "IN", 2, True),
        ("TYPE", "IN", 4, True),
        ("UPDATE_DATE", "BETWEEN", 1, False),
        ("UPDATE_DATE", "BETWEEN", 2, True),
        ("UPDATE_DATE", "BETWEEN", 3, False),
    ],
)
def test_F5_value_counts(name, condition, count, ok) -> None:
    pool = {
        "STATUS": ["FAIL", "SUCCESS", "PENDING"],
        "TYPE": ["UPDATE_SERVICE", "CREATE_NAMESPACE", "DELETE_NAMESPACE", "UPDATE_NAMESPACE"],
        "NAMESPACE_ID": ["a", "b"],
        "UPDATE_DATE": ["1000000000000", "2000000000000", "3000000000000"],
    }[name][:count]
    if ok:
        assert len(validate([f(name, pool, condition)]).items[0].values) == count
    else:
        assert "(F5)" in err([f(name, pool, condition)])


def test_F6_statuses_and_types_are_checked_case_sensitively() -> None:
    assert "'success' is not a valid status" in err([f("STATUS", ["success"])])
    assert "'register_instance' is not a valid type" in err([f("TYPE", ["register_instance"])])
    assert "(F6)" in err([f("TYPE", ["REGISTER_INSTANCE", "NOPE"], "IN")])


def test_F6_the_documentations_SUCCEED_typo_is_rejected() -> None:
    assert "did you mean SUCCESS?" in err([f("STATUS", ["SUCCEED"])])


def test_F7_update_date_is_epoch_milliseconds() -> None:
    fs = validate([f("UPDATE_DATE", ["1772366400000", "1772366400999"], "BETWEEN")])
    assert fs.to_request()[0]["Values"] == ["1772366400000", "1772366400999"]
    assert "is not a time; use epoch milliseconds (F7)" in err(
        [f("UPDATE_DATE", ["2026-03-01T12:00:00Z", "1772366400999"], "BETWEEN")]
    )
    for bad in ("-5", "+5", "1.5", "1e12", "0x10"):
        assert "(F7)" in err([f("UPDATE_DATE", [bad, "1772366400999"], "BETWEEN")])


def test_F7_the_cli_converts_iso8601_to_milliseconds_first() -> None:
    fs = parse(
        "Name=UPDATE_DATE,Condition=BETWEEN,Values=2026-03-01T12:00:00Z,2026-03-01T12:00:00.999+00:00"
    )
    assert fs.items[0].values == (str(to_epoch_ms(T0)), str(to_epoch_ms(T0) + 999))


def test_F7_a_value_that_looks_like_seconds_earns_a_warning() -> None:
    fs = validate([f("UPDATE_DATE", ["1772366400", "1772366400999"], "BETWEEN")])
    assert len(fs.warnings) == 1
    assert "did you give seconds?" in fs.warnings[0]
    assert not validate([f("UPDATE_DATE", ["1772366400000", "1772366400999"], "BETWEEN")]).warnings
    # the line is 10^11 ms, March 1973: below it warns, at it does not
    assert validate([f("UPDATE_DATE", ["99999999999", "1772366400999"], "BETWEEN")]).warnings
    assert not validate([f("UPDATE_DATE", ["100000000000", "1772366400999"], "BETWEEN")]).warnings


def test_F7_the_last_millisecond_of_year_9999_is_the_latest_time() -> None:
    last = str(to_epoch_ms(datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)))
    latest = validate([f("UPDATE_DATE", ["1772366400000", last], "BETWEEN")])
    assert latest.items[0].values[1] == last
    beyond = err([f("UPDATE_DATE", ["1772366400000", str(int(last) + 1)], "BETWEEN")])
    assert "is beyond year 9999 in epoch milliseconds (F7)" in beyond


def test_F8_the_same_name_may_repeat_and_all_apply() -> None:
    fs = validate([f("STATUS", ["FAIL", "SUCCESS"], "IN"), f("STATUS", ["FAIL"])])
    assert fs.matches(op(1, status="FAIL"))
    assert not fs.matches(op(1, status="SUCCESS"))


def test_F9_errors_name_the_filter_and_rule() -> None:
    message = err([f("TYPE", ["UPDATE_SERVICE"]), f("STATUS", ["FAIL", "SUCCESS"], "BETWEEN")])
    assert message == (
        "InvalidInput: filter 2 (STATUS): condition BETWEEN is not supported for STATUS; "
        "use EQ or IN (F4)"
    )


# --- M1–M5: matching ------------------------------------------------------------------------


def test_M1_every_filter_must_match() -> None:
    fs = validate([f("STATUS", ["FAIL"]), f("TYPE", ["UPDATE_SERVICE"])])
    assert fs.matches(op(1, status="FAIL", type="UPDATE_SERVICE"))
    assert not fs.matches(op(1, status="FAIL", type="REGISTER_INSTANCE"))
    assert Filters().matches(op(1))  # no filter: everything


def test_M2_status_and_type_equal_one_of_the_values() -> None:
    fs = validate([f("TYPE", ["UPDATE_SERVICE", "DELETE_NAMESPACE"], "IN")])
    assert fs.matches(op(1, type="DELETE_NAMESPACE"))
    assert not fs.matches(op(1, type="CREATE_NAMESPACE"))


def test_M3_ids_compare_targets_and_a_missing_key_never_matches() -> None:
    fs = validate([f("SERVICE_ID", ["srv-9"])])
    assert fs.matches(op(1, service="srv-9"))
    assert not fs.matches(op(1, service=None))
    ns = validate([f("NAMESPACE_ID", ["ns-9"])])
    assert ns.matches(op(1, namespace="ns-9", service=None))
    assert not ns.matches(op(1, namespace=None, service="ns-9"))


def test_M4_between_is_inclusive_to_the_millisecond_and_reversed_matches_nothing() -> None:
    t = to_epoch_ms(T0)
    fs = validate([f("UPDATE_DATE", [str(t), str(t + 10)], "BETWEEN")])
    assert fs.matches(op(1, ms=0))
    assert fs.matches(op(1, ms=10))
    assert not fs.matches(op(1, ms=11))
    assert not fs.matches(op(1, ms=-1))
    reversed_ = validate([f("UPDATE_DATE", [str(t + 10), str(t)], "BETWEEN")])
    assert not reversed_.matches(op(1, ms=5))
    assert reversed_.warnings == ("filter 1 (UPDATE_DATE): the start is after the end, so "
                                  "nothing can match (M4)",)  # fmt: skip
    one_instant = validate([f("UPDATE_DATE", [str(t), str(t)], "BETWEEN")])
    assert one_instant.matches(op(1, ms=0)) and not one_instant.warnings  # valid, and no slip


def test_M5_only_the_latest_update_date_counts() -> None:
    t = to_epoch_ms(T0)
    fs = validate([f("UPDATE_DATE", [str(t), str(t)], "BETWEEN")])
    assert not fs.matches(replace(op(1, ms=0), update_date=op(1, ms=60_000).update_date))


# --- the AWS CLI's forms --------------------------------------------------------------------

SAME = [
    "Name=STATUS,Condition=IN,Values=PENDING,SUCCESS",
    "Name=STATUS,Condition=IN,Values=[PENDING,SUCCESS]",
    'Name=STATUS,Condition=IN,Values=["PENDING","SUCCESS"]',
    'Condition=IN,Name="STATUS",Values=PENDING,SUCCESS',
    "Name=STATUS,Values=[PENDING,SUCCESS],Condition=IN",  # a list, then more keys
    "Name=STATUS,Values=PENDING,SUCCESS,Condition=IN",  # the CLI synopsis: Values end at Key=
    '[{"Name": "STATUS", "Condition": "IN", "Values": ["PENDING", "SUCCESS"]}]',
    '{"Name": "STATUS", "Condition": "IN", "Values": ["PENDING", "SUCCESS"]}',
]


@pytest.mark.parametrize("text", SAME)
def test_shorthand_and_json_forms_give_the_same_filters(text) -> None:
    assert parse(text) == parse(SAME[0])


def test_file_form_reads_json_and_shorthand(tmp_path) -> None:
    path = tmp_path / "f.json"
    path.write_text(SAME[4])
    assert parse(f"file://{path}") == parse(SAME[0])
    path.write_text(SAME[0] + "\n")
    assert parse(f"file://{path}") == parse(SAME[0])


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("Name=STATUS,Values=[FAIL", "unbalanced '['"),
        ("Name=STATUS,Values=FAIL]", "unexpected ']'"),
        ("Name", "expected Key=Value"),
        ("Name=STATUS,Values=FAIL,", "trailing ','"),
        ("Name=STATUS,Values=", "every value must be 1 to 255 characters long (F3)"),
        ("Name=STATUS,Values=''", "every value must be 1 to 255 characters long (F3)"),
        ("Name=STATUS,Colour=red,Values=FAIL", "unknown key 'Colour'"),
        ("Name=STATUS,Name=TYPE,Values=FAIL", "Name given twice"),
        ('Name="STATUS,Values=FAIL', 'unbalanced "'),
        ('[{"Name": "STATUS"', "not valid JSON"),
        ('"STATUS"', "expected Key=Value"),
        ("file:///no/such/filters.json", "cannot read filters file /no/such/filters.json"),
        ("file://", "the filters file's name is empty"),  # was ". is a directory"
        ("", "--filters is empty"),
    ],
)
def test_malformed_input_is_one_clear_error(text, says) -> None:
    message = err(text)
    assert says in message
    assert "\n" not in message


def test_a_file_that_is_no_filter_is_quoted_a_few_characters_not_whole(tmp_path) -> None:
    # `--filters file://id_rsa` by mistake: the error line (shipped to a log) names where
    # the parse stopped, never the key
    key = tmp_path / "id_rsa"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n" * 50)
    message = err(f"file://{key}")
    assert "expected Key=Value at '-----BEGIN OPENSSH P'…" in message, message
    assert "b3Blbn" not in message and len(message) < 200
    for text, says in (("Name=STATUS,Values=[FAIL,SUCCESS" + ",X" * 500, "unbalanced '[' at '[FAIL"),
                       ("Name=STATUS,Values=FAIL]" + "x" * 500, "unexpected ']xxx"),
                       ("Name=STATUS,Values=[a,[b]" + "x" * 500, "nested '[' at '[b]x")):  # fmt: skip
        assert says in (message := err(text)) and len(message) < 200, message


def test_to_request_round_trips_through_json_and_shorthand() -> None:
    fs = parse(
        [
            "Name=STATUS,Condition=IN,Values=PENDING,SUCCESS",
            "Name=UPDATE_DATE,Condition=BETWEEN,Values=2026-03-01T00:00:00Z,1772409600000",
            "Name=SERVICE_ID,Values=srv-1",
        ]
    )
    request = fs.to_request()
    assert request[1] == {
        "Name": "UPDATE_DATE",
        "Condition": "BETWEEN",
        "Values": ["1772323200000", "1772409600000"],
    }
    assert parse(json.dumps(request), allow_iso=False) == fs
    shorthand = [
        f"Name={r['Name']},Condition={r['Condition']},Values=[{','.join(r['Values'])}]"
        for r in request
    ]
    assert parse(shorthand) == fs
