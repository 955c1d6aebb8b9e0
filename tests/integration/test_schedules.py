"""Schedules over moto with a fake clock: firings over a simulated week, DST, overlap, catch-up,
two tickers, refused firings, and the operator's routes (pause, resume, trigger, backfill)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from chalice.test import Client
from pydantic import BaseModel, Field

from chalicelib.registry import Registry, TaskType
from chalicelib.schedules.engine import fire_due
from tests.conftest import FakeClock
from tests.integration.harness import SUCCEEDS, Harness
from tests.integration.test_operator_identity import OPERATOR_ARN, as_operator

JSON = {"Content-Type": "application/json"}
# Monday 2026-10-19 00:00 UTC: the week holds Berlin's change back to CET (Sunday 2026-10-25).
MONDAY = datetime(2026, 10, 19, tzinfo=UTC)


@pytest.fixture
def h(client: Client, runtime: Any, clock: FakeClock) -> Harness:
    clock.now = MONDAY.timestamp()
    return Harness(client, runtime, clock)


def at(h: Harness) -> datetime:
    return datetime.fromtimestamp(h.clock.now, UTC)


def create(h: Harness, **fields: Any) -> dict[str, Any]:
    body = {"id": "every-hour", "type": "simulate", "payload": SUCCEEDS, "rate": "1 hour", **fields}
    response = h.client.http.post("/schedules", body=json.dumps(body), headers=JSON)
    assert response.status_code == 201, response.body
    return dict(json.loads(response.body))


def show(h: Harness, schedule_id: str) -> dict[str, Any]:
    response = h.client.http.get(f"/schedules/{schedule_id}")
    assert response.status_code == 200, response.body
    return dict(json.loads(response.body))


def post(h: Harness, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    raw = json.dumps(body) if body is not None else b""
    response = h.client.http.post(path, body=raw, headers=JSON)
    return response.status_code, json.loads(response.body)


def run_ticker(h: Harness, until: datetime, every: int = 60) -> dict[str, int]:
    """Tick every `every` seconds (once a minute, as the ticker function does, unless a week's test
    ticks less often) on the fake clock until `until`; the summed counts."""
    totals: dict[str, int] = {}
    while at(h) < until:
        h.clock.advance(every)
        for name, count in fire_due(h.rt, at(h)).items():
            totals[name] = totals.get(name, 0) + count
    return totals


def task_ids(h: Harness, prefix: str) -> list[str]:
    """Every stored task whose id starts with `prefix`, sorted (a Scan of the test table)."""
    client = h.rt.store._client
    items = client.scan(TableName=h.rt.settings.TASKS_TABLE)["Items"]
    return sorted(item["id"]["S"] for item in items if item["id"]["S"].startswith(prefix))


def drain(h: Harness) -> None:
    while h.deliver().records:
        pass


def test_a_rate_schedule_fires_each_hour_of_a_simulated_week_once_with_deterministic_ids(h: Harness) -> None:
    create(h, id="hourly")

    counts = run_ticker(h, MONDAY + timedelta(days=7), every=3600)

    fired = task_ids(h, "hourly@")
    assert len(fired) == 7 * 24 == counts["fired"]
    assert fired[0] == "hourly@2026-10-19T01:00:00Z" and fired[-1] == "hourly@2026-10-26T00:00:00Z"
    assert counts["missed"] == counts["skipped"] == counts["refused"] == counts["caughtUp"] == 0
    assert show(h, "hourly")["counts"]["fired"] == 168


def test_a_berlin_cron_fires_at_nine_local_through_the_week_of_the_autumn_change(h: Harness) -> None:
    create(h, id="standup", rate=None, cron="0 9 * * *", timezone="Europe/Berlin")
    assert show(h, "standup")["rate"] is None

    run_ticker(h, MONDAY + timedelta(days=7), every=3600)

    fired = [task_id.split("@")[1] for task_id in task_ids(h, "standup@")]
    assert fired == [f"2026-10-{day}T07:00:00Z" for day in range(19, 25)] + ["2026-10-25T08:00:00Z"]


def test_a_week_of_a_fixed_time_across_the_spring_gap_fires_once_a_day_and_once_after_the_gap(h: Harness) -> None:
    h.clock.now = datetime(2026, 3, 26, 12, tzinfo=UTC).timestamp()
    create(h, id="night", rate=None, cron="30 2 * * *", timezone="Europe/Berlin")

    run_ticker(h, datetime(2026, 4, 2, 12, tzinfo=UTC), every=3600)

    fired = [task_id.split("@")[1] for task_id in task_ids(h, "night@")]
    assert fired == [
        "2026-03-27T01:30:00Z",  # 02:30 CET
        "2026-03-28T01:30:00Z",
        "2026-03-29T01:00:00Z",  # no 02:30 that night: 03:00 CEST, the first minute after the gap
        "2026-03-30T00:30:00Z",  # 02:30 CEST
        "2026-03-31T00:30:00Z",
        "2026-04-01T00:30:00Z",
        "2026-04-02T00:30:00Z",
    ]


def test_a_fixed_time_in_the_fall_back_repeat_fires_once(h: Harness) -> None:
    h.clock.now = datetime(2026, 10, 24, 12, tzinfo=UTC).timestamp()
    create(h, id="night", rate=None, cron="30 2 * * *", timezone="Europe/Berlin")

    run_ticker(h, datetime(2026, 10, 25, 12, tzinfo=UTC), every=900)

    assert task_ids(h, "night@") == ["night@2026-10-25T00:30:00Z"]


def test_two_tickers_firing_the_same_minute_create_one_task(h: Harness) -> None:
    create(h, id="hourly")
    h.clock.advance(3600)

    first = fire_due(h.rt, at(h))
    second = fire_due(h.rt, at(h))

    assert task_ids(h, "hourly@") == ["hourly@2026-10-19T01:00:00Z"]
    assert (first["fired"], second["fired"]) == (1, 0)


def test_a_ticker_that_loses_the_cursor_race_publishes_a_duplicate_that_makes_no_second_task(h: Harness) -> None:
    from chalicelib.schedules.engine import tick

    create(h, id="hourly")
    h.clock.advance(3600)
    read_by_both = h.rt.schedules.get("hourly")

    assert tick(h.rt, read_by_both, at(h))["fired"] == 1
    assert tick(h.rt, read_by_both, at(h)) == {}  # its write is refused: the first ticker's counts stand

    assert task_ids(h, "hourly@") == ["hourly@2026-10-19T01:00:00Z"]
    assert show(h, "hourly")["counts"]["fired"] == 1
    assert h.depth(h.rt.tasks_queue.url) == 2  # the loser's message, which the consumer drops
    drain(h)
    assert h.task("hourly@2026-10-19T01:00:00Z")["attempts"] == 1


def test_after_an_outage_firings_inside_the_window_fire_oldest_first_and_older_ones_are_missed(h: Harness) -> None:
    create(h, id="quarterly", rate="15 minutes", catchupWindowSeconds=3600)

    h.clock.advance(5 * 3600)  # five hours without a tick
    counts = fire_due(h.rt, at(h))

    fired = task_ids(h, "quarterly@")
    assert fired == [
        f"quarterly@2026-10-19T{hour:02}:{minute:02}:00Z"
        for hour, minute in [(4, 0), (4, 15), (4, 30), (4, 45), (5, 0)]
    ]
    assert (counts["fired"], counts["missed"], counts["caughtUp"]) == (5, 15, 4)  # 00:15 to 03:45 missed
    view = show(h, "quarterly")
    assert view["counts"]["missed"] == 15 and view["lastFiring"]["taskId"] == fired[-1]
    assert view["nextFirings"][0] == "2026-10-19T05:15:00Z"


def test_overlap_skip_fires_nothing_while_the_previous_task_runs_and_says_so(h: Harness) -> None:
    create(h, id="exclusive", rate="1 minute", overlap="skip")

    run_ticker(h, MONDAY + timedelta(minutes=3))  # nothing delivered: the first task stays PENDING

    assert task_ids(h, "exclusive@") == ["exclusive@2026-10-19T00:01:00Z"]
    view = show(h, "exclusive")
    assert view["counts"]["skipped"] == 2
    assert view["lastSkip"] == {"at": "2026-10-19T00:03:00Z", "waitingOn": "exclusive@2026-10-19T00:01:00Z"}
    drain(h)
    run_ticker(h, MONDAY + timedelta(minutes=4))
    assert task_ids(h, "exclusive@")[-1] == "exclusive@2026-10-19T00:04:00Z"


def test_overlap_buffer_one_holds_one_firing_and_fires_it_when_the_previous_task_ends(h: Harness) -> None:
    create(h, id="buffered", rate="1 minute", overlap="buffer_one")

    run_ticker(h, MONDAY + timedelta(minutes=4))

    assert task_ids(h, "buffered@") == ["buffered@2026-10-19T00:01:00Z"]
    view = show(h, "buffered")
    assert view["buffered"] == "2026-10-19T00:02:00Z" and view["counts"]["skipped"] == 2
    drain(h)
    h.clock.advance(30)  # not a firing minute: the held firing goes at this tick
    fire_due(h.rt, at(h))
    assert task_ids(h, "buffered@") == ["buffered@2026-10-19T00:01:00Z", "buffered@2026-10-19T00:02:00Z"]
    assert show(h, "buffered")["buffered"] is None


def test_overlap_allow_fires_every_firing_whatever_the_previous_task_does(h: Harness) -> None:
    create(h, id="eager", rate="1 minute")

    run_ticker(h, MONDAY + timedelta(minutes=3))

    assert len(task_ids(h, "eager@")) == 3


class Strict(BaseModel):
    pages: int = Field(ge=1)


def test_a_firing_whose_payload_no_longer_validates_is_refused_and_the_schedule_shows_why(h: Harness) -> None:
    loose = Registry()
    for name in h.rt.registry.names():
        loose.register(h.rt.registry.get(name))  # type: ignore[arg-type]
    loose.register(TaskType("report", lambda payload, context: None))
    h.rt.registry = loose
    create(h, id="report", type="report", payload={"pages": "all"})
    create(h, id="healthy")
    changed = Registry()  # the deploy after: the report type's model is strict now
    for name in loose.names():
        task_type = loose.get(name)
        assert task_type is not None
        changed.register(TaskType("report", task_type.handler, payload=Strict) if name == "report" else task_type)
    h.rt.registry = changed

    counts = run_ticker(h, MONDAY + timedelta(hours=1), every=600)

    assert (counts["refused"], counts["fired"]) == (1, 1)  # the other schedule fired all the same
    assert task_ids(h, "report@") == []
    error = show(h, "report")["lastError"]
    assert error["at"] == "2026-10-19T01:00:00Z"
    assert [detail["field"] for detail in error["details"]] == ["payload.pages"]
    status, answer = post(h, "/schedules/report/trigger")
    assert status == 409 and answer["error"]["details"][0]["field"] == "payload.pages"


def test_a_paused_schedule_has_no_due_keys_and_fires_nothing(h: Harness) -> None:
    create(h, id="hourly")
    assert post(h, "/schedules/hourly/pause")[0] == 200

    item = h.rt.dynamodb.get_item(TableName=h.rt.settings.SCHEDULES_TABLE, Key={"id": {"S": "schedule#hourly"}})
    assert "dueAt" not in item["Item"] and "dueShard" not in item["Item"]
    run_ticker(h, MONDAY + timedelta(hours=3), every=600)
    assert task_ids(h, "hourly@") == []
    assert show(h, "hourly")["nextFirings"] == []


def test_a_resumed_schedule_fires_the_firings_it_missed_inside_the_window(h: Harness) -> None:
    create(h, id="hourly", catchupWindowSeconds=7200)
    post(h, "/schedules/hourly/pause")
    h.clock.advance(5 * 3600 + 30)

    assert post(h, "/schedules/hourly/resume")[0] == 200
    counts = run_ticker(h, at(h) + timedelta(minutes=1))

    assert task_ids(h, "hourly@") == [f"hourly@2026-10-19T0{hour}:00:00Z" for hour in (4, 5)]
    assert (counts["missed"], counts["caughtUp"]) == (3, 2)
    history = [(entry["kind"], entry["by"]) for entry in show(h, "hourly")["history"]]
    assert history == [("created", "anonymous"), ("paused", "anonymous"), ("resumed", "anonymous")]


def test_trigger_fires_once_now_with_a_manual_id_and_answers_the_task(h: Harness) -> None:
    create(h, id="hourly")
    h.clock.advance(90.5)

    status, task = post(h, "/schedules/hourly/trigger")

    assert status == 201
    assert task["id"] == "hourly@2026-10-19T00:01:30Z.manual" and task["status"] == "PENDING"
    assert show(h, "hourly")["lastFiring"] == {"at": "2026-10-19T00:01:30Z", "taskId": task["id"], "status": "PENDING"}


def test_backfill_publishes_each_firing_of_the_range_once_and_a_repeat_is_harmless(h: Harness) -> None:
    create(h, id="hourly")
    h.clock.advance(86400)
    backfill = {"from": "2026-10-18T20:00:00Z", "to": "2026-10-18T23:00:00+00:00"}

    status, first = post(h, "/schedules/hourly/backfill", backfill)
    _, again = post(h, "/schedules/hourly/backfill", backfill)

    assert status == 200
    assert [entry["taskId"] for entry in first["published"]] == [
        f"hourly@2026-10-18T{hour}:00:00Z" for hour in (20, 21, 22, 23)
    ]
    assert not any(entry["duplicate"] for entry in first["published"])
    assert all(entry["duplicate"] for entry in again["published"])
    assert len(task_ids(h, "hourly@2026-10-18")) == 4


@pytest.mark.parametrize(
    ("backfill", "field"),
    [
        ({"from": "2026-10-01T00:00:00Z", "to": "2026-10-18T00:00:00Z"}, "to"),  # 400 firings
        ({"from": "2026-10-18T02:00:00Z", "to": "2026-10-18T01:00:00Z"}, "to"),
        ({"from": "2026-10-18T00:00:00Z", "to": "2026-11-18T01:00:00Z"}, "to"),
        ({"from": "2026-10-18T00:00:00", "to": "2026-10-18T01:00:00Z"}, "from"),
        ({"from": 1760000000, "to": "2026-10-18T01:00:00Z"}, "from"),
        ({"to": "2026-10-18T01:00:00Z"}, "from"),
    ],
)
def test_a_backfill_outside_its_rules_is_a_400_naming_the_field(h: Harness, backfill: Any, field: str) -> None:
    create(h, id="hourly")

    status, answer = post(h, "/schedules/hourly/backfill", backfill)

    assert status == 400
    assert field in {detail["field"] for detail in answer["error"]["details"]}
    assert task_ids(h, "hourly@") == []


def test_get_shows_the_definition_next_five_firings_and_the_last_firing_with_its_status(h: Harness) -> None:
    create(h, id="hourly")
    run_ticker(h, MONDAY + timedelta(hours=1), every=600)
    drain(h)

    view = show(h, "hourly")

    assert view["nextFirings"] == [f"2026-10-19T0{hour}:00:00Z" for hour in range(2, 7)]
    assert view["lastFiring"] == {
        "at": "2026-10-19T01:00:00Z",
        "taskId": "hourly@2026-10-19T01:00:00Z",
        "status": "COMPLETED",
    }
    assert (view["rate"], view["paused"], view["source"]) == ("1 hour", False, "api")


def test_put_changes_the_timing_from_now_on_and_is_audited(h: Harness) -> None:
    create(h, id="hourly")
    h.clock.advance(600)
    body = {"type": "simulate", "payload": SUCCEEDS, "cron": "0 12 * * *", "timezone": "Europe/Berlin"}

    response = h.client.http.put("/schedules/hourly", body=json.dumps(body), headers=JSON)

    assert response.status_code == 200, response.body
    view = json.loads(response.body)
    assert (view["cron"], view["rate"], view["nextFirings"][0]) == ("0 12 * * *", None, "2026-10-19T10:00:00Z")
    assert view["history"][-1]["kind"] == "updated"


def test_put_of_another_id_in_the_body_is_a_400_naming_id(h: Harness) -> None:
    create(h, id="hourly")
    body = {"id": "other", "type": "simulate", "payload": SUCCEEDS, "rate": "1 hour"}

    response = h.client.http.put("/schedules/hourly", body=json.dumps(body), headers=JSON)

    assert response.status_code == 400
    assert json.loads(response.body)["error"]["details"][0]["field"] == "id"


def test_delete_removes_the_schedule_and_keeps_its_tasks(h: Harness) -> None:
    create(h, id="hourly")
    run_ticker(h, MONDAY + timedelta(hours=1), every=600)

    assert h.client.http.delete("/schedules/hourly").status_code == 200

    assert h.client.http.get("/schedules/hourly").status_code == 404
    assert task_ids(h, "hourly@") == ["hourly@2026-10-19T01:00:00Z"]
    assert run_ticker(h, MONDAY + timedelta(hours=2), every=600).get("fired") == 0


def test_a_second_post_of_an_id_is_a_409_and_an_unknown_id_a_404(h: Harness) -> None:
    create(h, id="hourly")
    body = {"id": "hourly", "type": "simulate", "payload": SUCCEEDS, "rate": "1 hour"}

    assert h.client.http.post("/schedules", body=json.dumps(body), headers=JSON).status_code == 409
    for method in ("get", "delete"):
        assert getattr(h.client.http, method)("/schedules/nope").status_code == 404
    assert post(h, "/schedules/nope/trigger")[0] == 404


def test_the_list_pages_through_every_schedule_with_a_signed_cursor(h: Harness) -> None:
    for n in range(5):
        create(h, id=f"s{n}")

    seen, cursor = [], None
    for _ in range(10):
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = json.loads(h.client.http.get(f"/schedules{query}").body)
        seen += [entry["id"] for entry in page["schedules"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break

    assert sorted(seen) == [f"s{n}" for n in range(5)]
    assert h.client.http.get("/schedules?cursor=forged").status_code == 400
    assert h.client.http.get("/schedules?limt=2").status_code == 400


def test_the_schedule_routes_audit_the_iam_principal(h: Harness) -> None:
    create(h, id="hourly")

    answer = as_operator("POST", "/schedules/{schedule_id}/pause", "/schedules/hourly/pause", schedule_id="hourly")

    assert answer["statusCode"] == 200, answer
    assert json.loads(answer["body"])["history"][-1] == {
        "kind": "paused",
        "at": "2026-10-19T00:00:00Z",
        "by": OPERATOR_ARN,
    }


def declaring(h: Harness, *schedules: dict[str, Any]) -> None:
    """Deploy a build whose `report` type declares `schedules`."""
    from chalicelib.registry import task_type

    registry = Registry()
    for name in ("simulate",):
        registry.register(h.rt.registry.get(name))  # type: ignore[arg-type]
    task_type("report", schedules=list(schedules), registry=registry)(lambda payload, context: None)
    h.rt.registry = registry


def test_reconcile_creates_updates_and_deletes_code_declared_schedules_and_leaves_api_ones(h: Harness) -> None:
    from chalicelib.schedules.declared import reconcile

    create(h, id="made-by-hand")
    declaring(
        h, {"id": "nightly", "cron": "0 2 * * *", "payload": {}}, {"id": "made-by-hand", "rate": "1 day", "payload": {}}
    )
    assert reconcile(h.rt, at(h)) == {"created": 1, "updated": 0, "deleted": 0, "unchanged": 0, "conflicts": 1}
    assert reconcile(h.rt, at(h))["unchanged"] == 1
    assert show(h, "nightly")["source"] == "code" and show(h, "made-by-hand")["rate"] == "1 hour"

    declaring(h, {"id": "nightly", "cron": "0 3 * * *", "payload": {}})
    assert reconcile(h.rt, at(h))["updated"] == 1
    assert show(h, "nightly")["cron"] == "0 3 * * *"

    declaring(h)
    assert reconcile(h.rt, at(h))["deleted"] == 1
    assert h.client.http.get("/schedules/nightly").status_code == 404
    assert show(h, "made-by-hand")["source"] == "api"


def test_a_code_declared_schedule_refuses_put_and_delete_but_may_be_paused(h: Harness) -> None:
    from chalicelib.schedules.declared import reconcile

    declaring(h, {"id": "nightly", "cron": "0 2 * * *", "payload": {}})
    reconcile(h.rt, at(h))
    body = {"type": "report", "payload": {}, "rate": "1 hour"}

    put = h.client.http.put("/schedules/nightly", body=json.dumps(body), headers=JSON)
    deleted = h.client.http.delete("/schedules/nightly")

    assert put.status_code == deleted.status_code == 409
    assert "change it there" in json.loads(put.body)["error"]["message"]
    assert post(h, "/schedules/nightly/pause")[0] == 200
    assert reconcile(h.rt, at(h))["unchanged"] == 1
    assert show(h, "nightly")["paused"] is True


def test_a_firing_the_queue_refuses_is_not_lost_the_next_tick_publishes_it_under_the_same_id(h: Harness) -> None:
    from tests.integration.faults import inject_errors

    create(h, id="hourly")
    h.clock.advance(3600)
    with inject_errors(h.rt.tasks_queue._client, "SendMessage", status=500, code="InternalError"):
        assert fire_due(h.rt, at(h))["fired"] == 0
    assert task_ids(h, "hourly@") == []

    h.clock.advance(60)
    counts = fire_due(h.rt, at(h))

    assert (counts["fired"], counts["caughtUp"]) == (1, 0)
    assert task_ids(h, "hourly@") == ["hourly@2026-10-19T01:00:00Z"]


def test_a_long_catch_up_fires_at_most_sixty_a_tick_and_goes_on_at_the_next(h: Harness) -> None:
    from chalicelib.schedules.engine import MAX_FIRINGS_PER_TICK

    create(h, id="minutely", rate="1 minute", catchupWindowSeconds=7200)
    h.clock.advance(90 * 60)

    first = fire_due(h.rt, at(h))
    second = fire_due(h.rt, at(h))

    assert (first["fired"], second["fired"]) == (MAX_FIRINGS_PER_TICK, 90 - MAX_FIRINGS_PER_TICK)
    assert len(task_ids(h, "minutely@")) == 90 and first["missed"] == 0


def test_an_unreadable_schedule_item_or_a_failing_schedule_does_not_stop_the_tick_for_the_others(h: Harness) -> None:
    from chalicelib.schedules.store import due_at, due_shard
    from tests.integration.faults import inject_errors

    create(h, id="hourly")
    create(h, id="exclusive", overlap="skip")
    h.rt.dynamodb.put_item(
        TableName=h.rt.settings.SCHEDULES_TABLE,
        Item={
            "id": {"S": "schedule#broken"},
            "version": {"N": "1"},
            "definition": {"S": "{not json"},
            "dueShard": {"S": due_shard("hourly")},  # beside a healthy one, in the same page
            "dueAt": {"S": due_at(MONDAY)},
        },
    )
    h.clock.advance(3600)
    assert fire_due(h.rt, at(h))["fired"] == 2
    h.clock.advance(3600)

    # The skip schedule's read of its previous task fails: it alone stays due, the others fire.
    with inject_errors(h.rt.store._client, "GetItem", status=400, code="ValidationException"):
        counts = fire_due(h.rt, at(h))

    assert counts["fired"] == 1
    assert task_ids(h, "hourly@")[-1] == "hourly@2026-10-19T02:00:00Z"
    assert task_ids(h, "exclusive@") == ["exclusive@2026-10-19T01:00:00Z"]
    drain(h)
    assert fire_due(h.rt, at(h))["fired"] == 1
    assert task_ids(h, "exclusive@")[-1] == "exclusive@2026-10-19T02:00:00Z"


def test_the_schedule_answers_are_the_documented_schemas(h: Harness) -> None:
    import jsonschema

    from chalicelib.openapi import openapi_document

    document = json.loads(json.dumps(openapi_document()))

    def conforms(answer: Any, model: str) -> None:
        jsonschema.validate(answer, {"$ref": f"#/components/schemas/{model}", "components": document["components"]})

    conforms(create(h, id="hourly", overlap="skip"), "ScheduleView")
    run_ticker(h, MONDAY + timedelta(hours=2), every=1800)
    conforms(show(h, "hourly"), "ScheduleView")
    conforms(json.loads(h.client.http.get("/schedules?limit=1").body), "SchedulePage")
    conforms(post(h, "/schedules/hourly/trigger")[1], "TaskView")
    conforms(
        post(h, "/schedules/hourly/backfill", {"from": "2026-10-18T00:00:00Z", "to": "2026-10-18T02:00:00Z"})[1],
        "BackfillAnswer",
    )
    conforms(json.loads(h.client.http.delete("/schedules/hourly").body), "ScheduleDeleted")


def test_a_tick_publishes_at_most_its_budget_and_the_next_tick_takes_the_rest(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.schedules import engine

    monkeypatch.setattr(engine, "MAX_PUBLISHES_PER_TICK", 3)
    for n in range(2):
        create(h, id=f"quarterly-{n}", rate="15 minutes")
    h.clock.advance(30 * 60)  # two firings each are due

    first = fire_due(h.rt, at(h))
    second = fire_due(h.rt, at(h))

    assert (first["fired"], second["fired"]) == (3, 1)
    assert len(task_ids(h, "quarterly-")) == 4
