"""The task item as the store reads it: a small value object with derived properties."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from chalicelib.models import (
    DEFAULT_TYPE,
    Action,
    ChainPosition,
    ChainStepIn,
    Outcome,
    Status,
    Task,
    WorkflowRef,
    callback_task_id,
)
from chalicelib.tasks.priority import Priority

# The task item's `unique` map: the claim of a unique key this task was published holding
# (chalicelib/flow/unique.py): {"key", "until": epoch ms or "terminal", "claimedAt": epoch ms}.
UNIQUE_ATTRIBUTE = "unique"
# The task item's `callback` map, {"url"}: the completion callback given at publish.
CALLBACK_ATTRIBUTE = "callback"
# A chain (chalicelib/chains.py): `then`, the steps still to come as JSON text (payloads are stored as
# text, as `payload` is); `chain`, on a step's task, the map {"root", "step"}.
THEN_ATTRIBUTE = "then"
CHAIN_ATTRIBUTE = "chain"
WORKFLOW_ATTRIBUTE = "workflow"


def iso_from_ms(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ms_from_iso(timestamp: str) -> int:
    return int(datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp() * 1000)


@dataclass(frozen=True)
class Lease:
    """Who runs the task's current attempt, and until when the claim holds."""

    owner: str
    expires_at_ms: int
    started_at: str

    def is_live(self, now_ms: int) -> bool:
        return self.expires_at_ms > now_ms


@dataclass(frozen=True)
class TaskRecord:
    id: str
    status: Status
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    created_at: str
    updated_at: str
    version: int = 0
    finished_at: str | None = None
    last_error: str | None = None
    retry_at_ms: int | None = None
    last_message_id: str | None = None
    progress_json: str | None = None
    redrives: int = 0
    lease: Lease | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    type: str = DEFAULT_TYPE
    result_json: str | None = None
    not_before: str | None = None
    cancel_requested: bool = False
    start_by_ms: int | None = None
    unique: dict[str, Any] | None = None  # the UNIQUE_ATTRIBUTE map, numbers as ints
    priority: Priority = Priority.DEFAULT
    key: str | None = None  # the flow key given at publish
    callback: str | None = None  # the completion callback's URL given at publish (chalicelib/callbacks/)
    tags: tuple[str, ...] = ()
    then: tuple[ChainStepIn, ...] = ()  # the chain's steps after this task
    chain: ChainPosition | None = None  # a step task's place in its chain
    workflow: WorkflowRef | None = None  # a workflow's child or `then` (chalicelib/workflows/)

    @property
    def task(self) -> Task:
        return Task(
            id=self.id,
            type=self.type,
            payload=self.payload,
            priority=self.priority,
            key=self.key,
            callback=self.callback,
            tags=self.tags,
            then=self.then,
            chain=self.chain,
            workflow=self.workflow,
        )

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    @property
    def generation(self) -> int:
        """Which of the task's runs this is: 1, and one more for each operator retry in its history (which is
        never trimmed: a retry that could fill it is refused). Its end is called back as this generation's."""
        return 1 + sum(1 for entry in self.history if entry.get("kind") == Action.RETRY.value)

    @property
    def callback_task(self) -> str | None:
        """The id of its latest callback delivery: this run's once it has ended, else the run's before it
        (a task retried and not ended again), else the first (to come)."""
        if self.callback is None:
            return None
        latest = self.generation if self.is_terminal else max(1, self.generation - 1)
        return callback_task_id(self.id, latest)

    @property
    def attempts_left(self) -> int:
        return max(0, self.max_attempts - self.attempts)

    def live_lease(self, now_ms: int) -> Lease | None:
        return self.lease if self.lease and self.lease.is_live(now_ms) else None

    @property
    def not_before_ms(self) -> int | None:
        """When its first attempt may start (epoch ms), if it was published with a delay or a `runAt`."""
        return ms_from_iso(self.not_before) if self.not_before else None

    def expired_before_start(self, now_ms: int) -> bool:
        """Whether its first attempt never started and its expiry has passed (the acquire's condition, read back)."""
        return self.attempts == 0 and self.start_by_ms is not None and self.start_by_ms <= now_ms

    @property
    def expired_reason(self) -> str:
        return f"attempt {self.attempts} of {self.max_attempts} expired: the consumer stopped before finishing"

    def expired_attempt(self) -> dict[str, Any] | None:
        """The history entry for an attempt whose consumer died holding the lease."""
        if self.lease is None:
            return None
        return attempt_entry(
            self.attempts,
            self.lease.started_at,
            iso_from_ms(self.lease.expires_at_ms),
            Outcome.EXPIRED,
            "the consumer stopped before finishing; its lease expired",
        )


