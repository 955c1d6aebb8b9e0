"""`make run` with a time scale: the worker ticks every scaled minute, a `runAt` task's timer starts it on
time, and a schedule of 5 scaled minutes fires every 5 wall seconds.

RUN_AT_TIMER_SECONDS=0 sends every `runAt` ahead of now through a timer, so a task due in
seconds walks the path a task due in days walks on AWS: timer, tick, delayed message, consumer.
The stack's SCHEDULE_CLOCK_ORIGIN is set here, so a firing's time (schedule time, in its task's
id) maps back to the wall clock its task's `createdAt` is on.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import boto3
import pytest

from chalicelib.tasks.record import iso_from_ms, ms_from_iso
from tests.e2e.stack import Api, Stack, free_port, stack_environment, start, wait_until
from tools.processes import DUMMY_CREDENTIALS

pytestmark = pytest.mark.e2e

SUCCEEDS = {"simulation": {"failureChance": 0, "executionTime": 0}}
SCALE = 60  # a minute of schedule time per wall second: one tick a second
TASKS = 6
TICK_SECONDS = 60 / SCALE  # wall seconds between two ticks
RATE_SECONDS = 300  # "5 minutes": every 5 wall seconds at this scale
FIRINGS = 4
TASKS_TABLE = "taskproc-local-tasks"
UTC_TEXT = "%Y-%m-%dT%H:%M:%SZ"  # a firing's time in its task's id


@pytest.fixture(scope="module")
def scaled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    port, aws_port = free_port(), free_port()
    env = stack_environment(
        port,
        aws_port,
        SCHEDULE_TIME_SCALE=str(SCALE),
        SCHEDULE_CLOCK_ORIGIN=repr(time.time()),
        RUN_AT_TIMER_SECONDS="0",
    )
    process = start("run", ["run"], env, tmp_path_factory.mktemp("scaled"))
    try:
        process.wait_for_line("taskproc is ready")
        yield Stack(Api(f"http://127.0.0.1:{port}"), aws_port, process, env)
    finally:
        process.stop()


def log_lines(stack: Stack, event: str) -> list[dict[str, object]]:
    """The stack's structured log lines whose message is `event`."""
    lines = []
    for line in stack.process.output().splitlines():
        start_of_json = line.find("{")
        if start_of_json < 0 or f'"{event}"' not in line:
            continue
        try:
            record = json.loads(line[start_of_json:])
        except ValueError:
            continue
        if record.get("message") == event:
            lines.append(record)
    return lines


def test_the_worker_runs_the_tick_every_scaled_minute(scaled: Stack) -> None:
    scaled.process.wait_for_line("taskproc-local-tick every 1 s")
    first = len(log_lines(scaled, "tick"))
    started = time.monotonic()

    wait_until(lambda: len(log_lines(scaled, "tick")) >= first + 3, 20, "three more ticks")

    assert time.monotonic() - started < 10  # three ticks of a second each, on a busy machine


def test_run_at_tasks_start_on_time_through_their_timers_and_not_before(scaled: Stack) -> None:
    due = {f"at-{n}-{uuid.uuid4()}": iso_from_ms(int((time.time() + 4 + n / 2) * 1000)) for n in range(TASKS)}
    for task_id, run_at in due.items():
        status, answer = scaled.api.call("POST", "/publish", {"id": task_id, "payload": SUCCEEDS, "runAt": run_at})
        assert status == 201, answer
        assert scaled.api.task(task_id)["notBefore"] == run_at

    views = {task_id: scaled.api.wait_terminal(task_id, timeout=60) for task_id in due}

    lateness = []
    for task_id, view in views.items():
        assert view["status"] == "COMPLETED", view
        [attempt] = [entry for entry in view["history"] if entry.get("kind") == "attempt"]
        lateness.append((ms_from_iso(attempt["startedAt"]) - ms_from_iso(due[task_id])) / 1000)
    dispatched = {line["taskId"] for line in log_lines(scaled, "timer_dispatched")}
    assert set(due) <= dispatched, "every task went through its timer"
    print(f"runAt lateness offline, s: {sorted(lateness)}")  # the figure docs/architecture.md quotes
    assert all(late >= 0 for late in lateness), lateness
    assert max(lateness) < 3, lateness


