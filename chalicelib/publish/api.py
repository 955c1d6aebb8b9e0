"""What the routes do, without Chalice: parse, call the store and queue, return models."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote, unquote

from pydantic import TypeAdapter, ValidationError

from chalicelib import metrics
from chalicelib.callbacks.follow_up import CALLBACK_TYPE
from chalicelib.callbacks.url import CallbackRefused
from chalicelib.chains import check_chain
from chalicelib.consume.expiry import message_attributes, start_by_ms
from chalicelib.errors import (
    FieldProblem,
    MalformedJson,
    PayloadTooLarge,
    QueueError,
    ServiceUnavailable,
    SettingsError,
    StoreError,
    TaskNotFound,
    TaskprocError,
    UnsupportedMediaType,
    ValidationFailed,
    field_name,
)
from chalicelib.flow.unique import KeyClaim, KeyHeld, UniqueKeys, Uniqueness
from chalicelib.logs import log_event
from chalicelib.metrics import Metric
from chalicelib.models import (
    CALLBACK_TASK_SUFFIX,
    DEFAULT_TYPE,
    MAX_CALLBACK_GENERATION,
    MAX_RUN_AT_DAYS,
    MAX_TASK_BYTES,
    RUN_AT_RULE,
    TASK_ID_RULE,
    CallbackIn,
    PriorityName,
    Status,
    Task,
    TaskIn,
    callback_task_id,
    key_problem,
    task_id_problem,
)
from chalicelib.operate.cursor import CursorSecretUnavailable
from chalicelib.publish.answers import Health, PublishAccepted, TaskCreated
from chalicelib.publish.tags import Tags
from chalicelib.publish.wait import wait_for
from chalicelib.registry import RegistrationError, Registry
from chalicelib.runtime import Runtime
from chalicelib.tasks.priority import PRIORITY_RULE, Priority
from chalicelib.tasks.record import TaskRecord, iso_from_ms, ms_from_iso, record_from_item
from chalicelib.tasks.view import TaskView, chain_view, task_view
from chalicelib.tick.timers import Start, Timer

logger = logging.getLogger(__name__)

# `POST /tasks` takes its body as the payload, all but this key: the task's class.
PRIORITY_FIELD = "priority"
_priority: TypeAdapter[str] = TypeAdapter(PriorityName, config={"strict": True})
# ... and its tags, one `?tag=` each, as `GET /tasks` filters by them.
TAG_PARAMETER = "tag"
_tags: TypeAdapter[list[str]] = TypeAdapter(Tags)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:40]} is too large")
    return value


def parse_json_object(
    raw_body: bytes | None, content_type: str | None, max_bytes: int = MAX_TASK_BYTES
) -> dict[str, Any]:
    """The request body, of at most `max_bytes`, as a JSON object.

    Raises:
        UnsupportedMediaType, PayloadTooLarge, MalformedJson, ValidationFailed.
    """
    media_type = (content_type or "application/json").split(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise UnsupportedMediaType(f"the body must be sent as application/json, not {media_type or 'nothing'}")
    body = raw_body or b""
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"the request body may be at most {max_bytes} bytes; it has {len(body)}")
    try:
        text = body.decode("utf-8")
        parsed = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except UnicodeDecodeError as exc:
        raise MalformedJson(f"the body is not UTF-8: {exc.reason} at byte {exc.start}") from exc
    except RecursionError as exc:
        raise MalformedJson("the body is nested too deeply") from exc
    except ValueError as exc:
        raise MalformedJson(f"the body is not valid JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise ValidationFailed(
            "the body must be a JSON object",
            [FieldProblem("body", f"must be a JSON object, not {type(parsed).__name__}")],
        )
    try:
        json.dumps(parsed, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValidationFailed(
            "the body contains a lone surrogate escape", [FieldProblem("body", "must be valid Unicode")]
        ) from exc
    return parsed


def parse_optional_json_object(raw_body: bytes | None, content_type: str | None) -> dict[str, Any]:
    """The request body as a JSON object, or `{}` when there is none (a route whose body is optional)."""
    return parse_json_object(raw_body, content_type) if raw_body else {}


def field_problems(exc: ValidationError, prefix: tuple[str, ...] = ()) -> list[FieldProblem]:
    return [
        FieldProblem(field_name((*prefix, *error["loc"])) or "body", error["msg"])
        for error in exc.errors(include_url=False)
    ]


def checked_message(task: Task) -> str:
    message = task.message_body()
    size = len(message.encode("utf-8"))
    if size > MAX_TASK_BYTES:
        raise PayloadTooLarge(f"the serialized task may be at most {MAX_TASK_BYTES} bytes; it has {size}")
    return message


def task_location(task_id: str, path_prefix: str = "") -> str:
    return f"{path_prefix}/tasks/{quote(task_id, safe='')}"


def validated_task(body: dict[str, Any], registry: Registry) -> tuple[Task, TaskIn]:
    """The task a publish body describes, checked against its type, and the body as the model read it
    (its `delaySeconds`, `runAt` and `expiresInSeconds`).

    Raises:
        ValidationFailed: the body breaks a rule, names an unknown type, or its payload
            does not fit the type's model; each detail names the field.
    """
    try:
        validated = TaskIn.model_validate(body)
    except ValidationError as exc:
        raise ValidationFailed("the task is not valid", field_problems(exc)) from exc
    name = validated.type
    task_type = registry.get(name)
    if task_type is None:
        known = ", ".join(registry.names())
        raise ValidationFailed(
            f"unknown task type {name!r}", [FieldProblem("type", f"must be one of the registered types: {known}")]
        )
    try:
        task_type.parse(body["payload"])
    except ValidationError as exc:
        raise ValidationFailed(
            f"the payload does not fit task type {name!r}", field_problems(exc, prefix=("payload",))
        ) from exc
    if problems := check_chain(body["id"], validated.then or [], registry):
        raise ValidationFailed("the chain is not valid", problems)
    # The payload exactly as sent (the model keeps it as given); the numbers as the model read them (5.0 is 5).
    callback = validated.callback.url if validated.callback is not None else None
    return (
        Task(
            id=body["id"],
            type=name,
            payload=body["payload"],
            priority=Priority(validated.priority),
            key=validated.key,
            callback=callback,
            tags=tuple(validated.tags),
            then=tuple(validated.then or ()),
        ),
        validated,
    )


def check_callback(task: Task, rt: Runtime) -> None:
    """Refuse a task whose callback the stage may not call (chalicelib/callbacks/url.py), and a client's
    task of the `callback` type, whose body taskproc would sign as its own.

    Raises:
        ValidationFailed: naming `callback.url` (or `id`, `type`) and the rule.
    """
    if task.type == CALLBACK_TYPE:
        rule = "must not be callback: taskproc publishes that type itself, for a task's `callback`"
        raise ValidationFailed("the task is not valid", [FieldProblem("type", rule)])
    if task.callback is None:
        return
    delivery_id = callback_task_id(task.id, MAX_CALLBACK_GENERATION)  # the longest of its deliveries' ids
    if task_id_problem(delivery_id) is not None:
        room = f"{CALLBACK_TASK_SUFFIX}/{MAX_CALLBACK_GENERATION}"
        rule = f"with a callback, must leave room for {room!r}: {delivery_id!r} must be {TASK_ID_RULE}"
        raise ValidationFailed("the callback is not valid", [FieldProblem("id", rule)])
    try:
        rt.callback_urls.check(task.callback)
    except CallbackRefused as refused:
        raise ValidationFailed("the callback is not valid", [FieldProblem("callback.url", refused.rule)]) from None


def run_at_ms(validated: TaskIn, now_ms: int) -> int | None:
    """The body's `runAt` as epoch ms, or None without one.

    Raises:
        ValidationFailed: it is more than MAX_RUN_AT_DAYS ahead of `now_ms`.
    """
    if validated.runAt is None:
        return None
    try:
        moment = round(validated.runAt.timestamp() * 1000)
    except (OverflowError, OSError, ValueError):  # a year DynamoDB and epoch ms cannot hold
        moment = None
    if moment is None or moment - now_ms > MAX_RUN_AT_DAYS * 86_400_000:
        raise ValidationFailed("the task is not valid", [FieldProblem("runAt", RUN_AT_RULE)])
    return max(0, moment)


def publish(body: dict[str, Any], rt: Runtime) -> PublishAccepted:
    """Store and queue a client's task. A known id answers as a duplicate and is not queued again."""
    task, validated = validated_task(body, rt.registry)
    check_callback(task, rt)
    now_ms = rt.store.now_ms()
    start = Start.of(now_ms, validated.delaySeconds, run_at_ms(validated, now_ms), rt.settings.RUN_AT_TIMER_SECONDS)
    return _accept(task, rt, start, validated.expiresInSeconds, Uniqueness.of(validated))