def attempt_entry(
    attempt: int, started_at: str, finished_at: str, outcome: Outcome, error: str | None
) -> dict[str, Any]:
    return {
        "kind": "attempt",
        "attempt": attempt,
        "startedAt": started_at,
        "finishedAt": finished_at,
        "outcome": outcome.value,
        "error": error,
    }


def action_entry(action: Action, at: str, by: str, from_status: Status) -> dict[str, Any]:
    """An operator's action as its history entry. `op` (not shown in views) is unique to the request,
    so that a write whose answer was lost knows its own entry when botocore's retry meets it."""
    return {"kind": action.value, "at": at, "by": by, "fromStatus": from_status.value, "op": uuid.uuid4().hex}


def record_from_item(item: dict[str, Any]) -> TaskRecord:
    """Build a record from a DynamoDB item already deserialized to Python values."""
    lease = None
    if "leaseOwner" in item:
        lease = Lease(
            owner=item["leaseOwner"],
            expires_at_ms=int(item["leaseExpiresAt"]),
            started_at=item["attemptStartedAt"],
        )
    return TaskRecord(
        id=item["id"],
        status=Status(item["status"]),
        payload=json.loads(item["payload"]),
        attempts=int(item.get("attempts", 0)),
        max_attempts=int(item["maxAttempts"]),
        created_at=item["createdAt"],
        updated_at=item["updatedAt"],
        version=int(item.get("version", 0)),
        finished_at=item.get("finishedAt"),
        last_error=item.get("lastError"),
        retry_at_ms=int(item["retryAt"]) if "retryAt" in item else None,
        last_message_id=item.get("lastMessageId"),
        progress_json=item.get("progress"),
        redrives=int(item.get("redrives", 0)),
        lease=lease,
        history=[_entry(entry) for entry in item.get("history", [])],
        type=item.get("type", DEFAULT_TYPE),
        result_json=item.get("result"),
        not_before=item.get("notBefore"),
        cancel_requested=bool(item.get("cancelRequested", False)),
        start_by_ms=int(item["startBy"]) if "startBy" in item else None,
        unique=_unique(item.get(UNIQUE_ATTRIBUTE)),
        priority=priority_of_item(item),
        key=item.get("key"),
        callback=(item.get(CALLBACK_ATTRIBUTE) or {}).get("url"),
        tags=tuple(item.get("tags", ())),
        then=steps_from_json(item.get(THEN_ATTRIBUTE)),
        chain=_chain(item.get(CHAIN_ATTRIBUTE)),
        workflow=_workflow(item.get(WORKFLOW_ATTRIBUTE)),
    )


def steps_to_json(steps: tuple[ChainStepIn, ...]) -> str:
    """A chain's steps as the item's `then` text."""
    return json.dumps([step.model_dump() for step in steps], ensure_ascii=False, separators=(",", ":"))


def steps_from_json(text: str | None) -> tuple[ChainStepIn, ...]:
    """The item's `then` text as steps; none when the item has no chain."""
    return tuple(ChainStepIn.model_validate(step) for step in json.loads(text)) if text else ()


def _chain(value: dict[str, Any] | None) -> ChainPosition | None:
    """The `chain` map with DynamoDB's Decimal made an int again."""
    return ChainPosition(root=value["root"], step=int(value["step"])) if value else None


def _workflow(value: dict[str, Any] | None) -> WorkflowRef | None:
    return WorkflowRef(value["id"], int(value["child"])) if value else None


def _unique(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """The `unique` map with DynamoDB's Decimals made ints again (`until` may be "terminal")."""
    if not value:
        return None
    until = value["until"]
    return {**value, "until": until if isinstance(until, str) else int(until), "claimedAt": int(value["claimedAt"])}


def priority_of_item(item: dict[str, Any]) -> Priority:
    """The class an item (or an index entry) was published in; items stored before classes existed are default."""
    try:
        return Priority(item.get("priority", Priority.DEFAULT.value))
    except ValueError:
        return Priority.DEFAULT


def _entry(entry: dict[str, Any]) -> dict[str, Any]:
    """A history entry with DynamoDB's Decimals made ints again."""
    return {**entry, "attempt": int(entry["attempt"])} if "attempt" in entry else dict(entry)
