"""The operator's service functions: list, stats, retry, cancel and bulk retry.

Each takes the runtime, returns models and raises domain errors; the routes in
app.py shape the answer. Every action on a task is one conditional write that
appends to its history who asked and when, so two operators racing on one task
get one success and one 409, never a task queued twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from chalicelib import metrics
from chalicelib.consume.expiry import message_attributes, start_by_ms
from chalicelib.consume.terminal import after_terminal
from chalicelib.errors import (
    Conflict,
    FieldProblem,
    QueueError,
    ServiceUnavailable,
    StaleRecord,
    StoreError,
    TaskNotFound,
    ValidationFailed,
)
from chalicelib.logs import log_event
from chalicelib.metrics import NAMESPACE, Metric, current_stage
from chalicelib.models import POISON_ERROR_PREFIX, RETRY_VERSION_ATTRIBUTE, BulkRetryIn, RetryIn, Status
from chalicelib.operate.cursor import decode_cursor, encode_cursor
from chalicelib.operate.listing import COUNT_CAP, Filters, TaskIndex, summary
from chalicelib.operate.schedule_stats import SCAN_PAGES, sum_counters
from chalicelib.operate.throughput import TOTAL, ThroughputPlan
from chalicelib.operate.views import BulkRetryResult, FigureSource, QueueDepth, Skipped, Stats, TaskPage, Throughput
from chalicelib.publish.api import read_task
from chalicelib.query import MAX_PAGE, TaskListQuery, parse_query
from chalicelib.runtime import Runtime
from chalicelib.tasks.index import INDEX_NAME, LISTED_STATUSES
from chalicelib.tasks.priority import Priority
from chalicelib.tasks.queue import Queue, QueueAges
from chalicelib.tasks.record import TaskRecord
from chalicelib.tasks.view import TaskView, task_view
from chalicelib.workflows.fan_in import reopen_after_retry

logger = logging.getLogger(__name__)

# A retry appends one entry and makes room for a new run's attempts; past this many
# entries the history (and so the item) would grow without bound.
MAX_HISTORY_ENTRIES = 200
RETRYABLE = (Status.FAILED, Status.CANCELLED)
CANCELLABLE_NOW = (Status.PENDING, Status.RETRYING)
# Optimistic writes retried this often when the task moves between the read and the write.
WRITE_TRIES = 3
BULK_WORKERS = 16
# A bulk retry starts no new work (page or retry) this long after it began, so that it
# answers inside the API's timeout whatever AWS does (tests/unit/test_timeouts.py); what it
# did not reach is left as it was, and a repeat of the request takes it.
BULK_RETRY_BUDGET_SECONDS = 8.0
LATEST_SORT_KEY = "9999-12-31T23:59:59.999Z"
# `GET /stats`' task queues (the dead letters' are not waiting to run).
TASK_QUEUES = ("tasks", "highPriority", "lowPriority")
# `GET /stats`' repairs: what the send-first publish and retry needed mending (docs/architecture.md).
REPAIRS = {
    "adopted": Metric.TASKS_ADOPTED,
    "redispatched": Metric.TASKS_REDISPATCHED,
    "retriesAwaited": Metric.RETRIES_AWAITED,
}


def _index(rt: Runtime) -> TaskIndex:
    return TaskIndex(rt.store.client, rt.settings.TASKS_TABLE)


def _cursor_scope(rt: Runtime, status: Status, filters: Filters) -> str:
    return f"{rt.settings.TASKS_TABLE}|{status.value}|{filters.scope()}"


def list_tasks(params: Mapping[str, Sequence[str]], rt: Runtime) -> TaskPage:
    """`GET /tasks?status=&limit=&cursor=&type=&tag=`: one page of tasks in a status, most recently updated first.

    `params` holds each query parameter with every value it was given. Under a filter (a type, tags)
    a page may hold fewer than `limit` tasks, none even, and still a cursor: its read budget was spent
    (chalicelib/operate/listing.py).

    Raises:
        ValidationFailed: an unknown or repeated parameter, a status that is not listed, a bad limit or cursor.
        ServiceUnavailable: the table did not answer.
    """
    query = parse_query(TaskListQuery, params)
    status, limit, filters = query.status, query.limit, Filters(task_type=query.type, tags=tuple(query.tag))
    key = rt.cursor_keys.key()
    scope = _cursor_scope(rt, status, filters)
    after = decode_cursor(key, scope, query.cursor) if query.cursor else None
    try:
        page = _index(rt).page(status, limit, after, filters)
    except StoreError as exc:
        raise ServiceUnavailable("the task table did not answer; try again") from exc
    position = page.resume_after
    next_cursor = encode_cursor(key, scope, position) if page.more and position else None
    return TaskPage(tasks=[summary(entry) for entry in page.entries], nextCursor=next_cursor)


def stats(rt: Runtime) -> Stats:
    """`GET /stats`: the listed statuses counted from the index, the queues' depths from SQS and CloudWatch,
    the schedules' counters summed from the schedules table (chalicelib/operate/schedule_stats.py).

    Raises:
        ServiceUnavailable: the table or a queue did not answer.
    """
    index = _index(rt)
    watched = _stats_queues(rt)
    try:
        with ThreadPoolExecutor(max_workers=len(LISTED_STATUSES) + len(watched) + 1) as pool:
            # The counts and the depths side by side: four queues' depths after the counts would
            # make the route's chain of calls longer than the API's timeout allows.
            counting = {status: pool.submit(index.count, status) for status in LISTED_STATUSES}
            reading = {label: pool.submit(queue.depth) for label, queue in watched.items()}
            summing = pool.submit(sum_counters, rt.dynamodb, rt.settings.SCHEDULES_TABLE)
            counted = {status: future.result() for status, future in counting.items()}
            depths = {label: future.result() for label, future in reading.items()}
            scheduled = summing.result()
    except (StoreError, QueueError) as exc:
        raise ServiceUnavailable("the task table, the schedules table or a queue did not answer; try again") from exc
    repair_metrics = {label: metric.value for label, metric in REPAIRS.items()}
    plan = ThroughputPlan(
        NAMESPACE,
        current_stage(),
        rt.registry.names(),
        reserved_queries=len(watched) + len(repair_metrics),
        reserved_points=len(watched) * QueueAges.AGE_POINTS + len(repair_metrics) * QueueAges.SUM_POINTS,
    )
    figures = rt.queue_ages.read(
        [queue.name for queue in watched.values()], list(repair_metrics.values()), NAMESPACE, current_stage(), plan
    )
    where, fresh = rt.queue_ages.where, _freshness(rt, figures.read_at)
    ages = figures.ages
    sources = {
        f"counts.{status.value}": FigureSource(
            source=f"DynamoDB index {INDEX_NAME}, counted up to {COUNT_CAP}"
            + ("" if exact else f"; at least {count}: more than the cap"),
            exact=exact,
        )
        for status, (count, exact) in counted.items()
    }
    queues = {}
    for label, depth in depths.items():
        queue_name = watched[label].name
        queues[label] = depth.model_copy(update={"oldestAgeSeconds": ages.get(queue_name)})
        sources[f"queues.{label}"] = FigureSource(
            source="SQS GetQueueAttributes (ApproximateNumberOfMessages*)", exact=False
        )
        sources[f"queues.{label}.oldestAgeSeconds"] = FigureSource(
            source=f"{where} AWS/SQS ApproximateAgeOfOldestMessage, latest 1-minute datapoint; {fresh}"
            + ("" if queue_name in ages else "; none available (no datapoint yet, or offline)"),
            exact=False,
        )
    repairs: dict[str, int | None] = {}
    for label, metric in repair_metrics.items():
        value = figures.sums.get(metric)
        repairs[label] = None if value is None else int(value)
        sources[f"repairs.{label}"] = FigureSource(
            source=f"{where} {NAMESPACE} {metric}, summed over the last 24 hours; {fresh}"
            + ("" if value is not None else "; no datapoint (none happened, or offline)"),
            exact=False,
        )
    counts: dict[str, int | None] = {s.value: c for s, (c, _) in counted.items()}
    counts.update(_estimated_counts(rt, depths, counted, figures.throughput, sources, where, fresh))
    waiting = [ages[queue.name] for label, queue in watched.items() if label in TASK_QUEUES and queue.name in ages]
    sources["oldestWaitingSeconds"] = FigureSource(
        source=f"the largest of queues.{{{','.join(TASK_QUEUES)}}}.oldestAgeSeconds: the oldest message of any"
        " class waiting to be received (a PENDING task, or a RETRYING one past its backoff)"
        + ("" if waiting else "; none available (no datapoint yet)"),
        exact=False,
    )
    _throughput_sources(plan, figures.throughput, sources, where, fresh)
    for name in scheduled.sums:
        sources[f"schedules.{name}"] = FigureSource(
            source=f"the schedules table's schedule items' own counters (a Scan), summed over {scheduled.schedules}"
            " schedules, each since it was created"
            + ("" if scheduled.complete else f"; at least: the Scan stopped after {SCAN_PAGES} pages"),
            exact=scheduled.complete,
        )
    return Stats(
        counts=counts,
        throughput=figures.throughput,
        oldestWaitingSeconds=max(waiting) if waiting else None,
        queues=queues,
        repairs=repairs,
        schedules=scheduled.sums,
        sources=sources,
    )


def _freshness(rt: Runtime, read_at: float) -> str:
    age = max(0.0, rt.store.now_ms() / 1000 - read_at)
    return f"read {age:.0f} s ago (cached up to {rt.queue_ages.cache_seconds:.0f} s)"


def _estimated_counts(
    rt: Runtime,
    depths: Mapping[str, QueueDepth],
    counted: Mapping[Status, tuple[int, bool]],
    throughput: Throughput | None,
    sources: dict[str, FigureSource],
    where: str,
    fresh: str,
) -> dict[str, int | None]:
    """COMPLETED, PENDING and PROCESSING: no index holds them (docs/operations.md says why), so each is
    an estimate from the metrics or the queues, labelled with what it means."""
    task_depths = [depths[label] for label in TASK_QUEUES]
    completed = sum(throughput.perHour.series[TOTAL].completed) if throughput else None
    sources[f"counts.{Status.COMPLETED.value}"] = FigureSource(
        source=f"{where} {NAMESPACE} {Metric.COMPLETED.value}, summed over the last 24 hours (the per-hour"
        " throughput's buckets): tasks that completed in that window, not every COMPLETED task the table keeps"
        f" ({rt.settings.RETENTION_DAYS} days); {fresh}" + ("" if throughput else "; none: the metrics did not answer"),
        exact=False,
    )
    sources[f"counts.{Status.PENDING.value}"] = FigureSource(
        source="SQS ApproximateNumberOfMessages and ApproximateNumberOfMessagesDelayed of the three task queues,"
        " summed: messages waiting to be received, due now or delayed (delaySeconds, a hold of flow control),"
        " that is PENDING tasks and RETRYING ones whose backoff has passed; a duplicate message counts once more",
        exact=False,
    )
    retrying, _ = counted.get(Status.RETRYING, (0, True))
    sources[f"counts.{Status.PROCESSING.value}"] = FigureSource(
        source="SQS ApproximateNumberOfMessagesNotVisible of the three task queues, summed, less the RETRYING"
        " count (a retry's message stays hidden through its backoff): messages received and not yet settled,"
        " so running attempts, and deliveries between their receive and their settling",
        exact=False,
    )
    return {
        Status.COMPLETED.value: completed,
        Status.PENDING.value: sum(depth.visible + depth.delayed for depth in task_depths),
        Status.PROCESSING.value: max(0, sum(depth.inFlight for depth in task_depths) - retrying),
    }


def _throughput_sources(
    plan: ThroughputPlan, throughput: Throughput | None, sources: dict[str, FigureSource], where: str, fresh: str
) -> None:
    left_out = f"; left out (past GetMetricData's limits for one request): {', '.join(plan.left_out)}"
    scope = "in total and per registered task type" + (left_out if plan.left_out else "")
    if throughput is None:
        sources["throughput"] = FigureSource(source=f"{where} GetMetricData did not answer; none", exact=False)
        return
    sources["throughput.perMinute"] = FigureSource(
        source=f"{where} {NAMESPACE} TasksCompleted, TasksFailed, RetriesScheduled, TasksAccepted: 1-minute Sum,"
        f" the last 60 minutes, {scope}; the last bucket is the current minute, still filling; {fresh}",
        exact=False,
    )
    sources["throughput.perHour"] = FigureSource(
        source=f"the same 1-minute sums added up by clock hour, the last 24 hours, {scope}; the last bucket is"
        " the current hour, still filling",
        exact=False,
    )
    sources["throughput.latency"] = FigureSource(
        source=f"{where} {NAMESPACE} AttemptDuration and EndToEndLatency (created to terminal), percentiles over"
        f" the last 60 minutes, {scope}; null without a datapoint; {fresh}",
        exact=False,
    )


def _stats_queues(rt: Runtime) -> dict[str, Queue]:
    """`GET /stats`' queues by label: the default class's as `tasks`, each other class's, the dead letters."""
    return {
        "tasks": rt.tasks_queue,
        "highPriority": rt.queue_for(Priority.HIGH),
        "lowPriority": rt.queue_for(Priority.LOW),
        "deadLetters": rt.dead_letters,
    }


