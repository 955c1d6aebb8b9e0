"""The operator routes against moto: list, stats, retry, cancel and bulk retry, with every status transition."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from chalice.test import Client

from chalicelib.tasks.index import SHARDS, shard_of
from tests.conftest import FakeClock
from tests.integration.harness import FAILS, SUCCEEDS, Harness, fail_until_last

JSON = {"Content-Type": "application/json"}
DOOMED = {"simulation": {"failureChance": 1, "permanentFailure": True}}


@pytest.fixture
def h(client: Client, runtime: Any, clock: FakeClock) -> Harness:
    return Harness(client, runtime, clock)


def get(h: Harness, path: str) -> tuple[int, Any]:
    response = h.client.http.get(path)
    return response.status_code, json.loads(response.body)


def post(h: Harness, path: str, body: Any = None) -> tuple[int, Any]:
    response = h.client.http.post(path, body=json.dumps(body) if body is not None else b"", headers=JSON)
    return response.status_code, json.loads(response.body)


def failed_tasks(h: Harness, count: int, prefix: str = "f") -> list[str]:
    """`count` FAILED tasks, each updated one millisecond after the previous."""
    ids = [f"{prefix}{n:03d}" for n in range(count)]
    for task_id in ids:
        h.publish(task_id, DOOMED)
    while h.depth(h.rt.tasks_queue.url):
        h.clock.advance(0.001)
        h.deliver()
    return ids


# --- GET /tasks?status= -------------------------------------------------------


def test_listing_needs_a_listed_status_and_a_limit_in_range(h: Harness) -> None:
    for path, field in [
        ("/tasks", "status"),
        ("/tasks?status=COMPLETED", "status"),
        ("/tasks?status=failed", "status"),
        ("/tasks?status=FAILED&limit=0", "limit"),
        ("/tasks?status=FAILED&limit=101", "limit"),
        ("/tasks?status=FAILED&limit=ten", "limit"),
        ("/tasks?status=FAILED&page=2", "page"),
    ]:
        status, body = get(h, path)
        assert status == 400, path
        assert body["error"]["details"][0]["field"] == field, path
    _, body = get(h, "/tasks?status=PENDING")
    assert "FAILED, RETRYING, CANCELLED" in body["error"]["details"][0]["message"]


@pytest.mark.parametrize("unlisted", ["PENDING", "PROCESSING"])
def test_listing_pending_or_processing_is_a_400_saying_why_and_pointing_at_stuck(h: Harness, unlisted: str) -> None:
    status, body = get(h, f"/tasks?status={unlisted}")
    assert status == 400
    [detail] = body["error"]["details"]
    assert detail["field"] == "status"
    assert detail["message"].startswith(f"{unlisted} is not listed")
    assert "WRU" in detail["message"] and "GET /stuck" in detail["message"]


def test_pages_cover_every_failed_task_once_newest_first_across_shards(h: Harness) -> None:
    ids = failed_tasks(h, 45)
    assert len({shard_of(task_id) for task_id in ids}) == SHARDS  # the tasks really are spread

    seen: list[dict[str, Any]] = []
    cursor = None
    for _ in range(10):
        path = "/tasks?status=FAILED&limit=20" + (f"&cursor={cursor}" if cursor else "")
        status, page = get(h, path)
        assert status == 200
        seen += page["tasks"]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert [task["id"] for task in seen] == list(reversed(ids))
    first = seen[0]
    assert set(first) == {
        "id",
        "type",
        "status",
        "attempts",
        "maxAttempts",
        "createdAt",
        "updatedAt",
        "lastError",
        "priority",
        "tags",
    }
    assert (first["type"], first["status"], first["attempts"]) == ("simulate", "FAILED", 1)
    assert (first["priority"], first["tags"]) == ("default", [])
    assert first["lastError"].startswith("permanent failure")


def test_a_page_never_repeats_or_skips_a_task_that_did_not_change(h: Harness) -> None:
    ids = failed_tasks(h, 12)
    _, first = get(h, "/tasks?status=FAILED&limit=5")
    # Between pages: one listed task is retried (it leaves the list), new failures arrive.
    post(h, f"/tasks/{first['tasks'][0]['id']}/retry")
    failed_tasks(h, 3, prefix="late")
    rest: list[str] = []
    cursor = first["nextCursor"]
    while cursor:
        _, page = get(h, f"/tasks?status=FAILED&limit=5&cursor={cursor}")
        rest += [task["id"] for task in page["tasks"]]
        cursor = page["nextCursor"]
    assert rest == list(reversed(ids))[5:]


@pytest.mark.parametrize("tamper", ["forged", "altered", "other status", "garbage"])
def test_a_forged_altered_or_foreign_cursor_is_a_400(h: Harness, tamper: str) -> None:
    failed_tasks(h, 4)
    _, page = get(h, "/tasks?status=FAILED&limit=2")
    cursor = page["nextCursor"]
    body, signature = cursor.split(".")
    bad = {
        "forged": f"{body}.{'A' * len(signature)}",
        "altered": f"{body[:-2]}{'x' if body[-2] != 'x' else 'y'}{body[-1]}.{signature}",
        "other status": cursor,
        "garbage": "not-a-cursor",
    }[tamper]
    status_name = "CANCELLED" if tamper == "other status" else "FAILED"
    status, answer = get(h, f"/tasks?status={status_name}&limit=2&cursor={bad}")
    assert status == 400
    assert answer["error"]["details"][0]["field"] == "cursor"


def test_a_task_that_succeeds_at_once_writes_nothing_to_the_index_and_no_extra_request(h: Harness) -> None:
    calls: list[tuple[str, str]] = []
    h.rt.store.client.meta.events.register(
        "before-parameter-build.dynamodb", lambda params, model, **_: calls.append((model.name, params["TableName"]))
    )
    h.publish("quick", SUCCEEDS)
    h.deliver()
    tasks, flow = h.rt.settings.TASKS_TABLE, h.rt.settings.FLOW_TABLE
    # put, acquire, complete: as before the index; and the pause view, read once per container
    assert calls == [("PutItem", tasks), ("GetItem", flow), ("UpdateItem", tasks), ("UpdateItem", tasks)]
    item = h.rt.store.get_item("quick")
    assert item is not None and "statusShard" not in item and "statusSort" not in item


# --- GET /stats -----------------------------------------------------------------


def test_stats_count_the_listed_statuses_and_give_the_queues_depths(h: Harness) -> None:
    failed_tasks(h, 3)
    h.publish("retrying", FAILS)
    h.deliver()
    h.publish("waiting", SUCCEEDS)
    h.publish("stopped", SUCCEEDS)
    post(h, "/tasks/stopped/cancel")

    status, stats = get(h, "/stats")

    assert status == 200
    exact = {"FAILED": 3, "RETRYING": 1, "CANCELLED": 1}
    # waiting's and stopped's messages are visible; retrying's is hidden through its backoff, and
    # taken off PROCESSING as the RETRYING task it is; nothing completed
    assert stats["counts"] == {**exact, "PENDING": 2, "PROCESSING": 0, "COMPLETED": 0}
    assert all(stats["sources"][f"counts.{name}"]["exact"] is False for name in ("PENDING", "PROCESSING"))
    tasks_queue = stats["queues"]["tasks"]
    assert tasks_queue["visible"] + tasks_queue["inFlight"] + tasks_queue["delayed"] == 3  # retrying, waiting, stopped
    assert stats["queues"]["deadLetters"]["visible"] == 0
    assert stats["sources"]["counts.FAILED"]["exact"] is True
    assert "by-status" in stats["sources"]["counts.FAILED"]["source"]
    assert stats["sources"]["queues.tasks"]["exact"] is False


# --- POST /tasks/{id}/retry -----------------------------------------------------


def test_a_failed_task_is_retried_with_a_fresh_budget_and_its_history_kept(h: Harness) -> None:
    h.rt.settings = h.rt.settings.model_copy(update={"DEFAULT_FAILURE_CHANCE": 1.0})
    h.publish("again", {})  # fails at the stage's default chance: 1 now, 0 after the retry
    fail_until_last(h, "again")
    assert h.task("again")["status"] == "FAILED"

    status, view = post(h, "/tasks/again/retry")

    assert status == 202
    assert (view["status"], view["attempts"], view["maxAttempts"]) == ("PENDING", 0, 3)
    assert [e.get("outcome") for e in view["history"][:3]] == ["failed"] * 3
    marker = view["history"][3]
    assert (marker["kind"], marker["by"], marker["fromStatus"]) == ("retry", "anonymous", "FAILED")
    assert h.client.http.get("/tasks?status=FAILED").status_code == 200
    assert get(h, "/tasks?status=FAILED")[1]["tasks"] == []

    h.rt.settings = h.rt.settings.model_copy(update={"DEFAULT_FAILURE_CHANCE": 0.0})
    _drain(h)
    task = h.task("again")
    assert (task["status"], task["attempts"]) == ("COMPLETED", 1)
    assert [e["kind"] for e in task["history"]] == ["attempt"] * 3 + ["retry", "attempt"]


def _drain(h: Harness) -> None:
    for _ in range(20):
        if not h.depth(h.rt.tasks_queue.url):
            return
        h.clock.advance(1)
        h.deliver()


@pytest.mark.parametrize("payload", [SUCCEEDS, None])
def test_retry_of_a_task_that_is_not_failed_or_cancelled_is_a_409(h: Harness, payload: Any) -> None:
    if payload is None:
        h.publish("waiting", SUCCEEDS)
        task_id = "waiting"
    else:
        h.publish("done", payload)
        h.deliver()
        task_id = "done"
    status, answer = post(h, f"/tasks/{task_id}/retry")
    assert status == 409
    assert "only FAILED or CANCELLED tasks can be retried" in answer["error"]["message"]
    assert post(h, "/tasks/nobody/retry")[0] == 404


def test_two_concurrent_retries_restart_the_task_once_and_it_runs_once(h: Harness) -> None:
    failed_tasks(h, 1, prefix="race")
    before = h.depth(h.rt.tasks_queue.url)
    answers: list[int] = []
    barrier = threading.Barrier(2)

    def retry() -> None:
        barrier.wait()
        answers.append(post(h, "/tasks/race000/retry")[0])

    threads = [threading.Thread(target=retry) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(answers) == [202, 409]
    # Each retry sent its message before its write; both name the version the winner wrote,
    # so both may run it, and the lease lets one attempt start.
    assert h.depth(h.rt.tasks_queue.url) == before + 2
    assert [e["kind"] for e in h.task("race000")["history"]].count("retry") == 1
    h.deliver()
    runs = [e for e in h.task("race000")["history"] if e.get("attempt")]
    assert len(runs) == 2  # the first run's one attempt, then the retry's one


# --- POST /tasks/{id}/cancel ----------------------------------------------------


def test_a_pending_task_is_cancelled_and_its_message_dropped_when_it_arrives(h: Harness) -> None:
    h.publish("stop", SUCCEEDS)

    status, view = post(h, "/tasks/stop/cancel")

    assert status == 200
    assert (view["status"], view["finishedAt"] is not None) == ("CANCELLED", True)
    assert view["history"][-1]["kind"] == "cancel" and view["history"][-1]["fromStatus"] == "PENDING"
    delivery = h.deliver()
    assert delivery.raised is None and h.depth(h.rt.tasks_queue.url) == 0
    assert (h.task("stop")["status"], h.task("stop")["attempts"]) == ("CANCELLED", 0)
    assert post(h, "/tasks/stop/cancel")[0] == 409  # terminal now
    assert post(h, "/tasks/nobody/cancel")[0] == 404


def test_a_retrying_task_is_cancelled_and_never_starts_another_attempt(h: Harness) -> None:
    h.publish("backing-off", FAILS)
    first = h.deliver()
    assert h.task("backing-off")["status"] == "RETRYING"

    status, view = post(h, "/tasks/backing-off/cancel")

    assert (status, view["status"], view["nextAttemptAt"]) == (200, "CANCELLED", None)
    h.clock.advance(3600)
    h.reveal(first)
    h.deliver()
    assert h.task("backing-off")["attempts"] == 1


def _processing(h: Harness, task_id: str, payload: dict[str, Any], cancel_while: bool = True) -> tuple[int, Any]:
    """Run one attempt of `task_id`, asking to cancel it while its handler runs."""
    import chalicelib.consume.consumer as consumer

    answer: list[tuple[int, Any]] = []
    real = consumer.run_attempt

    def cancel_mid_attempt(*args: Any, **kwargs: Any) -> Any:
        h.clock.advance(0.25)  # the cancel comes after the attempt started, as it must
        answer.append(post(h, f"/tasks/{task_id}/cancel"))
        h.clock.advance(0.25)
        return real(*args, **kwargs)

    consumer.run_attempt = cancel_mid_attempt  # type: ignore[assignment]
    try:
        h.publish(task_id, payload)
        h.deliver()
    finally:
        consumer.run_attempt = real  # type: ignore[assignment]
    return answer[0]


def test_a_processing_task_that_fails_after_a_cancel_ends_cancelled_not_retrying(h: Harness) -> None:
    status, view = _processing(h, "running-fails", FAILS)
    assert (status, view["status"], view["cancelRequested"]) == (202, "PROCESSING", True)
    task = h.task("running-fails")
    assert (task["status"], task["attempts"], task["nextAttemptAt"]) == ("CANCELLED", 1, None)
    assert [e.get("kind") for e in task["history"]] == ["attempt", "cancel_requested"]
    assert h.depth(h.rt.tasks_queue.url) == 0  # its message is gone: nothing comes back


def _when(entry: dict[str, Any]) -> str:
    return entry["startedAt"] if entry["kind"] == "attempt" else entry["at"]


def test_the_history_is_in_time_order_while_and_after_an_attempt_is_cancelled(h: Harness) -> None:
    # The cancel's entry is written while the attempt runs, the attempt's when it ends: the item
    # holds them the other way round, and the view must not.
    import chalicelib.consume.consumer as consumer

    seen_while_running: list[dict[str, Any]] = []
    real = consumer.run_attempt

    def cancel_mid_attempt(*args: Any, **kwargs: Any) -> Any:
        h.clock.advance(0.25)
        assert post(h, "/tasks/interrupted/cancel")[0] == 202
        h.clock.advance(0.25)
        seen_while_running.extend(h.task("interrupted")["history"])
        return real(*args, **kwargs)

    consumer.run_attempt = cancel_mid_attempt  # type: ignore[assignment]
    try:
        h.publish("interrupted", FAILS)
        h.deliver()
    finally:
        consumer.run_attempt = real  # type: ignore[assignment]

    assert [(e["kind"], e.get("outcome")) for e in seen_while_running] == [
        ("attempt", "running"),
        ("cancel_requested", None),
    ]
    stored = h.rt.store.client.get_item(TableName=h.rt.settings.TASKS_TABLE, Key={"id": {"S": "interrupted"}})
    assert [e["M"]["kind"]["S"] for e in stored["Item"]["history"]["L"]] == ["cancel_requested", "attempt"]
    history = h.task("interrupted")["history"]
    assert [(e["kind"], e.get("outcome")) for e in history] == [("attempt", "failed"), ("cancel_requested", None)]
    assert [_when(e) for e in history] == sorted(_when(e) for e in history)
    assert history[0]["startedAt"] < history[1]["at"] < history[0]["finishedAt"]


def test_a_processing_task_that_succeeds_after_a_cancel_is_completed(h: Harness) -> None:
    status, _ = _processing(h, "running-wins", SUCCEEDS)
    assert status == 202
    task = h.task("running-wins")
    assert (task["status"], task["cancelRequested"]) == ("COMPLETED", False)


def test_a_cancelled_task_can_be_retried(h: Harness) -> None:
    h.publish("revived", SUCCEEDS)
    post(h, "/tasks/revived/cancel")
    h.deliver()
    status, view = post(h, "/tasks/revived/retry")
    assert (status, view["status"]) == (202, "PENDING")
    h.deliver()
    assert h.task("revived")["status"] == "COMPLETED"


# --- POST /retries --------------------------------------------------------------


def test_bulk_retry_dry_run_limit_filters_and_repeats(h: Harness) -> None:
    ids = failed_tasks(h, 6)
    status, dry = post(h, "/retries", {"status": "FAILED", "limit": 4, "dryRun": True})
    assert status == 200
    assert (dry["dryRun"], dry["matched"], dry["retried"]) == (True, list(reversed(ids))[:4], [])
    assert get(h, "/stats")[1]["counts"]["FAILED"] == 6

    status, done = post(h, "/retries", {"status": "FAILED", "limit": 4})
    assert (status, done["retried"], done["skipped"]) == (200, list(reversed(ids))[:4], [])
    again = post(h, "/retries", {"status": "FAILED", "limit": 4})[1]
    assert again["retried"] == list(reversed(ids))[4:]  # a repeat never retries a task twice
    assert post(h, "/retries", {"status": "FAILED", "type": "checksum"})[1]["matched"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"status": "COMPLETED"}, "status"),
        ({"status": "FAILED", "limit": 1001}, "limit"),
        ({"status": "FAILED", "dryRun": "yes"}, "dryRun"),
        ({"status": "FAILED", "updatedSince": "yesterday"}, "updatedSince"),
        ({"status": "FAILED", "everything": True}, "everything"),
        ({}, "status"),
    ],
)
def test_a_bad_bulk_retry_is_a_400_naming_the_field(h: Harness, body: dict[str, Any], field: str) -> None:
    status, answer = post(h, "/retries", body)
    assert status == 400
    assert answer["error"]["details"][0]["field"] == field


def test_queue_ages_come_from_cloudwatch_and_are_asked_at_most_once_a_minute(clock: FakeClock) -> None:
    from chalicelib.tasks.queue import QueueAges

    asked: list[int] = []

    class FakeCloudWatch:
        def get_metric_data(self, **request: Any) -> dict[str, Any]:
            asked.append(len(request["MetricDataQueries"]))
            return {"MetricDataResults": [{"Id": "q1", "Values": [42.0, 30.0]}, {"Id": "q0", "Values": []}]}

    ages = QueueAges(FakeCloudWatch, clock)
    assert ages.oldest_ages(["tasks", "dead"]) == {"dead": 42.0}  # the newest datapoint; none for "tasks"
    clock.advance(30)
    assert ages.oldest_ages(["tasks", "dead"]) == {"dead": 42.0}
    assert asked == [2]
    clock.advance(31)
    ages.oldest_ages(["tasks", "dead"])
    assert asked == [2, 2]


def test_stats_reads_the_days_repairs_from_the_same_cloudwatch_request_as_the_queue_ages(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.tasks.queue import QueueAges

    requests: list[list[dict[str, Any]]] = []

    class FakeCloudWatch:
        def get_metric_data(self, **request: Any) -> dict[str, Any]:
            requests.append(request["MetricDataQueries"])
            ids = {query["Id"]: query for query in request["MetricDataQueries"]}
            adopted = next(i for i, q in ids.items() if q["MetricStat"]["Metric"]["MetricName"] == "TasksAdopted")
            return {"MetricDataResults": [{"Id": adopted, "Values": [2.0, 1.0]}]}

    monkeypatch.setattr(h.rt, "queue_ages", QueueAges(FakeCloudWatch, h.clock))
    status, stats = get(h, "/stats")

    assert status == 200
    assert stats["repairs"] == {"adopted": 3, "redispatched": None, "retriesAwaited": None}
    assert "no datapoint" in stats["sources"]["repairs.redispatched"]["source"]
    [queries] = requests  # one request for everything CloudWatch gives
    summed = [q for q in queries if q["Id"].startswith("s")]
    assert {q["MetricStat"]["Metric"]["Dimensions"][0]["Value"] for q in summed} == {"local"}  # the client's stage
