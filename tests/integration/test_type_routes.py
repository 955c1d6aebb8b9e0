"""The operator routes of task types against moto: GET /types, GET /types/{type}, pause and resume."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from chalice.test import Client

from chalicelib.flow.pause import Pauses
from chalicelib.registry import Backoff, Registry, TaskType
from tests.conftest import FakeClock
from tests.integration.test_api_gateway_events import gateway_event

OPERATOR_ARN = "arn:aws:sts::123456789012:assumed-role/taskproc-oncall/alice@example.com"
OTHER_ARN = "arn:aws:sts::123456789012:assumed-role/taskproc-oncall/bob@example.com"


@pytest.fixture
def registry(runtime: Any) -> Registry:
    """The built-in types, a type with every retry option, and one capped at 2."""
    registry = Registry()
    for name in runtime.registry.names():
        registry.register(runtime.registry.get(name))
    registry.register(TaskType("tuned", lambda p, c: None, max_attempts=2, backoff=Backoff(5, 50)))
    registry.register(TaskType("two-at-once", lambda p, c: None, timeout_seconds=10, concurrency=2))
    runtime.registry = registry
    return registry


def get(client: Client, path: str) -> tuple[int, Any]:
    response = client.http.get(path)
    return response.status_code, json.loads(response.body)


def post(client: Client, path: str) -> tuple[int, Any]:
    response = client.http.post(path, body=b"", headers={"Content-Type": "application/json"})
    return response.status_code, json.loads(response.body)


def as_operator(principal: str, method: str, resource: str, path: str, **parameters: str) -> tuple[int, Any]:
    """A route's answer to an event as API Gateway sends it after IAM authorization of `principal`."""
    import app

    event = gateway_event(method, resource, path, **parameters)
    event["requestContext"]["identity"] |= {"userArn": principal}
    answer = app.app(event, None)
    return answer["statusCode"], json.loads(answer["body"])


def pause(principal: str, name: str) -> tuple[int, Any]:
    return as_operator(principal, "POST", "/types/{type}/pause", f"/types/{name}/pause", type=name)


def resume(principal: str, name: str) -> tuple[int, Any]:
    return as_operator(principal, "POST", "/types/{type}/resume", f"/types/{name}/resume", type=name)


