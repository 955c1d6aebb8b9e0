"""`runAt`: a task stored at once and started at its time, days ahead, through a timer and the ticker.

The store, the consumer and the ticker share the fake clock; SQS's own delays run on the
real one (moto), so a test that wants a delayed message now strips its delay on the way out
(`early_messages`): that is a message arriving early, which the consumer must hold back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from chalice.test import Client

from chalicelib.models import MAX_DELAY_SECONDS
from chalicelib.tasks.record import iso_from_ms, ms_from_iso
from chalicelib.tick import ticker
from chalicelib.tick.timers import DUE_SHARDS, TIMER_PREFIX, due_shard, timer_key
from tests.conftest import FakeClock
from tests.integration.harness import FAILS, SUCCEEDS, Harness
from tests.integration.lambda_sqs import deliver
from tests.integration.test_delay import SentParams, queue_counts
from tests.integration.test_never_stranded import ProcessKilled, drain, killed_after

JSON = {"Content-Type": "application/json"}
DAY = 86_400
THREE_DAYS = 3 * DAY


@pytest.fixture
def h(client: Client, runtime: Any, clock: FakeClock) -> Harness:
    clock.now = float(int(clock.now))  # whole seconds: every time below is exact in ms
    return Harness(client, runtime, clock)


def post(h: Harness, path: str, body: Any) -> Any:
    return h.client.http.post(path, body=json.dumps(body), headers=JSON)


def at(h: Harness, seconds_ahead: float) -> str:
    """The RFC 3339 time `seconds_ahead` of the fake clock's now, in UTC with `Z`."""
    return iso_from_ms(int((h.clock.now + seconds_ahead) * 1000))


def publish_at(h: Harness, task_id: str, run_at: str, payload: dict[str, Any] = SUCCEEDS, **extra: Any) -> Any:
    response = post(h, "/publish", {"id": task_id, "payload": payload, "runAt": run_at, **extra})
    assert response.status_code == 201, response.body
    return json.loads(response.body)


def tick(h: Harness) -> dict[str, int]:
    """One invocation of app.py's scheduled function, as EventBridge makes it."""
    event = h.client.events.generate_cw_event(
        source="aws.events", detail_type="Scheduled Event", detail={}, resources=["rule/tick"]
    )
    return h.client.lambda_.invoke("tick", event).payload


def timer_item(h: Harness, task_id: str) -> dict[str, Any] | None:
    item = h.rt.dynamodb.get_item(
        TableName=h.rt.settings.SCHEDULES_TABLE, Key={"id": {"S": timer_key(task_id)}}, ConsistentRead=True
    ).get("Item")
    return item


def history_attempts(task: dict[str, Any]) -> list[dict[str, Any]]:
    return [entry for entry in task["history"] if entry.get("kind") == "attempt"]


@contextmanager
def early_messages(h: Harness) -> Iterator[None]:
    """Every message the app sends is visible at once: as if it arrived early, whatever its delay."""

    def strip(params: dict[str, Any], **_: Any) -> None:
        params.pop("DelaySeconds", None)

    event = "before-parameter-build.sqs.SendMessage"
    h.sqs.meta.events.register(event, strip)
    try:
        yield
    finally:
        h.sqs.meta.events.unregister(event, strip)


# --- publish ----------------------------------------------------------------------------------


def test_a_task_to_run_three_days_ahead_is_stored_pending_at_once_with_a_timer_and_no_message(h: Harness) -> None:
    run_at = at(h, THREE_DAYS)

    answer = publish_at(h, "in-3-days", run_at)

    assert answer == {"id": "in-3-days", "status": "PENDING", "duplicate": False}
    task = h.task("in-3-days")
    assert (task["status"], task["notBefore"], task["attempts"]) == ("PENDING", run_at, 0)
    assert queue_counts(h.rt) == (0, 0)
    item = timer_item(h, "in-3-days")
    assert item is not None
    assert item["dueAt"]["S"] == str(ms_from_iso(run_at)).zfill(13)
    assert item["dueShard"]["S"] == due_shard(timer_key("in-3-days"))
    assert 0 <= int(item["dueShard"]["S"]) < DUE_SHARDS
    assert json.loads(item["body"]["S"]) == {"id": "in-3-days", "type": "simulate", "payload": SUCCEEDS}