def wall_seconds_of(stack: Stack, schedule_seconds: float) -> float:
    """The wall-clock instant when the stack's schedule clock reads `schedule_seconds` (chalicelib/tick/clock.py)."""
    origin = float(stack.env["SCHEDULE_CLOCK_ORIGIN"])
    return origin + (schedule_seconds - origin) / SCALE


def firing_tasks(stack: Stack, schedule_id: str) -> dict[str, dict[str, object]]:
    """The task items whose id names a firing of `schedule_id`, by id, read straight from the table."""
    session = boto3.session.Session(
        region_name="us-east-1",
        aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=DUMMY_CREDENTIALS["AWS_SESSION_TOKEN"],
    )
    dynamodb = session.client("dynamodb", endpoint_url=f"http://127.0.0.1:{stack.aws_port}")
    items = {}
    for page in dynamodb.get_paginator("scan").paginate(
        TableName=TASKS_TABLE,
        ConsistentRead=True,
        FilterExpression="begins_with(id, :firing)",
        ExpressionAttributeValues={":firing": {"S": f"{schedule_id}@"}},
    ):
        for raw in page["Items"]:
            items[raw["id"]["S"]] = {name: next(iter(value.values())) for name, value in raw.items()}
    return items


def test_a_schedule_of_5_scaled_minutes_fires_n_tasks_in_n_times_5_seconds_within_a_tick(scaled: Stack) -> None:
    schedule_id = f"every-5-{uuid.uuid4().hex[:8]}"
    status, made = scaled.api.call(
        "POST",
        "/schedules",
        {"id": schedule_id, "type": "checksum", "payload": {"text": "tick"}, "rate": "5 minutes"},
    )
    assert status == 201, made

    def fired_enough() -> dict[str, dict[str, object]] | None:
        found = firing_tasks(scaled, schedule_id)
        return found if len(found) >= FIRINGS else None

    tasks = wait_until(fired_enough, FIRINGS * RATE_SECONDS / SCALE + 15, f"{FIRINGS} firings", interval=0.5)
    status, _ = scaled.api.call("POST", f"/schedules/{schedule_id}/pause")
    assert status == 200

    prefix = f"{schedule_id}@"
    fired_at = sorted(datetime.strptime(task_id[len(prefix) :], UTC_TEXT).replace(tzinfo=UTC) for task_id in tasks)
    instants = [at.timestamp() for at in fired_at]
    assert all(instant % RATE_SECONDS == 0 for instant in instants), fired_at  # counted from the epoch
    # One task per firing, none skipped, the first the first one after the schedule's creation.
    assert [b - a for a, b in itertools.pairwise(instants)] == [RATE_SECONDS] * (len(instants) - 1), fired_at
    created_in_schedule_time = int(datetime.strptime(made["createdAt"], UTC_TEXT).replace(tzinfo=UTC).timestamp())
    assert instants[0] == (created_in_schedule_time // RATE_SECONDS + 1) * RATE_SECONDS, (made["createdAt"], fired_at)
    created = [ms_from_iso(str(tasks[f"{prefix}{at.strftime(UTC_TEXT)}"]["createdAt"])) / 1000 for at in fired_at]
    lateness = [made_at - wall_seconds_of(scaled, instant) for made_at, instant in zip(created, instants, strict=True)]
    span = created[-1] - created[0]
    n = len(instants)
    print(f"schedule firings offline: {n} in {span:.2f} s, lateness s: {[round(late, 3) for late in lateness]}")
    # N firings 5 s apart fill a window of N x 5 s: the first and the last are (N - 1) x 5 s apart, within a tick.
    assert abs(span - (n - 1) * RATE_SECONDS / SCALE) <= TICK_SECONDS, (span, lateness)
    # Never before its instant; after it by the tick grid's phase (under a tick) and the tick's own reads.
    assert all(0 <= late <= 2 * TICK_SECONDS for late in lateness), lateness