def iso(clock: FakeClock, plus_seconds: float = 0) -> str:
    moment = datetime.fromtimestamp(int((clock.now + plus_seconds) * 1000) / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def hold_slots(runtime: Any, type_name: str, expiries_ms: dict[str, int]) -> None:
    """The semaphore item of a capped type in the shape the concurrency policy keeps it."""
    runtime.flow._client.put_item(
        TableName=runtime.flow.name,
        Item={
            "key": {"S": f"concurrency#{type_name}"},
            "slots": {"M": {holder: {"N": str(expiry)} for holder, expiry in expiries_ms.items()}},
        },
    )


def test_every_registered_type_is_listed_with_its_options_and_runs_unpaused(client: Client, registry: Registry) -> None:
    status, body = get(client, "/types")

    assert status == 200
    entries = {entry["name"]: entry for entry in body["types"]}
    assert list(entries) == registry.names()
    assert entries["tuned"] == {
        "name": "tuned",
        "paused": False,
        "options": {"maxAttempts": 2, "backoff": {"baseSeconds": 5, "maxSeconds": 50}},
        "running": None,
        "pausedBy": None,
        "pausedAt": None,
        "effectiveBy": None,
    }
    assert entries["steps"]["options"] == {"timeoutSeconds": 12, "heartbeatSeconds": 2}
    assert entries["simulate"]["options"] == {}
    assert entries["two-at-once"]["options"] == {"timeoutSeconds": 10, "concurrency": 2}
    assert entries["two-at-once"]["running"] == 0  # capped, and no semaphore item yet


def test_running_counts_the_live_slots_of_a_capped_type_and_not_the_expired_ones(
    client: Client, registry: Registry, runtime: Any, clock: FakeClock
) -> None:
    now_ms = int(clock.now * 1000)
    hold_slots(runtime, "two-at-once", {"c-1": now_ms + 30_000, "c-2": now_ms + 1, "dead": now_ms - 1})
    hold_slots(runtime, "tuned", {"c-3": now_ms + 30_000})  # no cap: not counted whatever the table holds

    entries = {entry["name"]: entry for entry in get(client, "/types")[1]["types"]}
    assert entries["two-at-once"]["running"] == 2
    assert entries["tuned"]["running"] is None
    assert get(client, "/types/two-at-once")[1]["running"] == 2

    clock.advance(0.002)  # c-2's lease ends: its holder died or is about to release it
    assert get(client, "/types/two-at-once")[1]["running"] == 1


def test_a_pause_answers_the_entry_with_who_when_and_by_when_it_takes_effect(
    client: Client, registry: Registry, runtime: Any, clock: FakeClock
) -> None:
    paused_at = iso(clock)

    status, body = pause(OPERATOR_ARN, "checksum")

    assert status == 200, body
    assert body["name"] == "checksum" and body["paused"] is True and body["changed"] is True
    assert (body["pausedBy"], body["pausedAt"], body["effectiveBy"]) == (OPERATOR_ARN, paused_at, iso(clock, 5))
    assert "within 5 s" in body["message"] and "publishing still accepts" in body["message"]
    listed = {entry["name"]: entry for entry in get(client, "/types")[1]["types"]}
    assert listed["checksum"]["paused"] is True and listed["checksum"]["pausedBy"] == OPERATOR_ARN
    assert listed["simulate"]["paused"] is False
    assert Pauses(runtime.flow, clock=clock).is_paused("checksum")  # what a consumer reads


def test_a_pause_whose_write_landed_late_takes_effect_5_s_after_it_landed_not_after_it_was_sent(
    client: Client, registry: Registry, runtime: Any, clock: FakeClock
) -> None:
    # botocore's retries kept the write out for 2 s: a consumer's view read meanwhile is stale for 5 s more.
    writes: list[str] = []

    def slow(params: dict[str, Any], **_: Any) -> None:
        writes.append(params["UpdateExpression"])
        if len(writes) == 1:
            clock.advance(2)

    paused_at = iso(clock)
    events = runtime.flow._client.meta.events
    events.register("before-parameter-build.dynamodb.UpdateItem", slow)
    try:
        status, body = pause(OPERATOR_ARN, "checksum")
    finally:
        events.unregister("before-parameter-build.dynamodb.UpdateItem", slow)

    assert status == 200 and body["changed"] is True, body
    assert (body["pausedAt"], body["effectiveBy"]) == (paused_at, iso(clock, 5))
    assert writes[-1] == "SET #types.#type.#effectiveBy = :effective"  # the pause, then its restated effect
    listed = {entry["name"]: entry for entry in get(client, "/types")[1]["types"]}
    assert listed["checksum"]["effectiveBy"] == iso(clock, 5)


def test_pausing_a_paused_type_is_200_keeps_the_first_pause_and_says_nothing_changed(
    client: Client, registry: Registry, clock: FakeClock
) -> None:
    first = pause(OPERATOR_ARN, "checksum")[1]
    clock.advance(3)

    status, again = pause(OTHER_ARN, "checksum")

    assert status == 200
    assert again["changed"] is False and again["paused"] is True
    assert (again["pausedBy"], again["pausedAt"]) == (OPERATOR_ARN, first["pausedAt"])
    assert again["message"] == (
        f"task type 'checksum' was already paused by {OPERATOR_ARN} at {first['pausedAt']}; nothing changed"
    )


def test_resume_unpauses_and_a_second_resume_changes_nothing(
    client: Client, registry: Registry, runtime: Any, clock: FakeClock
) -> None:
    pause(OPERATOR_ARN, "checksum")

    status, resumed = resume(OTHER_ARN, "checksum")
    assert status == 200
    assert resumed["paused"] is False and resumed["changed"] is True
    assert resumed["pausedBy"] is None and resumed["effectiveBy"] is None
    assert not Pauses(runtime.flow, clock=clock).is_paused("checksum")

    status, again = resume(OTHER_ARN, "checksum")
    assert status == 200
    assert again["changed"] is False and again["message"] == "task type 'checksum' was not paused; nothing changed"


def test_the_types_history_records_who_did_what_and_when_changes_included_or_not(
    client: Client, registry: Registry, clock: FakeClock
) -> None:
    moments = []
    for principal, action in [(OPERATOR_ARN, pause), (OTHER_ARN, pause), (OTHER_ARN, resume), (OPERATOR_ARN, resume)]:
        moments.append(iso(clock))
        action(principal, "checksum")
        clock.advance(1)
    pause(OPERATOR_ARN, "simulate")  # another type's: not in checksum's history

    status, detail = as_operator(OPERATOR_ARN, "GET", "/types/{type}", "/types/checksum", type="checksum")

    assert status == 200
    assert detail["name"] == "checksum" and detail["paused"] is False
    assert detail["history"] == [
        {"action": "pause", "by": OPERATOR_ARN, "at": moments[0], "changed": True},
        {"action": "pause", "by": OTHER_ARN, "at": moments[1], "changed": False},
        {"action": "resume", "by": OTHER_ARN, "at": moments[2], "changed": True},
        {"action": "resume", "by": OPERATOR_ARN, "at": moments[3], "changed": False},
    ]


def test_the_chalice_local_principal_is_anonymous(client: Client, registry: Registry) -> None:
    status, body = post(client, "/types/simulate/pause")

    assert status == 200 and body["pausedBy"] == "anonymous"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/types/nope"),
        ("POST", "/types/nope/pause"),
        ("POST", "/types/nope/resume"),
        ("POST", "/types/%E2%98%83/pause"),
    ],
)
def test_an_unknown_type_is_a_404_naming_the_type_field(
    client: Client, registry: Registry, runtime: Any, method: str, path: str
) -> None:
    response = client.http.get(path) if method == "GET" else client.http.post(path, body=b"")

    assert response.status_code == 404
    error = json.loads(response.body)["error"]
    assert error["code"] == "not_found"
    assert [detail["field"] for detail in error["details"]] == ["type"]
    registered = "capped, checksum, per-customer, simulate, steps, throttled, tuned, two-at-once"
    assert registered in error["details"][0]["message"]
    assert runtime.pauses.history() == []  # nothing was written