def test_a_run_at_written_with_an_offset_is_the_same_moment_in_utc(h: Harness) -> None:
    moment = datetime.fromtimestamp(h.clock.now + DAY, UTC)
    local = moment.astimezone(timezone(timedelta(hours=1))).isoformat()
    assert local.endswith("+01:00")

    publish_at(h, "berlin", local)

    assert h.task("berlin")["notBefore"] == at(h, DAY)


@pytest.mark.parametrize(("seconds_ahead", "delay"), [(-3600, None), (0, None), (600, 600), (MAX_DELAY_SECONDS, 900)])
def test_a_run_at_in_the_past_now_or_within_900_s_keeps_the_delay_path(
    h: Harness, seconds_ahead: int, delay: int | None
) -> None:
    sent = SentParams(h.sqs)
    run_at = at(h, seconds_ahead)

    publish_at(h, "soon", run_at)

    assert sent.delays() == {"soon": delay}
    assert timer_item(h, "soon") is None
    assert h.task("soon")["notBefore"] == run_at


def test_a_run_at_one_second_past_900_s_gets_a_timer(h: Harness) -> None:
    sent = SentParams(h.sqs)

    publish_at(h, "just-past", at(h, MAX_DELAY_SECONDS + 1))

    assert sent.delays() == {}
    assert timer_item(h, "just-past") is not None


def test_a_past_run_at_runs_at_once(h: Harness) -> None:
    publish_at(h, "overdue", at(h, -DAY))

    h.deliver()

    assert h.task("overdue")["status"] == "COMPLETED"


BAD_RUN_ATS = [
    ("2026-12-04T09:00:00", "has no offset"),
    ("2026-12-04", "RFC 3339"),
    ("tomorrow", "RFC 3339"),
    ("1767225600", "RFC 3339"),
    (1767225600, "RFC 3339"),
    (None, "RFC 3339"),
    ("2026-02-30T09:00:00Z", "is not a date-time"),
    ("2026-12-04T09:00:00+25:00", "RFC 3339"),
]


@pytest.mark.parametrize(("run_at", "said"), BAD_RUN_ATS)
def test_publish_refuses_a_run_at_that_is_not_an_rfc_3339_time_with_an_offset_naming_the_field(
    h: Harness, run_at: Any, said: str
) -> None:
    response = post(h, "/publish", {"id": "bad-time", "payload": {}, "runAt": run_at})

    assert response.status_code == 400, response.body
    error = json.loads(response.body)["error"]
    assert error["code"] == "validation_error"
    assert [detail["field"] for detail in error["details"]] == ["runAt"]
    assert said in error["details"][0]["message"]
    assert h.client.http.get("/tasks/bad-time").status_code == 404
    assert queue_counts(h.rt) == (0, 0)


def test_publish_refuses_a_run_at_more_than_365_days_ahead_and_takes_one_just_inside(h: Harness) -> None:
    response = post(h, "/publish", {"id": "too-far", "payload": {}, "runAt": at(h, 365 * DAY + 1)})

    assert response.status_code == 400
    [detail] = json.loads(response.body)["error"]["details"]
    assert detail["field"] == "runAt" and "at most 365 days ahead" in detail["message"]
    assert timer_item(h, "too-far") is None
    publish_at(h, "far", at(h, 365 * DAY))
    assert timer_item(h, "far") is not None


