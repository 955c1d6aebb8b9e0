"""`Client`: every call of the taskproc API as a method, typed answers, the error family.

A producer needs three calls (`publish`, `publish_many`, `wait`); an operator the others,
which a deployed stage guards with IAM (the client signs them, see `signing`).

Which calls are retried after a transient failure (`retries`): every read; `publish` and
`publish_many`, whose every task has an id (the client makes one when none is given, so the
server's deduplication makes a retry safe); `pause_type`, `resume_type`, `update_schedule`,
`pause_schedule`, `resume_schedule` and `backfill_schedule`, which end in the same state
however often they land; and `publish_workflow`, whose id is the client's like a publish's
(the server answers a repeat of the same workflow as the first, and publishes any child the
first left unpublished). `retry`, `cancel`, `retry_all_failed` (unless a dry run),
`create_schedule`, `delete_schedule` and `trigger_schedule` are tried again only when their
request surely never reached the API (no connection, or a 429): a second landing would answer
409 or 404 for work the first one did, or trigger twice.
"""

from __future__ import annotations

import builtins
import math
import os
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import quote

import httpx

from taskproc_client.errors import (
    TaskCancelled,
    TaskFailed,
    TaskprocError,
    WaitTimeout,
    error_from_entry,
)
from taskproc_client.models import (
    Backfill,
    BulkRetry,
    PublishAnswer,
    Schedule,
    SchedulePage,
    ScheduleSummary,
    Stats,
    Status,
    StuckPage,
    TaskPage,
    TaskSummary,
    TaskType,
    TaskView,
    Workflow,
)
from taskproc_client.retries import RetryPolicy
from taskproc_client.signing import Signer, is_loopback
from taskproc_client.transport import Response, Transport

BATCH_SIZE = 100  # the most POST /publish/batch takes
MAX_WAIT_SECONDS = 20  # the most one long poll of GET /tasks/{id}?waitSeconds= holds
# A server that answers a long poll at once (one that predates it) is polled at this pace instead.
FALLBACK_POLL_SECONDS = 1.0
ListedStatus = Literal["FAILED", "RETRYING", "CANCELLED"]
OnChildFailure = Literal["fail", "continue"]
Priority = Literal["high", "default", "low"]
Overlap = Literal["skip", "allow", "buffer_one"]


def _segment(value: str) -> str:
    """One path segment, percent-encoded (an id may hold `/`, `%`, spaces...)."""
    return quote(value, safe="")


def _json_payload(payload: Any) -> dict[str, Any]:
    """A dict as it is, or a pydantic model instance as its JSON document."""
    dump = getattr(payload, "model_dump", None)
    if callable(dump):
        document = dump(mode="json")
        if not isinstance(document, dict):
            raise TypeError("the payload model must dump to a JSON object")
        return document
    if isinstance(payload, Mapping):
        return dict(payload)
    raise TypeError(f"the payload must be a dict or a pydantic model instance, not {type(payload).__name__}")


def _rfc3339(moment: datetime | str) -> str:
    if isinstance(moment, str):
        return moment
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("run_at must be an aware datetime (with a timezone), e.g. datetime.now(UTC)")
    return moment.isoformat()


def _seconds(value: float | timedelta) -> int:
    return round(value.total_seconds() if isinstance(value, timedelta) else value)


def new_task_id() -> str:
    """A fresh id for a publish that names none: a random UUID."""
    return str(uuid.uuid4())


