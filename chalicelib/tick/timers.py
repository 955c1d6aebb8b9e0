"""Timers: the message of a task that runs at a time further ahead than SQS can delay one.

SQS delays a message by 900 s at most. A task published with a `runAt` further ahead is
stored at once (PENDING, `notBefore` = runAt) and its message waits here instead, as the
item `timer#<task id>` of the schedules table, carrying what the message would carry: its
body, its message attributes (the expiry) and its priority class. The item holds the sparse
index's keys (`dueShard`, `dueAt`), so the ticker (chalicelib/tick/ticker.py) finds what is due
with one Query per shard, never a Scan, and sends each message shortly before its time with
the rest as SQS's own delay.

The timer plays the message's part in "Nothing is stranded" (docs/architecture.md): it is
written before the task item, so a publish that dies in between leaves a timer whose message
the consumer's acquire turns into the task when it arrives, never an item without a message.
"""

from __future__ import annotations

import contextlib
import json
import math
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from chalicelib.models import DEFAULT_TYPE, MAX_DELAY_SECONDS
from chalicelib.tasks.priority import Priority
from chalicelib.tasks.table import ConditionFailed, TaskTable, deserialize, names, serialize

TIMER_PREFIX = "timer#"
DUE_INDEX = "by-due"
DUE_SHARDS = 8
# `dueAt` is a string key, so epoch ms are zero-padded to sort as numbers do (13 digits last to 2286).
DUE_AT_DIGITS = 13
# One Query page of a shard; a tick reads at most MAX_PAGES of them per shard and leaves the rest
# for the next tick, so a burst of due timers never outlasts the ticker's invocation.
PAGE_SIZE = 100
MAX_PAGES = 5

TIMER_IS_NEW = "attribute_not_exists(#id)"
STILL_DUE_AT = "#dueAt = :dueAt"


def timer_key(task_id: str) -> str:
    return f"{TIMER_PREFIX}{task_id}"


def due_shard(item_id: str) -> str:
    """The index's partition of an item: a hash of its id, so a burst spreads over DUE_SHARDS partitions."""
    return str(zlib.crc32(item_id.encode("utf-8")) % DUE_SHARDS)


def due_at(epoch_ms: int) -> str:
    return str(epoch_ms).zfill(DUE_AT_DIGITS)


@dataclass(frozen=True)
class Start:
    """When a published task's first attempt may start, and what carries it there.

    `by_timer`: a timer holds its message (further ahead than SQS's 900 s); otherwise the message
    is sent now, hidden for `delay_seconds`. `not_before_ms` is what the item shows as `notBefore`
    and the consumer's acquire waits for.
    """

    delay_seconds: int = 0
    not_before_ms: int | None = None
    by_timer: bool = False

    @classmethod
    def of(
        cls, now_ms: int, delay_seconds: int = 0, run_at_ms: int | None = None, timer_after: int = MAX_DELAY_SECONDS
    ) -> Start:
        """The start of a task published at `now_ms` with `delaySeconds` or `runAt` (epoch ms); a
        `runAt` more than `timer_after` seconds ahead (at most SQS's 900) gets a timer.

        The time is fixed before the message is sent, so the message is never visible before it.
        """
        if run_at_ms is None:
            return cls(delay_seconds, now_ms + delay_seconds * 1000 if delay_seconds else None)
        wait_seconds = math.ceil(max(0, run_at_ms - now_ms) / 1000)
        if wait_seconds <= min(timer_after, MAX_DELAY_SECONDS):
            return cls(wait_seconds, run_at_ms)
        return cls(0, run_at_ms, by_timer=True)