@pytest.mark.parametrize("delay", [0, 30])
def test_run_at_and_delay_seconds_together_are_refused_naming_both(h: Harness, delay: int) -> None:
    response = post(h, "/publish", {"id": "both", "payload": {}, "runAt": at(h, DAY), "delaySeconds": delay})

    assert response.status_code == 400
    details = json.loads(response.body)["error"]["details"]
    assert sorted(detail["field"] for detail in details) == ["delaySeconds", "runAt"]
    assert all("exclude each other" in detail["message"] for detail in details)


def test_a_batch_refuses_only_its_bad_run_at_entries_and_times_the_others(h: Harness) -> None:
    sent = SentParams(h.sqs)
    tasks = [
        {"id": "b-naive", "payload": {}, "runAt": "2026-12-04T09:00:00"},
        {"id": "b-both", "payload": {}, "runAt": at(h, DAY), "delaySeconds": 5},
        {"id": "b-later", "payload": SUCCEEDS, "runAt": at(h, DAY)},
        {"id": "b-soon", "payload": SUCCEEDS, "runAt": at(h, 60)},
        {"id": "b-now", "payload": SUCCEEDS},
    ]

    results = json.loads(post(h, "/publish/batch", {"tasks": tasks}).body)["results"]

    assert [detail["field"] for detail in results[0]["error"]["details"]] == ["runAt"]
    assert sorted(detail["field"] for detail in results[1]["error"]["details"]) == ["delaySeconds", "runAt"]
    assert results[2:] == [{"id": i, "status": "PENDING", "duplicate": False} for i in ("b-later", "b-soon", "b-now")]
    assert sent.delays() == {"b-soon": 60, "b-now": None}
    assert timer_item(h, "b-later") is not None and h.task("b-later")["notBefore"] == tasks[2]["runAt"]
    assert h.client.http.get("/tasks/b-naive").status_code == 404


def test_a_duplicate_publish_of_a_timed_task_keeps_the_first_task_and_its_timer(h: Harness) -> None:
    first = at(h, THREE_DAYS)
    publish_at(h, "twice", first, SUCCEEDS)

    again = publish_at(h, "twice", at(h, DAY), FAILS)

    assert again == {"id": "twice", "status": "PENDING", "duplicate": True}
    task = h.task("twice")
    assert (task["notBefore"], task["payload"]) == (first, SUCCEEDS)
    assert timer_item(h, "twice")["dueAt"]["S"] == str(ms_from_iso(first)).zfill(13)


# --- the ticker ---------------------------------------------------------------------------------


def test_the_ticker_sends_nothing_before_the_lookahead_and_then_the_message_delayed_to_the_second(
    h: Harness,
) -> None:
    run_at = at(h, THREE_DAYS)
    publish_at(h, "on-time", run_at)
    sent = SentParams(h.sqs)
    lookahead = ticker.lookahead_ms(h.rt) / 1000
    assert lookahead == 120

    h.clock.advance(THREE_DAYS - lookahead - 1)
    assert tick(h)["timersDispatched"] == 0
    h.clock.advance(31)  # 90 s before its time

    counts = tick(h)

    assert counts["timersDispatched"] == 1
    assert sent.delays() == {"on-time": 90}
    assert timer_item(h, "on-time") is None
    [(_, params)] = sent.calls
    assert params["QueueUrl"] == h.rt.tasks_queue.url
    item = h.rt.store.get("on-time")
    assert item is not None and item.last_message_id is not None and item.status.value == "PENDING"
    assert tick(h)["timersDispatched"] == 0  # deleted: nothing is sent twice


def test_a_task_three_days_ahead_starts_at_its_time_and_not_before(h: Harness) -> None:
    run_at = at(h, THREE_DAYS)
    publish_at(h, "three-days", run_at)
    h.clock.advance(THREE_DAYS - 60)  # whole and half seconds: exact, so the last step lands on runAt
    with early_messages(h):
        tick(h)
        early = h.deliver()  # a minute early: held back, no attempt spent, no receive spent

        assert len(early.records) == 1
        assert h.task("three-days")["attempts"] == 0
        assert h.task("three-days")["status"] == "PENDING"
        h.clock.advance(59.5)
        assert h.deliver().records  # the renewed copy, half a second early: held back again
        assert h.task("three-days")["attempts"] == 0
        h.clock.advance(0.5)
        h.deliver()

    task = h.task("three-days")
    assert task["status"] == "COMPLETED"
    [attempt] = history_attempts(task)
    assert attempt["startedAt"] == run_at
    assert queue_counts(h.rt) == (0, 0)


