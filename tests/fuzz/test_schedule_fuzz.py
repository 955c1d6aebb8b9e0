"""`POST /schedules` fed bodies near and far from valid: never a 5xx, every 4xx names a field of the
body (or the body) and says the rule, and a body the rules admit is created.

The schema-driven fuzzer builds bodies from the document's JSON Schema, which cannot say what a cron
line, a zone or a type's payload must be; these bodies are a valid schedule with one field replaced
by anything JSON can hold, or by text close to what the field takes.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.conftest import FUZZ_EXAMPLES, STATUSES

TIMEOUT_SECONDS = 10
JSON = {"Content-Type": "application/json"}
FIELDS = ("id", "type", "payload", "cron", "rate", "timezone", "overlap", "catchupWindowSeconds", "paused")

ANY_TEXT = st.text(st.characters(codec="utf-8"), max_size=30)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | ANY_TEXT,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(ANY_TEXT, children, max_size=3),
    max_leaves=8,
)
CRON_FIELD = st.sampled_from(["*", "0", "59", "60", "*/15", "1-5", "MON-FRI", "L", "5#2", "JAN", "?", "-1", "1,2"])
NEAR_VALUES: dict[str, Any] = {
    "cron": st.lists(CRON_FIELD, min_size=3, max_size=7).map(" ".join),
    "rate": st.tuples(st.integers(-2, 10**8), st.sampled_from(["minute", "minutes", "hours", "day", "weeks", ""])).map(
        lambda parts: f"{parts[0]} {parts[1]}"
    ),
    "timezone": st.sampled_from(["Europe/Berlin", "europe/berlin", "UTC", "Etc/GMT+5", "../etc", "Mars/Base", "", " "]),
    "overlap": st.sampled_from(["skip", "allow", "buffer_one", "SKIP", "buffer", ""]),
    "catchupWindowSeconds": st.sampled_from([0, 59, 60, 3600.0, 604800, 604801, -1, "3600", True]),
    "type": st.sampled_from(["simulate", "checksum", "nope", ""]),
    "payload": st.sampled_from([{}, {"simulation": {"failureChance": 2}}, {"text": 5}, []]),
    "id": ANY_TEXT,
}


def valid_body() -> dict[str, Any]:
    return {"id": f"fuzz-{uuid.uuid4().hex[:12]}", "type": "simulate", "payload": {}, "rate": "1 hour"}


@st.composite
def bodies(draw: st.DrawFn) -> tuple[dict[str, Any], str | None]:
    body = valid_body()
    field = draw(st.sampled_from((*FIELDS, "extra")))
    if field == "extra":
        body[draw(ANY_TEXT)] = draw(JSON_VALUES)
        return body, None
    if field == "cron" and draw(st.booleans()):
        del body["rate"]
    strategy = NEAR_VALUES.get(field, JSON_VALUES)
    body[field] = draw(st.one_of(strategy, JSON_VALUES) if field in NEAR_VALUES else strategy)
    return body, field


@given(case=bodies())
@settings(
    max_examples=FUZZ_EXAMPLES * 5,
    deadline=timedelta(seconds=TIMEOUT_SECONDS),
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
def test_a_schedule_body_is_created_or_refused_naming_its_field(
    case: tuple[dict[str, Any], str | None], api_url: str
) -> None:
    body, changed = case

    response = requests.post(f"{api_url}/schedules", data=json.dumps(body), headers=JSON, timeout=TIMEOUT_SECONDS)

    STATUSES[f"POST /schedules {response.status_code}"] += 1
    assert response.status_code < 500, response.text[:500]
    answer = response.json()
    if response.status_code == 201:
        assert answer["id"] == body["id"] and len(answer["nextFirings"]) == (0 if answer["paused"] else 5)
        return
    assert response.status_code in (400, 409), response.text[:500]
    error = answer["error"]
    assert set(error) == {"code", "message", "details"} and error["message"]
    fields = {detail["field"].split(".")[0] for detail in error["details"]}
    if response.status_code == 400:
        assert fields, error
        # The changed field is the one named, or the other of cron and rate, or any key of the body.
        assert fields <= {*body, "cron", "rate", "body"}, error
        if changed in ("cron", "rate", "timezone", "overlap", "catchupWindowSeconds", "type", "payload"):
            assert fields & {changed, "cron", "rate"} or (changed == "type" and "payload" in fields), error


def test_a_valid_body_is_created_with_its_next_five_firings(api_url: str) -> None:
    body = {**valid_body(), "cron": "0 9 * * MON-FRI", "timezone": "Europe/Berlin"}
    del body["rate"]

    response = requests.post(f"{api_url}/schedules", data=json.dumps(body), headers=JSON, timeout=TIMEOUT_SECONDS)

    assert response.status_code == 201, response.text
    assert len(response.json()["nextFirings"]) == 5
    assert response.headers["Location"].endswith(f"/schedules/{body['id']}")
