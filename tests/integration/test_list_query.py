"""`GET /tasks`'s query string, parsed by its model: every spelling a client can send answers 200 or a 400 naming it."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from chalice.test import Client

from tests.conftest import FakeClock
from tests.integration.harness import Harness

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def h(client: Client, runtime: Any, clock: FakeClock) -> Harness:
    return Harness(client, runtime, clock)


def listing(client: Client, query: str) -> tuple[int, dict[str, Any]]:
    response = client.http.get(f"/tasks?{query}")
    return response.status_code, json.loads(response.body)


def refusal(client: Client, query: str) -> dict[str, str]:
    """The one detail of a 400 in the API's error shape."""
    status, body = listing(client, query)
    assert status == 400, (query, body)
    assert set(body) == {"error"} and body["error"]["code"] == "validation_error", body
    (detail,) = body["error"]["details"]
    assert set(detail) == {"field", "message"}
    assert detail["field"] in body["error"]["message"], body
    return dict(detail)


def cancelled(h: Harness, *ids_and_types: tuple[str, str]) -> None:
    """Tasks published and cancelled while PENDING, one millisecond apart, in this order."""
    payloads = {"simulate": {}, "checksum": {"text": "x"}}
    for task_id, task_type in ids_and_types:
        body = {"id": task_id, "type": task_type, "payload": payloads[task_type]}
        published = h.client.http.post("/publish", body=json.dumps(body), headers=JSON)
        assert published.status_code == 201, published.body
        assert h.client.http.post(f"/tasks/{task_id}/cancel", headers=JSON).status_code == 200
        h.clock.advance(0.001)


@pytest.mark.parametrize(
    "limit",
    [
        "%C2%B2",  # superscript two: str.isdigit says yes, int() says no
        quote("\u0663"),  # Arabic-Indic three
        quote("\uff15"),  # fullwidth five
        "1e3",
        "5.0",
        "%205",
        "%2B5",
        "-1",
        "",
        "0x10",
        "1_0",
        "5%0A",
        "9" * 5000,
    ],
)
def test_a_limit_that_is_not_plain_digits_is_a_400_naming_limit_and_the_rule(client: Client, limit: str) -> None:
    detail = refusal(client, f"status=FAILED&limit={limit}")
    assert detail["field"] == "limit"
    assert "whole number written with the digits 0-9" in detail["message"]


@pytest.mark.parametrize(("limit", "rule"), [("0", "greater than or equal to 1"), ("101", "less than or equal to 100")])
def test_a_limit_out_of_range_is_a_400_naming_the_bound(client: Client, limit: str, rule: str) -> None:
    detail = refusal(client, f"status=FAILED&limit={limit}")
    assert detail["field"] == "limit"
    assert rule in detail["message"]


@pytest.mark.parametrize("limit", ["1", "007", "100"])
def test_a_limit_in_digits_within_range_is_served(client: Client, limit: str) -> None:
    assert listing(client, f"status=FAILED&limit={limit}") == (200, {"tasks": [], "nextCursor": None})


def test_an_unknown_parameter_is_a_400_naming_it_and_the_ones_the_route_takes(client: Client) -> None:
    detail = refusal(client, "status=FAILED&limt=5")
    assert detail == {
        "field": "limt",
        "message": "is not a parameter of this route (it takes status, limit, cursor, type, tag)",
    }


def test_a_parameter_given_twice_is_a_400_naming_it(client: Client) -> None:
    assert refusal(client, "status=FAILED&limit=5&limit=6") == {
        "field": "limit",
        "message": "must be given at most once",
    }


@pytest.mark.parametrize("status", ["", "PENDING", "failed", quote("FAİLED")])
def test_a_status_that_is_not_listed_is_a_400_listing_the_listed_ones(client: Client, status: str) -> None:
    detail = refusal(client, f"status={status}")
    assert detail["field"] == "status"
    assert "FAILED, RETRYING, CANCELLED" in detail["message"]


def test_a_missing_status_is_a_400_naming_status(client: Client) -> None:
    assert refusal(client, "limit=5")["field"] == "status"


def test_every_broken_rule_gets_its_own_detail(client: Client) -> None:
    status, body = listing(client, "status=DONE&limit=%C2%B2&extra=1")
    assert status == 400
    assert sorted(detail["field"] for detail in body["error"]["details"]) == ["extra", "limit", "status"]


def test_an_empty_cursor_is_the_first_page_and_a_non_ascii_one_is_a_400_naming_cursor(h: Harness) -> None:
    cancelled(h, ("only", "simulate"))
    status, page = listing(h.client, "status=CANCELLED&cursor=")
    assert status == 200 and [task["id"] for task in page["tasks"]] == ["only"]
    assert refusal(h.client, f"status=CANCELLED&cursor={quote('é.ü')}")["field"] == "cursor"


def test_type_narrows_the_listing_and_its_cursor_stays_within_it(h: Harness) -> None:
    cancelled(h, ("s1", "simulate"), ("c1", "checksum"), ("s2", "simulate"), ("c2", "checksum"), ("c3", "checksum"))
    status, page = listing(h.client, "status=CANCELLED&type=checksum&limit=2")
    assert status == 200
    assert [task["id"] for task in page["tasks"]] == ["c3", "c2"]
    status, rest = listing(h.client, f"status=CANCELLED&type=checksum&limit=2&cursor={page['nextCursor']}")
    assert status == 200 and [task["id"] for task in rest["tasks"]] == ["c1"]
    # The cursor is bound to the filter: resuming it without the type is a 400, not another listing's page.
    assert refusal(h.client, f"status=CANCELLED&limit=2&cursor={page['nextCursor']}")["field"] == "cursor"


@pytest.mark.parametrize("task_type", ["", "t" * 65])
def test_a_type_outside_the_type_name_rule_is_a_400_naming_type(client: Client, task_type: str) -> None:
    assert refusal(client, f"status=FAILED&type={task_type}")["field"] == "type"


def test_behind_api_gateway_a_repeated_or_unicode_digit_limit_is_a_400_naming_limit(runtime: Any) -> None:
    import app
    from tests.integration.test_api_gateway_events import gateway_event

    for values in (["5", "6"], ["\u00b2"]):
        event = gateway_event("GET", "/tasks", "/tasks")
        event["queryStringParameters"] = {"status": "FAILED", "limit": values[-1]}
        event["multiValueQueryStringParameters"] = {"status": ["FAILED"], "limit": values}
        answer = app.app(event, None)
        assert answer["statusCode"] == 400, answer
        assert [d["field"] for d in json.loads(answer["body"])["error"]["details"]] == ["limit"]