def _read(task_id: str, rt: Runtime) -> TaskRecord:
    return read_task(task_id, rt)[0]


def retry_options(body: dict[str, Any]) -> RetryIn:
    """The retry's options from its body (`{}` when the request had none).

    Raises:
        ValidationFailed: the body breaks a rule; each detail names the field.
    """
    try:
        return RetryIn.model_validate(body)
    except ValidationError as exc:
        details = [FieldProblem(".".join(map(str, e["loc"])) or "body", e["msg"]) for e in exc.errors()]
        raise ValidationFailed("the retry is not valid", details) from exc


def retry(task_id: str, by: str, rt: Runtime, expires_in_seconds: int | None = None) -> TaskView:
    """Start a FAILED or CANCELLED task over with a fresh attempt budget, and queue it again.

    The retried task expires only when `expires_in_seconds` is given, counted from now; an
    expiry it had before does not carry over.

    Raises:
        TaskNotFound, Conflict (not FAILED or CANCELLED, or a concurrent retry won, or the
        history is full), ServiceUnavailable (nothing was changed).
    """
    record, _ = read_task(task_id, rt)
    if record.status not in RETRYABLE:
        raise Conflict(f"task {task_id!r} is {record.status.value}; only FAILED or CANCELLED tasks can be retried")
    if record.status is Status.FAILED and (record.last_error or "").startswith(POISON_ERROR_PREFIX):
        raise Conflict(
            f"task {task_id!r} was recorded from a poison message and has no payload to run; publish it again"
        )
    max_attempts = _max_attempts(record, rt)
    if len(record.history) + 1 + max_attempts > MAX_HISTORY_ENTRIES:
        raise Conflict(
            f"task {task_id!r} has {len(record.history)} history entries; another run could take it past"
            f" {MAX_HISTORY_ENTRIES}: publish it again under a new id instead"
        )
    # The message first, marked with the version the restart will write, then the restart:
    # a death or a lost answer between the two leaves a message whose task stays as it was,
    # which the consumer holds back until the retry has landed or its receives run out (see
    # TaskConsumer), never a PENDING task without a message.
    # The retry's time is taken before its message exists, so that its history entry comes
    # before the first attempt the message starts, whichever write lands first on the clock.
    decided_ms = rt.store.now_ms()
    start_by = start_by_ms(decided_ms, expires_in_seconds)
    attributes = {RETRY_VERSION_ATTRIBUTE: str(record.version + 1), **message_attributes(start_by)}
    try:
        message_id = rt.queue_for(record.priority).send(record.task.message_body(), attributes)
    except QueueError as exc:
        raise ServiceUnavailable("the task queue did not answer; the task was not retried, try again") from exc
    try:
        restarted = rt.operator_store.restart(record, max_attempts, by, decided_ms, start_by)
    except StaleRecord as exc:
        raise Conflict(f"task {task_id!r} changed while it was being retried (another retry or cancel won)") from exc
    except StoreError as exc:
        raise ServiceUnavailable(
            f"the task table did not answer; task {task_id!r} may or may not have been retried: read it before"
            " retrying again"
        ) from exc
    reopen_after_retry(rt, record)  # a workflow's child leaves its count (chalicelib/workflows/fan_in.py)
    log_event("operator_retry", taskId=task_id, by=by, fromStatus=record.status.value, messageId=message_id)
    metrics.count(Metric.OPERATOR_RETRIES, restarted.type)
    return task_view(restarted, rt.store.now_ms())


