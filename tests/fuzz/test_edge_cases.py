"""The bodies, numbers and ids a schema-driven fuzzer rarely builds, sent by hand.

Each answer must be below 500 and, when it is a 4xx, carry the documented error shape.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.models import MAX_PAYLOAD_DEPTH, MAX_RUN_AT_DAYS, MAX_TASK_BYTES, parse_moment
from chalicelib.tasks.record import ms_from_iso
from tests.fuzz.conftest import FUZZ_EXAMPLES, STATUSES

TIMEOUT_SECONDS = 10
JSON = {"Content-Type": "application/json"}


def _send(
    api_url: str, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> requests.Response:
    response = requests.request(method, f"{api_url}{path}", data=body, headers=headers, timeout=TIMEOUT_SECONDS)
    operation = "/tasks/{task_id}" if path.startswith("/tasks/") else path
    STATUSES[f"{method} {operation} {response.status_code}"] += 1
    assert response.status_code < 500, response.text[:500]
    return response


def _error(response: requests.Response, status: int, code: str) -> dict[str, Any]:
    """The error body, checked against the documented shape."""
    assert response.status_code == status, response.text[:500]
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert all(set(detail) == {"field", "message"} for detail in body["error"]["details"]), body
    return dict(body["error"])


def _task(task_id: str | None = None, payload: Any = None) -> dict[str, Any]:
    return {"id": task_id or f"edge-{uuid.uuid4().hex}", "payload": {} if payload is None else payload}


def _publish(api_url: str, raw: bytes, headers: dict[str, str] | None = None) -> requests.Response:
    return _send(api_url, "POST", "/publish", raw, JSON if headers is None else headers)


@pytest.mark.parametrize("size", [MAX_TASK_BYTES + 1, 4 * 1024 * 1024])
def test_an_oversized_body_is_refused_as_too_large(api_url: str, size: int) -> None:
    padding = "x" * size
    _error(_publish(api_url, json.dumps(_task(payload={"pad": padding})).encode()), 413, "payload_too_large")
    _error(_send(api_url, "POST", "/tasks", json.dumps({"pad": padding}).encode(), JSON), 413, "payload_too_large")


def test_a_body_under_the_limit_whose_task_is_over_it_is_refused_as_too_large(api_url: str) -> None:
    # Unicode escapes are six bytes in the body and three in the UTF-8 task that is stored and queued,
    # while a bare control-free ASCII body grows when its id is added: the task's own size binds.
    body = json.dumps({"pad": "y" * (MAX_TASK_BYTES - 12)}).encode()
    assert len(body) <= MAX_TASK_BYTES
    _error(_send(api_url, "POST", "/tasks", body, JSON), 413, "payload_too_large")


def test_json_nested_past_the_parsers_depth_is_malformed_not_a_crash(api_url: str) -> None:
    depth = 60_000
    body = b'{"id": "deep", "payload": {"a": ' + b"[" * depth + b"]" * depth + b"}}"
    assert len(body) < MAX_TASK_BYTES
    _error(_publish(api_url, body), 400, "malformed_json")


def _nested(depth: int) -> Any:
    nested: Any = "leaf"
    for _ in range(depth):
        nested = {"n": nested}
    return nested


def test_json_nested_a_hundred_deep_is_accepted_and_reads_back(api_url: str) -> None:
    task = _task(payload={"tree": _nested(100)})
    assert _publish(api_url, json.dumps(task).encode()).status_code == 201
    view = _send(api_url, "GET", f"/tasks/{quote(task['id'], safe='')}").json()
    assert view["payload"] == task["payload"]


def test_a_payload_nested_as_deep_as_allowed_reads_back(api_url: str) -> None:
    task = _task(payload={"tree": _nested(MAX_PAYLOAD_DEPTH - 2)})
    assert _publish(api_url, json.dumps(task).encode()).status_code == 201
    view = _send(api_url, "GET", f"/tasks/{quote(task['id'], safe='')}").json()
    assert view["payload"] == task["payload"]


def test_a_payload_nested_deeper_than_allowed_is_refused_naming_the_rule(api_url: str) -> None:
    task = _task(payload={"tree": _nested(300)})
    error = _error(_publish(api_url, json.dumps(task).encode()), 400, "validation_error")
    assert error["details"][0]["field"] == "payload"
    assert str(MAX_PAYLOAD_DEPTH) in error["details"][0]["message"]


@pytest.mark.parametrize(
    "raw",
    [b'{"id": "\xff\xfe", "payload": {}}', b"\xef\xbb\xbf{}", b'{"id": "a", "payload": {}}\x80', b"\xc3\x28"],
    ids=["invalid-utf8-in-string", "utf8-bom", "trailing-high-byte", "truncated-sequence"],
)
def test_bytes_that_are_not_utf8_are_malformed(api_url: str, raw: bytes) -> None:
    _error(_publish(api_url, raw), 400, "malformed_json")


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "xml"]
)
def test_a_body_not_declared_as_json_is_unsupported(api_url: str, content_type: str) -> None:
    raw = json.dumps(_task()).encode()
    _error(_publish(api_url, raw, {"Content-Type": content_type}), 415, "unsupported_media_type")


def test_a_json_suffix_type_and_a_missing_type_are_both_read_as_json(api_url: str) -> None:
    assert _publish(api_url, json.dumps(_task()).encode(), {"Content-Type": "application/vnd.task+json"}).ok
    response = requests.post(f"{api_url}/publish", data=json.dumps(_task()).encode(), timeout=TIMEOUT_SECONDS)
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    "number",
    ["1e400", "-1e400", "1" + "0" * 5000, "1" + "0" * 400, "123456789012345678901234567890.5", "1e-400", "-0"],
    ids=["float-overflow", "negative-overflow", "5001-digit-int", "401-digit-int", "long-decimal", "underflow", "-0"],
)
def test_huge_and_tiny_numbers_are_refused_or_range_checked(api_url: str, number: str) -> None:
    raw = f'{{"id": "n-{uuid.uuid4().hex}", "payload": {{"simulation": {{"executionTime": {number}}}}}}}'.encode()
    response = _publish(api_url, raw)
    if number in {"1e-400", "-0"}:
        assert response.status_code == 201, response.text  # 0 is in range
    elif number[0].isdigit() and "e" not in number:
        _error(response, 400, "validation_error" if len(number) < 4300 else "malformed_json")
    else:
        _error(response, 400, "malformed_json")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_literals_are_not_json(api_url: str, literal: str) -> None:
    raw = f'{{"id": "x", "payload": {{"simulation": {{"failureChance": {literal}}}}}}}'.encode()
    _error(_publish(api_url, raw), 400, "malformed_json")
    _error(_send(api_url, "POST", "/tasks", f'{{"n": {literal}}}'.encode(), JSON), 400, "malformed_json")


@pytest.mark.parametrize(
    "raw",
    [b"", b"null", b"[]", b'"text"', b"{", b'{"id": "a", "payload": []}', b'{"id": 7, "payload": {}}'],
    ids=["empty", "null", "array", "string", "truncated", "payload-array", "id-number"],
)
def test_bodies_that_are_not_a_task_are_refused_as_bad_requests(api_url: str, raw: bytes) -> None:
    response = _publish(api_url, raw)
    assert response.status_code == 400
    _error(response, 400, response.json()["error"]["code"])


@pytest.mark.parametrize(
    "task_id",
    ["a/b/c", "100%", "%2F", "ünïcødé-日本-🚀", "sp ace", "q?x=1&y=2", "#frag", "..", "\u00a0", "\u210c" * 256, "\\"],
)
def test_any_unicode_id_reads_back_through_its_percent_encoded_path(api_url: str, task_id: str) -> None:
    unique = task_id if len(task_id) == 256 else f"{task_id}-{uuid.uuid4().hex[:6]}"
    response = _publish(api_url, json.dumps(_task(unique)).encode())
    assert response.status_code == 201, response.text
    assert response.headers["Location"] == f"/tasks/{quote(unique, safe='')}"
    view = _send(api_url, "GET", response.headers["Location"]).json()
    assert view["id"] == unique


@pytest.mark.parametrize(
    ("task_id", "field"),
    [("", "id"), ("x" * 257, "id"), ("\ud800", "body")],
    ids=["empty", "257-chars", "lone-surrogate"],
)
def test_an_id_outside_the_rules_is_a_validation_error(api_url: str, task_id: str, field: str) -> None:
    raw = json.dumps({"id": task_id, "payload": {}}).encode()  # ensure_ascii keeps the surrogate escaped
    details = _error(_publish(api_url, raw), 400, "validation_error")["details"]
    assert [detail["field"] for detail in details] == [field]


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/tasks/%FF", 400, "validation_error"),
        ("/tasks/%2", 404, "not_found"),
        ("/tasks/" + "a" * 300, 404, "not_found"),
    ],
    ids=["not-utf8", "broken-escape", "too-long"],
)
def test_a_task_path_that_names_no_task_is_refused_in_the_error_shape(
    api_url: str, path: str, status: int, code: str
) -> None:
    _error(_send(api_url, "GET", path), status, code)


@pytest.mark.parametrize("path", ["/health", "/openapi.json", "/tasks/some-id"])
def test_a_get_with_a_foreign_content_type_is_answered_as_documented(api_url: str, path: str) -> None:
    response = _send(api_url, "GET", path, headers={"Content-Type": "text/plain"})
    assert response.status_code in {200, 404}, response.text


def test_a_long_poll_on_a_task_nobody_runs_answers_where_it_stands_after_its_wait(api_url: str) -> None:
    task = _task()
    assert _publish(api_url, json.dumps(task).encode()).status_code == 201

    started = time.monotonic()
    view = _send(api_url, "GET", f"/tasks/{task['id']}?waitSeconds=1").json()
    took = time.monotonic() - started

    assert view["status"] == "PENDING"
    assert 1.0 <= took < TIMEOUT_SECONDS, took  # the wait, not a read's moment nor the request's timeout


@pytest.mark.parametrize(
    "tag",
    ["a", "x" * 64, "env=prod", "a:b.c_d-e", "x" * 65, "", " ", "a,b", "é", "a\nb", "\x00", "\u202eevil", "🚀", "+5"],
)
def test_each_tag_at_publish_and_in_a_filter_is_accepted_by_its_pattern_or_refused_naming_it(
    api_url: str, tag: str
) -> None:
    valid = re.fullmatch(r"[A-Za-z0-9_.:=-]{1,64}", tag) is not None  # the documented pattern, whole
    response = _publish(api_url, json.dumps({**_task(), "tags": [tag]}).encode())
    listed = _send(api_url, "GET", f"/tasks?status=FAILED&tag={quote(tag, safe='')}")
    if valid:
        assert (response.status_code, listed.status_code) == (201, 200), (response.text, listed.text)
    else:
        assert _error(response, 400, "validation_error")["details"][0]["field"] == "tags[0]"
        assert _error(listed, 400, "validation_error")["details"][0]["field"] == "tag[0]"


# --- runAt -------------------------------------------------------------------------------------

_OFFSETS = st.sampled_from([UTC, *(timezone(timedelta(minutes=m)) for m in (-720, -90, 60, 330, 840))])
# Mostly within a year and a little either side of now, where the rule's edge is; now and then any year.
_MOMENTS = st.one_of(
    st.integers(min_value=-30 * 86_400, max_value=400 * 86_400).map(
        lambda ahead: datetime.fromtimestamp(int(time.time()) + ahead, UTC).replace(tzinfo=None)
    ),
    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30)),
)
# What a client may send as `runAt`: times with and without an offset, in other spellings, numbers, anything.
RUN_ATS = st.one_of(
    _MOMENTS.flatmap(lambda moment: _OFFSETS.map(lambda zone: moment.replace(tzinfo=zone).isoformat())),
    _MOMENTS.map(lambda moment: moment.isoformat()),
    _MOMENTS.map(lambda moment: moment.strftime("%Y-%m-%d %H:%M:%SZ")),
    st.text(st.characters(codec="utf-8"), max_size=40),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.none(),
    st.lists(st.integers(), max_size=2),
)


def _reachable(run_at: Any) -> bool:
    """Whether the API must take `run_at`: a time with an offset at most MAX_RUN_AT_DAYS ahead."""
    try:
        moment = parse_moment(run_at).timestamp()
    except (ValueError, OverflowError, OSError):
        return False
    return moment - time.time() <= MAX_RUN_AT_DAYS * 86_400 - 60


@given(run_at=RUN_ATS)
@settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, derandomize=True)
def test_any_run_at_is_taken_when_it_is_a_time_with_an_offset_within_a_year_and_else_refused_naming_it(
    api_url: str, run_at: Any
) -> None:
    task_id = f"at-{uuid.uuid4().hex}"
    response = _publish(api_url, json.dumps({**_task(task_id), "runAt": run_at}).encode())

    if _reachable(run_at):
        assert response.status_code == 201, response.text
        shown = requests.get(f"{api_url}/tasks/{task_id}", timeout=TIMEOUT_SECONDS).json()["notBefore"]
        assert abs(ms_from_iso(shown) - parse_moment(run_at).timestamp() * 1000) < 1
    else:
        error = _error(response, 400, "validation_error")
        assert [detail["field"] for detail in error["details"]] == ["runAt"], error


@pytest.mark.parametrize("delay", [0, 5, 900])
def test_run_at_with_delay_seconds_is_refused_naming_both_whatever_the_delay(api_url: str, delay: Any) -> None:
    body = {**_task(), "runAt": "2026-12-04T09:00:00Z", "delaySeconds": delay}
    error = _error(_publish(api_url, json.dumps(body).encode()), 400, "validation_error")
    assert {"runAt", "delaySeconds"} <= {detail["field"] for detail in error["details"]}, error