def publish_task(task: Task, rt: Runtime) -> PublishAccepted:
    """Store and queue a task built in the code (a schedule's firing), by the publish path's rules."""
    return _accept(task, rt, Start())


def create_from_payload(
    body: dict[str, Any],
    rt: Runtime,
    key: str | None = None,
    priority_name: str | None = None,
    callback_url: str | None = None,
    tags: Sequence[str] = (),
) -> TaskCreated:
    """Store and queue a simulated task whose payload is the whole body, as the seed has it, under a
    new id, with the flow key `key`, the class `priority_name`, the callback `callback_url` and the
    `tags` (the route's query parameters `key`, `priority`, `callbackUrl`, and `tag` once per tag:
    the body is all payload) if given.

    Raises:
        ValidationFailed: the payload does not fit `simulate`, `priority` is not a class, or the key
            or a tag breaks its rule (a tag's detail names `tag[<i>]`).
    """
    simulate = rt.registry.get(DEFAULT_TYPE)
    assert simulate is not None, "the simulate type is built in"
    if key is not None and (problem := key_problem(key)) is not None:
        raise ValidationFailed("the flow key is not valid", [FieldProblem("key", problem)])
    payload = body
    try:
        priority = Priority(
            _priority.validate_python(Priority.DEFAULT.value if priority_name is None else priority_name)
        )
    except ValidationError as exc:
        raise ValidationFailed("the task is not valid", [FieldProblem(PRIORITY_FIELD, PRIORITY_RULE)]) from exc
    try:
        simulate.parse(payload)
    except ValidationError as exc:
        raise ValidationFailed("the task payload is not valid", field_problems(exc)) from exc
    try:
        callback = None if callback_url is None else CallbackIn(url=callback_url).url
    except ValidationError as exc:
        raise ValidationFailed("the callback is not valid", field_problems(exc, prefix=("callback",))) from exc
    try:
        checked_tags = tuple(_tags.validate_python(list(tags)))
    except ValidationError as exc:
        raise ValidationFailed("the task is not valid", field_problems(exc, prefix=(TAG_PARAMETER,))) from exc
    task = Task(
        id=str(uuid.uuid4()),
        type=DEFAULT_TYPE,
        payload=payload,
        priority=priority,
        key=key,
        callback=callback,
        tags=checked_tags,
    )
    check_callback(task, rt)
    accepted = _accept(task, rt, Start())
    return TaskCreated(taskId=accepted.id, id=accepted.id, status=accepted.status)