def test_an_early_message_is_renewed_with_the_rest_of_the_wait_and_keeps_the_task_s_message_id(
    h: Harness,
) -> None:
    publish_at(h, "renewed", at(h, THREE_DAYS))
    h.clock.advance(THREE_DAYS - 100)
    with early_messages(h):
        tick(h)
    dispatched = h.rt.store.get("renewed")
    assert dispatched is not None
    sent = SentParams(h.sqs)

    h.deliver()

    [(_, params)] = sent.calls
    assert params["DelaySeconds"] == 100
    assert params["MessageAttributes"]["taskMessageId"]["StringValue"] == dispatched.last_message_id


def test_a_timed_task_keeps_its_class_and_its_expiry_through_its_timer(h: Harness) -> None:
    publish_at(h, "high-later", at(h, DAY), priority="high", expiresInSeconds=DAY + 600)
    sent = SentParams(h.sqs)
    h.clock.advance(DAY)

    tick(h)

    [(_, params)] = sent.calls
    assert params["QueueUrl"] == h.rt.queue_for(h.rt.store.get("high-later").priority).url
    assert params["QueueUrl"].endswith("-high")
    start_by = params["MessageAttributes"]["startBy"]["StringValue"]
    assert h.task("high-later")["startBy"] == iso_from_ms(int(start_by))
    url = h.rt.queue_for(h.rt.store.get("high-later").priority).url
    deliver(h.client, "process_high_priority_tasks", h.sqs, url)
    assert h.task("high-later")["status"] == "COMPLETED"


def test_a_timer_of_another_kind_of_item_in_the_index_is_not_read_as_a_timer(h: Harness) -> None:
    h.rt.dynamodb.put_item(
        TableName=h.rt.settings.SCHEDULES_TABLE,
        Item={"id": {"S": "schedule#hourly"}, "dueShard": {"S": "0"}, "dueAt": {"S": "0000000000000"}},
    )
    publish_at(h, "mine", at(h, DAY))
    h.clock.advance(DAY)

    assert tick(h)["timersDispatched"] == 1
    assert all(not item["id"]["S"].startswith(TIMER_PREFIX) for item in scan_schedules(h))


def scan_schedules(h: Harness) -> list[dict[str, Any]]:
    return h.rt.dynamodb.scan(TableName=h.rt.settings.SCHEDULES_TABLE)["Items"]


def test_many_timers_due_at_once_are_all_sent_in_one_tick(h: Harness) -> None:
    body = {"tasks": [{"id": f"burst-{n:02d}", "payload": SUCCEEDS, "runAt": at(h, DAY)} for n in range(40)]}
    assert post(h, "/publish/batch", body).status_code == 200
    h.clock.advance(DAY)

    assert tick(h)["timersDispatched"] == 40
    drain(h)

    assert {h.task(f"burst-{n:02d}")["status"] for n in range(40)} == {"COMPLETED"}