def test_a_flow_table_that_does_not_answer_is_a_503_saying_the_pause_may_have_landed(
    client: Client, registry: Registry, runtime: Any
) -> None:
    from tests.integration.faults import inject_errors

    with inject_errors(runtime.flow._client, "UpdateItem", status=500, code="InternalServerError"):
        status, body = post(client, "/types/checksum/pause")

    assert status == 503
    assert "may or may not have been paused" in body["error"]["message"]


def test_the_answers_are_the_documented_schemas_and_the_document_is_valid(client: Client, registry: Registry) -> None:
    import jsonschema
    from openapi_spec_validator import validate

    from chalicelib.openapi import openapi_document

    document = json.loads(json.dumps(openapi_document()))
    validate(document)

    def conforms(answer: Any, model: str) -> None:
        jsonschema.validate(answer, {"$ref": f"#/components/schemas/{model}", "components": document["components"]})

    conforms(get(client, "/types")[1], "TypeList")
    conforms(post(client, "/types/checksum/pause")[1], "TypeChange")
    conforms(get(client, "/types/checksum")[1], "TypeDetail")
    conforms(post(client, "/types/nope/resume")[1], "ErrorResponse")
    assert document["paths"]["/types/{type}/pause"]["post"]["parameters"][0]["name"] == "type"