def _step(step: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A chain step or a workflow's `then`: `{"type", "payload"?}`, the payload a dict or a pydantic model."""
    if "type" not in step:
        raise ValueError(f"{where} needs a type: {{'type': ..., 'payload': ...}}")
    body: dict[str, Any] = {"type": step["type"]}
    if step.get("payload") is not None:
        body["payload"] = _json_payload(step["payload"])
    return body


def _callback(callback: str | Mapping[str, Any]) -> dict[str, Any]:
    """`callback` as the API takes it: `{"url"}` (a URL given alone is put in one)."""
    return {"url": callback} if isinstance(callback, str) else dict(callback)


def publish_body(
    type: str,
    payload: Any,
    *,
    id: str | None = None,
    delay: float | timedelta | None = None,
    run_at: datetime | str | None = None,
    tags: Sequence[str] = (),
    key: str | None = None,
    priority: Priority | None = None,
    unique_key: str | None = None,
    unique_for: float | timedelta | None = None,
    unique_until: Literal["terminal"] | None = None,
    expires_in: float | timedelta | None = None,
    then: Sequence[Mapping[str, Any]] | None = None,
    callback: str | Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The body of `POST /publish` (and of a batch entry) for these arguments; an id is made when none is given."""
    body: dict[str, Any] = {
        "id": id if id is not None else new_task_id(),
        "type": type,
        "payload": _json_payload(payload),
    }
    optional: dict[str, Any] = {
        "delaySeconds": None if delay is None else _seconds(delay),
        "runAt": None if run_at is None else _rfc3339(run_at),
        "tags": list(tags) or None,
        "key": key,
        "priority": priority,
        "uniqueKey": unique_key,
        "uniqueFor": None if unique_for is None else _seconds(unique_for),
        "uniqueUntil": unique_until,
        "expiresInSeconds": None if expires_in is None else _seconds(expires_in),
        "then": None if then is None else [_step(step, f"then[{n}]") for n, step in enumerate(then)],
        "callback": None if callback is None else _callback(callback),
    }
    body.update({name: value for name, value in optional.items() if value is not None})
    return body


def workflow_body(
    children: Iterable[Mapping[str, Any]],
    then: Mapping[str, Any],
    *,
    id: str | None = None,
    on_child_failure: OnChildFailure | None = None,
    callback: str | Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The body of `POST /workflows`; an id is made when none is given."""
    entries: builtins.list[dict[str, Any]] = []
    for child in children:
        # As `POST /publish`: a child without a type is the server's default (`simulate`), and one
        # without an id is `<workflow id>/<n>`.
        entry: dict[str, Any] = {"payload": _json_payload(child.get("payload", {}))}
        entry.update({name: child[name] for name in ("id", "type") if child.get(name) is not None})
        entries.append(entry)
    body: dict[str, Any] = {"id": id if id is not None else new_task_id(), "children": entries}
    body["then"] = _step(then, "then")
    if on_child_failure is not None:
        body["onChildFailure"] = on_child_failure
    if callback is not None:
        body["callback"] = _callback(callback)
    return body


@dataclass(frozen=True)
class TaskRef:
    """A published task: its id, what the publish answered, and the client to ask about it."""

    id: str
    status: Status | None
    duplicate: bool
    client: Client = field(repr=False, compare=False)
    existing_id: str | None = None  # the task holding the unique key, when the publish was held back

    def get(self) -> TaskView:
        return self.client.get(self.id)

    def wait(self, timeout: float = 60.0) -> TaskView:
        """`Client.wait` for this task."""
        return self.client.wait(self.id, timeout=timeout)

    def result(self, timeout: float = 60.0) -> Any:
        """The task's result once it is COMPLETED; raises TaskFailed, TaskCancelled or WaitTimeout."""
        return self.wait(timeout).result


@dataclass(frozen=True)
class BatchResult:
    """One entry of `publish_many`, in the order given: accepted (perhaps as a duplicate) or refused (`error`)."""

    id: str | None
    accepted: bool
    duplicate: bool = False
    status: Status | None = None
    existing_id: str | None = None
    error: TaskprocError | None = None


class Client:
    """The taskproc API at `url` (else `TASKPROC_URL`).

    `api_key` (else `TASKPROC_API_KEY`) is sent as `x-api-key`. `sign`: sign requests with SigV4
    (None: unless the URL is on this machine); the credentials are botocore's (environment,
    `profile`, SSO, instance role) or those of `session`, a boto3 or botocore session.
    `timeout`: seconds per request (a long poll adds its wait). `retries`: see RetryPolicy.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        sign: bool | None = None,
        timeout: float = 10,
        *,
        profile: str | None = None,
        session: Any = None,
        retries: RetryPolicy | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        found = url or os.environ.get("TASKPROC_URL")
        if not found:
            raise ValueError("no API URL: pass url= or set TASKPROC_URL")
        self.url = found.rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("TASKPROC_API_KEY") or None
        self.sign = (not is_loopback(self.url)) if sign is None else sign
        self.timeout = timeout
        self.signer = Signer(self.url, session=session, profile=profile)
        self.transport = Transport(
            self.url,
            api_key=self.api_key,
            signer=self.signer if self.sign else None,
            timeout=timeout,
            retries=retries or RetryPolicy(),
            http=http,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.transport.close()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, str] | None = None,
        *,
        idempotent: bool | None = None,
    ) -> Response:
        """Any route, answered as it is (4xx and 5xx included, after the retries). Raises Unreachable,
        NoCredentials, NoRegion."""
        return self.transport.request(method, path, body, query, idempotent=idempotent)

    def credentials(self) -> Any:
        """The AWS credentials requests are signed with, or None. Raises NoCredentials for a broken profile."""
        return self.signer.credentials()

    def region(self) -> str:
        """The region requests are signed for. Raises NoRegion."""
        return self.signer.region()

    # -- producers -------------------------------------------------------------------------------

    def publish(
        self,
        type: str,
        payload: Any,
        *,
        id: str | None = None,
        delay: float | timedelta | None = None,
        run_at: datetime | str | None = None,
        tags: Sequence[str] = (),
        key: str | None = None,
        priority: Priority | None = None,
        unique_key: str | None = None,
        unique_for: float | timedelta | None = None,
        unique_until: Literal["terminal"] | None = None,
        expires_in: float | timedelta | None = None,
        then: Sequence[Mapping[str, Any]] | None = None,
        callback: str | Mapping[str, Any] | None = None,
    ) -> TaskRef:
        """Publish one task (`POST /publish`); `payload` is a dict or an instance of the type's pydantic model.

        `then`: a chain, steps `{"type", "payload"?}` published one after another once the task before
        completes (the tasks `<id>/then/<n>`). `callback`: a URL (or `{"url"}`) told of the outcome.
        Without `id` the client makes one (a UUID), so a retry of a lost answer never publishes
        twice; a retried publish whose first try landed answers `duplicate=True`. Raises
        ValidationFailed (the fields named in `.errors`), PayloadTooLarge, Unauthorized, Unavailable.
        """
        body = publish_body(
            type,
            payload,
            id=id,
            delay=delay,
            run_at=run_at,
            tags=tags,
            key=key,
            priority=priority,
            unique_key=unique_key,
            unique_for=unique_for,
            unique_until=unique_until,
            expires_in=expires_in,
            then=then,
            callback=callback,
        )
        answer = PublishAnswer.of(self.transport.call("POST", "/publish", body, idempotent=True))
        return TaskRef(answer.id, answer.status, answer.duplicate, self, answer.existing_id)

    def publish_many(self, entries: Iterable[Mapping[str, Any]]) -> builtins.list[BatchResult]:
        """Publish many tasks, `BATCH_SIZE` to a `POST /publish/batch` request, in order.

        Each entry is a dict with `type`, `payload` and any keyword of `publish` (`id`, `delay`,
        `run_at`, `tags`, ...). One result per entry, in order; a refused entry has `.error` (an
        error of the family) and does not raise. Raises only when a whole request fails
        (Unavailable, Unauthorized...): the results of earlier requests are then lost to the
        caller, but their tasks are published, and publishing the same entries with their ids
        again is safe.
        """
        bodies = [publish_body(**dict(entry)) for entry in entries]
        results: builtins.list[BatchResult] = []
        for start in range(0, len(bodies), BATCH_SIZE):
            chunk = bodies[start : start + BATCH_SIZE]
            answer = self.transport.call("POST", "/publish/batch", {"tasks": chunk}, idempotent=True)
            results.extend(_batch_result(item) for item in answer["results"])
        return results

    def publish_workflow(
        self,
        children: Iterable[Mapping[str, Any]],
        then: Mapping[str, Any],
        *,
        id: str | None = None,
        on_child_failure: OnChildFailure | None = None,
        callback: str | Mapping[str, Any] | None = None,
    ) -> Workflow:
        """Publish a workflow (`POST /workflows`): 1 to 1,000 children `{"type"?, "payload", "id"?}`, run as
        ordinary tasks, and `then` (`{"type", "payload"?}`), run once with their outcomes when the last has ended.

        `on_child_failure`: "fail" (the server's default: a FAILED child fails the workflow, `then` does not
        run) or "continue". Without `id` the client makes one, so, as for `publish`, a retry of a lost answer
        lands on the same workflow: the server answers a repeat of the same body as the first. Raises
        ValidationFailed, Conflict (the id has another definition, or a child's id is another task's).
        """
        body = workflow_body(children, then, id=id, on_child_failure=on_child_failure, callback=callback)
        return Workflow.of(self.transport.call("POST", "/workflows", body, idempotent=True))

    def workflow(self, id: str) -> Workflow:
        """Where a workflow stands (`GET /workflows/{id}`): status, children's counts, `then`. Raises NotFound."""
        return Workflow.of(self.transport.call("GET", f"/workflows/{_segment(id)}"))

    def get(self, id: str) -> TaskView:
        """The task's view (`GET /tasks/{id}`). Raises NotFound."""
        return TaskView.of(self.transport.call("GET", f"/tasks/{_segment(id)}"))

    def wait(self, id: str, timeout: float = 60.0) -> TaskView:
        """The view of the task once COMPLETED, long-polling `GET /tasks/{id}?waitSeconds=`.

        Each poll holds at most 20 s (min(20, what is left of the timeout)) and answers as soon as
        the task ends. Raises TaskFailed or TaskCancelled (with `.view` and `.last_error`) for the
        other ends, WaitTimeout (a TimeoutError, with the last `.view`) past `timeout`, NotFound.
        """
        deadline = time.monotonic() + timeout
        view: TaskView | None = None
        while True:
            remaining = deadline - time.monotonic()
            hold = max(0, min(MAX_WAIT_SECONDS, math.floor(remaining)))
            asked = time.monotonic()
            path = f"/tasks/{_segment(id)}"
            document = self.transport.call("GET", path, query={"waitSeconds": str(hold)}, extra_timeout=hold)
            view = TaskView.of(document)
            if view.status is Status.COMPLETED:
                return view
            if view.status is Status.FAILED:
                raise TaskFailed(view)
            if view.status is Status.CANCELLED:
                raise TaskCancelled(view)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeout(view, timeout)
            if hold < 1 or time.monotonic() - asked < hold / 2:
                # Less than a second left, or a server that did not hold the poll: pace the reads.
                time.sleep(min(remaining, FALLBACK_POLL_SECONDS))

    # -- operators -------------------------------------------------------------------------------

    def list(
        self,
        status: ListedStatus,
        *,
        type: str | None = None,
        tag: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> TaskPage:
        """One page of tasks in `status`, most recently updated first (`GET /tasks`)."""
        query = {"status": status, "limit": str(limit)}
        query |= {name: value for name, value in (("type", type), ("tag", tag), ("cursor", cursor)) if value}
        return TaskPage.of(self.transport.call("GET", "/tasks", query=query))

    def iter_tasks(
        self, status: ListedStatus, *, type: str | None = None, tag: str | None = None, page_size: int = 100
    ) -> Iterator[TaskSummary]:
        """Every task in `status`, page after page, following `next_cursor`."""
        cursor: str | None = None
        while True:
            page = self.list(status, type=type, tag=tag, limit=page_size, cursor=cursor)
            yield from page.tasks
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def stats(self) -> Stats:
        """Counts of the listed statuses and the queues' depths (`GET /stats`)."""
        return Stats.of(self.transport.call("GET", "/stats"))

    def count(self, status: ListedStatus) -> int:
        """How many tasks are in `status` (counted up to 1,000: `stats().sources` says when a count is a floor)."""
        return self.stats().counts.get(status) or 0

    def stuck(self, *, cursor: str | None = None) -> StuckPage:
        """One page of stuck tasks (`GET /stuck`): PENDING past the dispatch bound, PROCESSING past the lease.
        Each page is one bounded Scan; follow `next` for the rest of the table."""
        query = {"cursor": cursor} if cursor else None
        return StuckPage.of(self.transport.call("GET", "/stuck", query=query))

    def retry(self, id: str, *, expires_in: float | timedelta | None = None) -> TaskView:
        """Start a FAILED or CANCELLED task over (`POST /tasks/{id}/retry`). Raises Conflict, NotFound."""
        body = None if expires_in is None else {"expiresInSeconds": _seconds(expires_in)}
        return TaskView.of(self.transport.call("POST", f"/tasks/{_segment(id)}/retry", body, idempotent=False))

    def retry_all_failed(
        self,
        *,
        type: str | None = None,
        updated_since: datetime | str | None = None,
        limit: int = 1000,
        dry_run: bool = False,
        status: Literal["FAILED", "CANCELLED"] = "FAILED",
    ) -> BulkRetry:
        """Retry up to `limit` FAILED (or CANCELLED) tasks (`POST /retries`); `dry_run` only says which."""
        body: dict[str, Any] = {"status": status, "limit": limit, "dryRun": dry_run}
        if type is not None:
            body["type"] = type
        if updated_since is not None:
            body["updatedSince"] = _rfc3339(updated_since)
        return BulkRetry.of(self.transport.call("POST", "/retries", body, idempotent=dry_run))

    def cancel(self, id: str) -> TaskView:
        """Cancel a task (`POST /tasks/{id}/cancel`): at once when PENDING or RETRYING; a PROCESSING one's
        view has `cancel_requested`. Raises Conflict (it has ended), NotFound."""
        return TaskView.of(self.transport.call("POST", f"/tasks/{_segment(id)}/cancel", idempotent=False))

    def types(self) -> builtins.list[TaskType]:
        """Every registered task type (`GET /types`)."""
        return [TaskType.of(entry) for entry in self.transport.call("GET", "/types")["types"]]

    def task_type(self, name: str) -> TaskType:
        """One task type with its pause history (`GET /types/{type}`). Raises NotFound."""
        return TaskType.of(self.transport.call("GET", f"/types/{_segment(name)}"))

    def pause_type(self, name: str) -> TaskType:
        """Pause a type: no attempt of it starts until it is resumed (`changed` False when it already was)."""
        return TaskType.of(self.transport.call("POST", f"/types/{_segment(name)}/pause", idempotent=True))

    def resume_type(self, name: str) -> TaskType:
        """Resume a paused type."""
        return TaskType.of(self.transport.call("POST", f"/types/{_segment(name)}/resume", idempotent=True))

    # -- schedules -------------------------------------------------------------------------------

    def create_schedule(
        self,
        id: str,
        type: str,
        payload: Any,
        *,
        cron: str | None = None,
        rate: str | None = None,
        timezone: str | None = None,
        overlap: Overlap | None = None,
        catchup_window_seconds: int | None = None,
        paused: bool | None = None,
    ) -> Schedule:
        """Create a schedule (`POST /schedules`): `cron` ("0 9 * * MON-FRI") or `rate` ("15 minutes").
        Raises ValidationFailed (a payload its type refuses, a bad cron line or zone), Conflict (the id exists)."""
        body = _schedule_body(id, type, payload, cron, rate, timezone, overlap, catchup_window_seconds, paused)
        return Schedule.of(self.transport.call("POST", "/schedules", body, idempotent=False))

    def schedule_page(self, *, limit: int = 50, cursor: str | None = None) -> SchedulePage:
        """One page of schedules (`GET /schedules`), in the table's order; `next_cursor` for the next."""
        query = {"limit": str(limit)} | ({"cursor": cursor} if cursor else {})
        return SchedulePage.of(self.transport.call("GET", "/schedules", query=query))

    def schedules(self, *, page_size: int = 100) -> builtins.list[ScheduleSummary]:
        """Every schedule, all pages of `GET /schedules` followed."""
        found: builtins.list[ScheduleSummary] = []
        cursor: str | None = None
        while True:
            page = self.schedule_page(limit=page_size, cursor=cursor)
            found.extend(page.schedules)
            if not page.next_cursor:
                return found
            cursor = page.next_cursor

    def schedule(self, id: str) -> Schedule:
        """One schedule with its next five firings and its last one (`GET /schedules/{id}`). Raises NotFound."""
        return Schedule.of(self.transport.call("GET", f"/schedules/{_segment(id)}"))

    def update_schedule(
        self,
        id: str,
        type: str,
        payload: Any,
        *,
        cron: str | None = None,
        rate: str | None = None,
        timezone: str | None = None,
        overlap: Overlap | None = None,
        catchup_window_seconds: int | None = None,
        paused: bool | None = None,
    ) -> Schedule:
        """Replace a schedule's definition (`PUT /schedules/{id}`); a changed timing fires from now on.
        Raises NotFound, ValidationFailed, Conflict (a schedule the code declares)."""
        body = _schedule_body(id, type, payload, cron, rate, timezone, overlap, catchup_window_seconds, paused)
        return Schedule.of(self.transport.call("PUT", f"/schedules/{_segment(id)}", body))

    def delete_schedule(self, id: str) -> None:
        """Delete a schedule (`DELETE /schedules/{id}`); tasks it fired stay. Raises NotFound, Conflict
        (a schedule the code declares)."""
        self.transport.call("DELETE", f"/schedules/{_segment(id)}", idempotent=False)

    def pause_schedule(self, id: str) -> Schedule:
        """Pause a schedule: it fires nothing until resumed."""
        return Schedule.of(self.transport.call("POST", f"/schedules/{_segment(id)}/pause", idempotent=True))

    def resume_schedule(self, id: str) -> Schedule:
        """Resume a paused schedule; missed firings inside its catch-up window fire once each."""
        return Schedule.of(self.transport.call("POST", f"/schedules/{_segment(id)}/resume", idempotent=True))

    def trigger_schedule(self, id: str) -> TaskView:
        """Fire a schedule once now (`POST /schedules/{id}/trigger`): the view of the task it published."""
        return TaskView.of(self.transport.call("POST", f"/schedules/{_segment(id)}/trigger", idempotent=False))

    def backfill_schedule(self, id: str, start: datetime | str, end: datetime | str) -> Backfill:
        """Fire a schedule's firings from `start` to `end`, both included, at most 100 (`POST
        /schedules/{id}/backfill`). Firings have deterministic ids, so a repeat creates nothing twice
        (`duplicate` True)."""
        body = {"from": _rfc3339(start), "to": _rfc3339(end)}
        return Backfill.of(self.transport.call("POST", f"/schedules/{_segment(id)}/backfill", body, idempotent=True))


def _schedule_body(
    id: str,
    type: str,
    payload: Any,
    cron: str | None,
    rate: str | None,
    timezone: str | None,
    overlap: str | None,
    catchup_window_seconds: int | None,
    paused: bool | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"id": id, "type": type, "payload": _json_payload(payload)}
    optional = {
        "cron": cron,
        "rate": rate,
        "timezone": timezone,
        "overlap": overlap,
        "catchupWindowSeconds": catchup_window_seconds,
        "paused": paused,
    }
    body.update({name: value for name, value in optional.items() if value is not None})
    return body


def _batch_result(item: dict[str, Any]) -> BatchResult:
    error = item.get("error")
    if isinstance(error, dict):
        return BatchResult(id=item.get("id"), accepted=False, error=error_from_entry(error))
    answer = PublishAnswer.of(item)
    return BatchResult(
        id=answer.id, accepted=True, duplicate=answer.duplicate, status=answer.status, existing_id=answer.existing_id
    )