def test_a_tick_reads_a_bounded_number_of_pages_per_shard_and_leaves_the_rest_for_the_next(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.tick import timers

    monkeypatch.setattr(timers, "PAGE_SIZE", 2)
    monkeypatch.setattr(timers, "MAX_PAGES", 2)
    body = {"tasks": [{"id": f"paged-{n:02d}", "payload": SUCCEEDS, "runAt": at(h, DAY)} for n in range(60)]}
    assert post(h, "/publish/batch", body).status_code == 200
    h.clock.advance(DAY)

    first = tick(h)["timersDispatched"]
    rest = [tick(h)["timersDispatched"] for _ in range(10)]

    assert first <= DUE_SHARDS * 2 * 2
    assert first + sum(rest) == 60
    assert not [item for item in scan_schedules(h) if item["id"]["S"].startswith(TIMER_PREFIX)]


def test_a_failing_tick_job_is_counted_and_the_others_still_run(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []

    def broken(rt: Any, now: Any) -> dict[str, int]:
        raise RuntimeError("job broke")

    def counting(rt: Any, now: Any) -> dict[str, int]:
        seen.append(now)
        return {"firings": 2}

    monkeypatch.setattr(ticker, "TICK_JOBS", [broken, counting])

    counts = tick(h)

    assert (counts["jobsFailed"], counts["firings"]) == (1, 2)
    assert seen[0].timestamp() == pytest.approx(h.clock.now)


def test_one_timer_whose_send_fails_stays_for_the_next_tick_and_the_others_go(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.errors import QueueError

    publish_at(h, "unlucky", at(h, DAY))
    publish_at(h, "lucky", at(h, DAY))
    h.clock.advance(DAY)
    queue, send = h.rt.tasks_queue, h.rt.tasks_queue.send

    def refuse_unlucky(body: str, *args: Any, **kwargs: Any) -> str:
        if '"unlucky"' in body:
            raise QueueError("injected")
        return send(body, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(queue, "send", refuse_unlucky)
        counts = tick(h)

    assert (counts["timersDispatched"], counts["timersFailed"]) == (1, 1)
    assert timer_item(h, "unlucky") is not None and timer_item(h, "lucky") is None
    assert tick(h)["timersDispatched"] == 1
    drain(h)
    assert {h.task("unlucky")["status"], h.task("lucky")["status"]} == {"COMPLETED"}


# --- cancel before runAt -----------------------------------------------------------------------


def test_a_task_cancelled_before_its_time_ends_cancelled_and_its_timer_sends_nothing(h: Harness) -> None:
    publish_at(h, "called-off", at(h, THREE_DAYS))
    response = h.client.http.post("/tasks/called-off/cancel", body=b"", headers=JSON)
    assert response.status_code == 200, response.body
    sent = SentParams(h.sqs)
    h.clock.advance(THREE_DAYS)

    counts = tick(h)

    assert (counts["timersDispatched"], counts["timersSkipped"]) == (0, 1)
    assert sent.calls == []
    assert timer_item(h, "called-off") is None
    assert h.task("called-off")["status"] == "CANCELLED"


def test_a_task_cancelled_after_its_message_left_but_before_its_time_never_runs(h: Harness) -> None:
    publish_at(h, "late-cancel", at(h, THREE_DAYS))
    h.clock.advance(THREE_DAYS - 60)
    with early_messages(h):
        tick(h)
    assert h.client.http.post("/tasks/late-cancel/cancel", body=b"", headers=JSON).status_code == 200
    h.clock.advance(60)

    h.deliver()

    task = h.task("late-cancel")
    assert task["status"] == "CANCELLED" and history_attempts(task) == []
    assert queue_counts(h.rt) == (0, 0)


# --- kills between the steps -------------------------------------------------------------------


def run_it(h: Harness, task_id: str, ticks: int = 2) -> dict[str, Any]:
    """Tick (as often as `ticks`) and deliver until everything is done; the task as it ends."""
    for _ in range(ticks):
        tick(h)
    drain(h)
    return h.task(task_id)


def assert_ran_once(task: dict[str, Any]) -> None:
    assert task["status"] == "COMPLETED", task
    assert [entry["attempt"] for entry in history_attempts(task)] == [1]


def test_a_publish_killed_after_its_timer_is_written_is_stored_and_run_by_the_consumer_at_its_time(
    h: Harness,
) -> None:
    run_at = at(h, DAY)
    with killed_after(h.rt.dynamodb, "PutItem"), pytest.raises(ProcessKilled):
        post(h, "/publish", {"id": "half-published", "payload": SUCCEEDS, "runAt": run_at})
    assert h.rt.store.get("half-published") is None and timer_item(h, "half-published") is not None
    h.clock.advance(DAY)

    task = run_it(h, "half-published")

    assert_ran_once(task)
    assert history_attempts(task)[0]["startedAt"] >= run_at


def test_a_repeat_of_a_publish_killed_after_its_timer_stores_the_repeat_and_its_timer(h: Harness) -> None:
    with killed_after(h.rt.dynamodb, "PutItem"), pytest.raises(ProcessKilled):
        post(h, "/publish", {"id": "repeated", "payload": FAILS, "runAt": at(h, DAY)})
    second = at(h, 2 * DAY)

    answer = publish_at(h, "repeated", second, SUCCEEDS)

    assert answer["duplicate"] is False
    assert timer_item(h, "repeated")["dueAt"]["S"] == str(ms_from_iso(second)).zfill(13)
    h.clock.advance(2 * DAY)
    assert_ran_once(run_it(h, "repeated"))


@pytest.mark.parametrize(
    ("client_of", "operation"),
    [("sqs", "SendMessage"), ("dynamodb", "UpdateItem"), ("dynamodb", "DeleteItem")],
)
def test_a_tick_killed_after_any_step_of_a_timer_leaves_its_task_neither_lost_nor_run_twice(
    h: Harness, client_of: str, operation: str
) -> None:
    publish_at(h, "survivor", at(h, DAY))
    h.clock.advance(DAY)
    aws_client = h.sqs if client_of == "sqs" else h.rt.dynamodb

    with killed_after(aws_client, operation), pytest.raises(ProcessKilled):
        tick(h)

    task = run_it(h, "survivor")
    assert_ran_once(task)
    assert timer_item(h, "survivor") is None
    assert queue_counts(h.rt) == (0, 0)


def test_a_tick_killed_after_recording_the_message_only_deletes_the_timer_on_the_next_tick(h: Harness) -> None:
    publish_at(h, "recorded", at(h, DAY))
    h.clock.advance(DAY)
    with killed_after(h.rt.dynamodb, "UpdateItem"), pytest.raises(ProcessKilled):
        tick(h)
    sent = SentParams(h.sqs)

    counts = tick(h)

    assert (counts["timersDispatched"], counts["timersSettled"]) == (0, 1)
    assert sent.calls == [] and timer_item(h, "recorded") is None
    assert queue_counts(h.rt) == (1, 0)


def test_two_tickers_in_the_same_minute_send_twice_and_the_task_still_runs_once(h: Harness) -> None:
    publish_at(h, "contested", at(h, DAY))
    h.clock.advance(DAY)
    sent = SentParams(h.sqs)
    second: list[dict[str, int]] = []

    def other_ticker(**_: Any) -> None:
        if not second:  # the other ticker read the timer and the task before this one sent
            second.append({})
            second[0] = ticker.tick(h.rt)

    h.sqs.meta.events.register("before-call.sqs.SendMessage", other_ticker)
    try:
        first = tick(h)
    finally:
        h.sqs.meta.events.unregister("before-call.sqs.SendMessage", other_ticker)

    assert first["timersDispatched"] + second[0]["timersDispatched"] == 2
    assert len(sent.calls) == 2
    drain(h)
    assert_ran_once(h.task("contested"))
    assert timer_item(h, "contested") is None


def test_the_openapi_document_describes_run_at_as_a_date_time_that_excludes_delay_seconds(h: Harness) -> None:
    from openapi_spec_validator import validate

    document = json.loads(h.client.http.get("/openapi.json").body)
    validate(document)
    for variant in ("PublishSimulate", "PublishChecksum"):
        schema = document["components"]["schemas"][variant]
        assert schema["properties"]["runAt"]["format"] == "date-time"
        assert "365 days" in schema["properties"]["runAt"]["description"]
        assert schema["dependentSchemas"]["runAt"] == {"not": {"required": ["delaySeconds"]}}