def max_attempts_of(task: Task, rt: Runtime) -> int:
    task_type = rt.registry.get(task.type)
    return task_type.attempts(rt.settings.MAX_ATTEMPTS) if task_type else rt.settings.MAX_ATTEMPTS


def _accept(
    task: Task,
    rt: Runtime,
    start: Start,
    expires_in_seconds: int | None = None,
    wanted: Uniqueness | None = None,
) -> PublishAccepted:
    """Claim the task's unique key if it has one, queue its message (or write its timer), then store its item.

    The message goes first so that no process death or lost answer can leave an item
    without a message: a message whose item never arrives is stored by the consumer
    that receives it (`TaskStore.acquire` creates a missing item). A duplicate id's
    message is received and dropped there; its task keeps its first payload and never
    runs twice. See docs/architecture.md, "Nothing is stranded". An expiry is fixed now and
    travels in the message too, so that a consumer that stores the task keeps it. A key another
    task holds answers a duplicate naming it, with nothing sent (chalicelib/flow/unique.py).
    A task due further ahead than SQS can delay a message has a timer instead, which plays the
    message's part (chalicelib/tick/timers.py).
    """
    message = checked_message(task)
    start_by = start_by_ms(rt.store.now_ms(), expires_in_seconds)
    keys = UniqueKeys(rt.flow, rt.store)
    claim = None
    if wanted is not None:
        try:
            claim = keys.claim(wanted, task.id)
        except KeyHeld as held:
            return held_back(task, held.claim)
        except StoreError as exc:
            raise ServiceUnavailable(UNCLAIMED) from exc
    timer = timer_of(task, message, start, start_by)
    message_id: str | None = None
    earlier: Timer | None = None  # the timer a dead publish of this id left, if any
    try:
        if timer is None:
            queue = rt.queue_for(task.priority)
            message_id = queue.send(message, message_attributes(start_by), delay_seconds=start.delay_seconds)
        else:
            earlier = rt.timers.put_new(timer)
    except (QueueError, StoreError) as exc:
        if claim is not None:
            keys.release(claim)
        raise ServiceUnavailable(UNTIMED if timer is not None else UNQUEUED) from exc
    unique = claim.attribute if claim is not None else None
    try:
        record, created = rt.store.create(
            task, max_attempts_of(task, rt), 0, message_id, start_by, unique, start.not_before_ms
        )
        if timer is not None:
            settle_timer(rt, timer, earlier, created)
    except StoreError as exc:
        raise ServiceUnavailable(unstored(task.id)) from exc
    if claim is not None:
        keys.settle(claim, record, created)
    if not created:
        return duplicate(task, record, rt.store.now_ms())
    return accepted(task, record.status, message_id, start)