def _max_attempts(record: TaskRecord, rt: Runtime) -> int:
    task_type = rt.registry.get(record.type)
    return task_type.attempts(rt.settings.MAX_ATTEMPTS) if task_type else rt.settings.MAX_ATTEMPTS


def cancel(task_id: str, by: str, rt: Runtime) -> tuple[TaskView, bool]:
    """Cancel a task; returns its view and whether it is CANCELLED now (False: cancel requested).

    A PENDING or RETRYING task becomes CANCELLED and never starts another attempt. A
    PROCESSING task is marked: its running attempt finishes, a success still wins, a
    failure ends it CANCELLED.

    Raises:
        TaskNotFound, Conflict (terminal, or a cancel already requested), ServiceUnavailable.
    """
    for _ in range(WRITE_TRIES):
        record = _read(task_id, rt)
        try:
            if record.status in CANCELLABLE_NOW:
                cancelled = rt.operator_store.cancel(record, by)
                _follow(cancelled, rt)
                log_event("operator_cancel", taskId=task_id, by=by, fromStatus=record.status.value)
                metrics.count(Metric.OPERATOR_CANCELS, record.type)
                metrics.count(Metric.TASKS_CANCELLED, record.type)
                return task_view(cancelled, rt.store.now_ms()), True
            if record.status is Status.PROCESSING:
                if record.cancel_requested:
                    raise Conflict(f"task {task_id!r}: a cancel is already requested; its running attempt decides")
                marked = rt.operator_store.request_cancel(record, by)
                log_event("operator_cancel_requested", taskId=task_id, by=by)
                metrics.count(Metric.OPERATOR_CANCELS, record.type)
                return task_view(marked, rt.store.now_ms()), False
        except StaleRecord:
            continue  # it moved between the read and the write: decide again on what it is now
        except StoreError as exc:
            raise ServiceUnavailable("the task table did not answer; the task was not cancelled, try again") from exc
        raise Conflict(f"task {task_id!r} is {record.status.value}, which is final; it cannot be cancelled")
    raise Conflict(f"task {task_id!r} kept changing while it was being cancelled; try again")