@dataclass(frozen=True)
class Timer:
    """A task's message, held until `due_ms` (epoch ms)."""

    task_id: str
    due_ms: int
    body: str
    priority: Priority = Priority.DEFAULT
    attributes: Mapping[str, str] = field(default_factory=dict)

    @property
    def task_type(self) -> str | None:
        """The task type its message names, for its metrics; None when it names none readable."""
        try:
            value = json.loads(self.body).get("type", DEFAULT_TYPE)
        except (ValueError, AttributeError):
            return None
        return value if isinstance(value, str) else None

    def delay_seconds(self, now_ms: int) -> int:
        """SQS's DelaySeconds for the message sent at `now_ms`: the rest of the wait, rounded up, so
        the message is never visible before its time."""
        return min(MAX_DELAY_SECONDS, math.ceil(max(0, self.due_ms - now_ms) / 1000))

    def item(self) -> dict[str, Any]:
        key = timer_key(self.task_id)
        return {
            "id": key,
            "taskId": self.task_id,
            "dueShard": due_shard(key),
            "dueAt": due_at(self.due_ms),
            "body": self.body,
            "priority": self.priority.value,
            "attributes": dict(self.attributes),
        }

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> Timer:
        return cls(
            task_id=str(item["taskId"]),
            due_ms=int(item["dueAt"]),
            body=str(item["body"]),
            priority=Priority(item.get("priority", Priority.DEFAULT.value)),
            attributes={str(name): str(value) for name, value in (item.get("attributes") or {}).items()},
        )


class TimerStore:
    """Timer items of the schedules table: written at publish, read by due time, deleted once sent.

    Raises StoreError (chalicelib/errors.py) from every method when DynamoDB fails after botocore's retries.
    """

    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self.name = table_name

    def put_new(self, timer: Timer) -> Timer | None:
        """Write `timer` unless the task already has one; None when written, else the one it has."""
        try:
            TaskTable._call(
                self._client.put_item,
                TableName=self.name,
                Item=serialize(timer.item()),
                ConditionExpression=TIMER_IS_NEW,
                ExpressionAttributeNames=names(TIMER_IS_NEW),
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ConditionFailed as refused:
            return Timer.from_item(refused.old) if refused.old else timer
        return None

    def replace(self, timer: Timer) -> None:
        """Write `timer` over the task's timer, whatever it held."""
        TaskTable._call(self._client.put_item, TableName=self.name, Item=serialize(timer.item()))

    def delete(self, timer: Timer) -> None:
        """Delete the timer if it is still this one (a later publish's timer of the same id stays); a
        timer already gone is no error, so a repeated delete is harmless."""
        with contextlib.suppress(ConditionFailed):
            TaskTable._call(
                self._client.delete_item,
                TableName=self.name,
                Key=self._key(timer.task_id),
                ConditionExpression=STILL_DUE_AT,
                ExpressionAttributeNames=names(STILL_DUE_AT),
                ExpressionAttributeValues=serialize({":dueAt": due_at(timer.due_ms)}),
            )

    def due_in(self, shard: int, until_ms: int) -> Iterator[Timer]:
        """The timers of one index shard due at or before `until_ms`, oldest first; at most MAX_PAGES
        pages of PAGE_SIZE index entries (the rest wait for the next call)."""
        condition = "#dueShard = :shard AND #dueAt <= :until"
        # The index holds the schedules' items too; only timers are read back.
        only_timers = "begins_with(#id, :timer)"
        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "IndexName": DUE_INDEX,
            "KeyConditionExpression": condition,
            "FilterExpression": only_timers,
            "ExpressionAttributeNames": names(condition, only_timers),
            "ExpressionAttributeValues": serialize(
                {":shard": str(shard), ":until": due_at(until_ms), ":timer": TIMER_PREFIX}
            ),
            "Limit": PAGE_SIZE,
        }
        for _ in range(MAX_PAGES):
            response = TaskTable._call(self._client.query, **kwargs)
            for raw in response.get("Items", []):
                item = deserialize(raw)
                if item:
                    yield Timer.from_item(item)
            if "LastEvaluatedKey" not in response:
                return
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    @staticmethod
    def _key(task_id: str) -> dict[str, Any]:
        return {"id": {"S": timer_key(task_id)}}