def timer_of(task: Task, message: str, start: Start, start_by: int | None) -> Timer | None:
    """The timer that holds the task's message until it is due, when SQS cannot delay it that long."""
    if not start.by_timer or start.not_before_ms is None:
        return None
    return Timer(task.id, start.not_before_ms, message, task.priority, message_attributes(start_by))


def settle_timer(rt: Runtime, timer: Timer, earlier: Timer | None, created: bool) -> None:
    """Make the timer of a task this publish stored carry this publish's message.

    `earlier` is the timer the task id already had when this one was written (None: this one was).
    It belongs to a publish that died before its put (a live task's timer is only ever found by a
    duplicate, whose put is refused): the task is this publish's now, and so is the timer. A
    duplicate's own timer stays, as a duplicate's message does: the ticker deletes it unsent when
    the task has a message or has ended, and otherwise it runs the task (chalicelib/tick/ticker.py).
    """
    if created and earlier is not None and earlier != timer:
        rt.timers.replace(timer)


# A PENDING task with no attempt this long after it was due has lost its message (only an
# item stored before messages were sent first can); a repeat publish then heals it.
OVERDUE_MS = 60_000


def _overdue(record: TaskRecord, now_ms: int) -> bool:
    due = ms_from_iso(record.not_before) if record.not_before else ms_from_iso(record.created_at)
    return now_ms - due > OVERDUE_MS


UNQUEUED = "the task queue did not answer; the task was not accepted, try again"
UNTIMED = "the schedules table did not answer while the task's timer was written; the task was not accepted, try again"
UNCLAIMED = "the flow table did not answer while the unique key was claimed; the task was not accepted, try again"


def unstored(task_id: str) -> str:
    """Why a task whose message was sent got no answer: it runs unless its id was taken."""
    return (
        f"the task table did not answer after task {task_id!r} was queued: it will run unless the id was"
        " already taken; publish it again with the same id to see where it stands"
    )


def accepted(task: Task, status: Status, message_id: str | None, start: Start) -> PublishAccepted:
    """The answer for a task stored and queued (or, when `message_id` is None, stored with its timer), logged
    and counted."""
    log_event(
        "accepted",
        taskId=task.id,
        type=task.type,
        messageId=message_id,
        delaySeconds=start.delay_seconds or None,
        runAt=iso_from_ms(start.not_before_ms) if start.by_timer and start.not_before_ms is not None else None,
        priority=None if task.priority is Priority.DEFAULT else task.priority.value,
    )
    metrics.count(Metric.ACCEPTED, task.type)
    return PublishAccepted(id=task.id, status=status, duplicate=False)


def duplicate(task: Task, record: TaskRecord, now_ms: int) -> PublishAccepted:
    """The answer for a task whose id was already taken, logged and counted.

    Its message was sent before the id was found taken; the consumer drops it, unless the
    stored task is PENDING with no attempt yet (stored by a publish whose message never
    left): then that message runs it, and the repeat publish has healed it.
    """
    log_event("duplicate_publish", taskId=task.id, status=record.status.value)
    metrics.count(Metric.DUPLICATES, task.type)
    if record.status is Status.PENDING and record.attempts == 0 and _overdue(record, now_ms):
        log_event("redispatched", logging.WARNING, taskId=task.id, createdAt=record.created_at)
        metrics.count(Metric.TASKS_REDISPATCHED, record.type)
    return PublishAccepted(id=task.id, status=record.status, duplicate=True)