def _follow(cancelled: TaskRecord, rt: Runtime) -> None:
    """Publish the follow-ups of a task an operator just cancelled (chalicelib/consume/terminal.py).

    Not publishing them does not fail the cancel: a PENDING or RETRYING task always has a message
    on its way, and the consumer that receives it finds the task terminal and publishes them then.
    """
    try:
        after_terminal(rt, cancelled.task, cancelled)
    except (QueueError, StoreError) as exc:
        log_event("follow_up_unpublished", logging.WARNING, taskId=cancelled.id, error=str(exc))


def _since(value: datetime | None) -> str | None:
    """The sort-key prefix of a moment: the index sorts by `updatedAt` as the store writes it."""
    if value is None:
        return None
    try:
        moment = value.astimezone(UTC)
    except OverflowError:  # the first or last day datetime can hold, shifted past it by the zone
        return None if value.year == datetime.min.year else LATEST_SORT_KEY
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def bulk_retry(body: dict[str, Any], by: str, rt: Runtime) -> BulkRetryResult:
    """`POST /retries`: retry up to `limit` FAILED (or CANCELLED) tasks, newest first.

    Idempotent under repeats: a retried task leaves the listed status, so a repeat
    does not match it again, and each task is retried by one conditional write.

    Raises:
        ValidationFailed: the body breaks a rule.
        ServiceUnavailable: the table did not answer.
    """
    try:
        request = BulkRetryIn.model_validate(body)
        since = _since(request.updatedSince)
    except ValidationError as exc:
        details = [FieldProblem(".".join(map(str, e["loc"])) or "body", e["msg"]) for e in exc.errors()]
        raise ValidationFailed("the bulk retry is not valid", details) from exc
    status = Status(request.status)
    filters = Filters(task_type=request.type, updated_since=since)
    matched: list[str] = []
    index, after = _index(rt), None
    deadline = time.monotonic() + BULK_RETRY_BUDGET_SECONDS
    try:
        while len(matched) < request.limit and time.monotonic() < deadline:
            page = index.page(status, min(MAX_PAGE, request.limit - len(matched)), after, filters)
            matched += [entry["id"] for entry in page.entries]
            after = page.resume_after
            if not page.more or after is None:
                break
    except StoreError as exc:
        raise ServiceUnavailable("the task table did not answer; nothing was retried, try again") from exc
    if request.dryRun:
        return BulkRetryResult(dryRun=True, matched=matched, retried=[], skipped=[])
    with ThreadPoolExecutor(max_workers=BULK_WORKERS) as pool:
        outcomes = list(pool.map(lambda task_id: _retry_one(task_id, by, rt, deadline), matched))
    return BulkRetryResult(
        dryRun=False,
        matched=matched,
        retried=[task_id for task_id, reason in zip(matched, outcomes, strict=True) if reason is None],
        skipped=[Skipped(id=t, reason=r) for t, r in zip(matched, outcomes, strict=True) if r is not None],
    )


def _retry_one(task_id: str, by: str, rt: Runtime, deadline: float) -> str | None:
    """None when `task_id` was retried, else why not."""
    if time.monotonic() >= deadline:
        return "not reached within this request's time; repeat the request to retry it"
    try:
        retry(task_id, by, rt)
    except (Conflict, TaskNotFound, ServiceUnavailable) as exc:
        return exc.message
    return None