def held_back(task: Task, claim: KeyClaim) -> PublishAccepted:
    """The answer for a task whose unique key another task holds: not stored, not queued."""
    log_event("unique_duplicate", taskId=task.id, uniqueKey=claim.key, existingId=claim.holder)
    metrics.count(Metric.UNIQUE_DUPLICATES, task.type)
    return PublishAccepted(id=task.id, status=None, duplicate=True, existingId=claim.holder)


def decode_task_id(path_value: str, gateway_decoded: bool) -> str:
    """The task id from the `{task_id}` path segment.

    API Gateway hands path parameters over decoded; Chalice's local gateway
    (`chalice local` and `chalice.test.Client`) hands them over still
    percent-encoded, so they are decoded here exactly once.
    """
    if gateway_decoded:
        return path_value
    try:
        return unquote(path_value, errors="strict")
    except UnicodeDecodeError as exc:
        raise ValidationFailed(
            "the task id is not percent-encoded UTF-8", [FieldProblem("task_id", "must be percent-encoded UTF-8")]
        ) from exc


def read_task(task_id: str, rt: Runtime) -> tuple[TaskRecord, dict[str, Any]]:
    """The task (one strongly consistent read) and its raw item.

    Raises:
        TaskNotFound: no task has this id.
        ServiceUnavailable: the table did not answer.
    """
    if task_id_problem(task_id) is not None:
        raise TaskNotFound(f"no task has this id (ids have {TASK_ID_RULE})")
    try:
        item = rt.store.get_item(task_id)
    except StoreError as exc:
        raise ServiceUnavailable("the task table did not answer; try again") from exc
    if item is None:
        raise TaskNotFound(f"no task has id {task_id!r}")
    return record_from_item(item), item


def get_task(task_id: str, rt: Runtime, wait_seconds: int = 0) -> TaskView:
    """The task as a client sees it: operators' actions say `by: "operator"`, not the IAM principal.

    With `wait_seconds`, as soon as the task is terminal, or after that long where it stands then
    (chalicelib/publish/wait.py: one read now, then reads on a schedule).

    Raises:
        TaskNotFound: no task has this id.
        ServiceUnavailable: the table did not answer, now or during the wait.
    """
    record, _ = read_task(task_id, rt)
    if wait_seconds:
        record = wait_for(
            lambda: read_task(task_id, rt)[0], lambda read: read.is_terminal, record, wait_seconds, rt.wait_clock
        )
    view = task_view(record, rt.store.now_ms(), principals=False)
    if not record.then:
        return view
    try:
        return view.model_copy(update={"then": chain_view(record, rt.store.get)})
    except StoreError as exc:
        raise ServiceUnavailable("the task table did not answer; try again") from exc


# What `/health` tells anyone who asks, per failure: a fixed phrase, never the error's text.
HEALTH_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (SettingsError, "the settings are invalid"),
    (RegistrationError, "the task types are misconfigured"),
    (StoreError, "the task table is unreachable"),
    (CursorSecretUnavailable, "the cursor secret is not available"),
)


def health(load_runtime: Callable[[], Runtime], request_id: str | None = None) -> tuple[int, Health]:
    """200 when the settings are valid and the table answers, else 503 with a fixed reason.

    The caller may be anyone, and an AWS error names the account, the role and the table,
    so the answer says only which dependency failed; the error itself goes to the log,
    under the correlation id the answer carries (`request_id`, API Gateway's id of the
    request, where there is one).
    """
    try:
        rt = load_runtime()
        rt.store.ping()
        rt.cursor_keys.key()
    except (TaskprocError, RegistrationError) as exc:
        reason = next((phrase for kind, phrase in HEALTH_REASONS if isinstance(exc, kind)), "a dependency failed")
        correlation_id = request_id or str(uuid.uuid4())
        log_event(
            "health_unavailable",
            logging.ERROR,
            correlation_id=correlation_id,
            reason=reason,
            error=str(exc),
            errorType=type(exc.__cause__ or exc).__name__,
        )
        return 503, Health(status="unavailable", reason=reason, correlationId=correlation_id)
    return 200, Health(status="ok")
