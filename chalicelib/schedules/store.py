"""The schedules table's schedule items: `schedule#<id>`, written only under their version.

Each item holds the definition and the state as JSON and a `version`. Every write is a whole-item
put conditioned on the version it read (`UNCHANGED_SINCE_READ`) or on no item (`NOT_STORED`): of
two tickers, or a ticker and a PUT, racing on one schedule, one write lands and the other gets
`StaleSchedule` and reads again or gives up; no update is lost. An unpaused schedule carries the
sparse index `by-due`'s keys (`dueShard`, a hash of the id into 0..7, and `dueAt`, its next firing
as zero-padded epoch ms); a paused one carries neither, so the ticker never reads it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import Conflict, StoreError, TaskprocError
from chalicelib.schedules.definition import ScheduleDefinition
from chalicelib.schedules.record import Schedule, ScheduleState

logger = logging.getLogger(__name__)

PREFIX = "schedule#"
# The ids of the schedules the code declared, as last reconciled (chalicelib/schedules/declared.py).
DECLARED_KEY = "declared#schedules"
DUE_INDEX = "by-due"
SHARDS = 8
DUE_DIGITS = 13
NOT_STORED = "attribute_not_exists(id)"
UNCHANGED_SINCE_READ = "#version = :read"


class ScheduleNotFound(TaskprocError):
    """No schedule has this id."""

    status_code = 404
    code = "not_found"


class ScheduleExists(Conflict):
    """A schedule with this id is already stored."""


class StaleSchedule(Conflict):
    """The schedule changed between the read and the write that relied on it."""


def due_shard(schedule_id: str) -> str:
    """The index partition of a schedule: a stable hash of its id into 0..SHARDS-1."""
    return str(int.from_bytes(hashlib.sha256(schedule_id.encode("utf-8")).digest()[:4], "big") % SHARDS)


def due_at(at: datetime) -> str:
    return str(int(at.timestamp() * 1000)).zfill(DUE_DIGITS)


class ScheduleStore:
    """Read, create, replace, delete and find due schedules in the schedules table."""

    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self.table_name = table_name

    def get(self, schedule_id: str) -> Schedule | None:
        """The schedule (a strongly consistent read), or None."""
        answer = self._call(
            self._client.get_item, TableName=self.table_name, Key=_key(PREFIX + schedule_id), ConsistentRead=True
        )
        return _schedule(answer["Item"]) if "Item" in answer else None

    def create(self, schedule: Schedule, due: datetime | None) -> Schedule:
        """Store a new schedule, due at `due` (None: not due, e.g. paused).

        Raises:
            ScheduleExists: its id is taken.
        """
        return self._put(schedule, due, NOT_STORED, {}, ScheduleExists(f"a schedule with id {schedule.id!r} exists"))

    def replace(self, schedule: Schedule, due: datetime | None) -> Schedule:
        """Write `schedule` over the version it was read at.

        Raises:
            StaleSchedule: it changed (or was deleted) since.
        """
        stale = StaleSchedule(f"schedule {schedule.id!r} changed while this request ran; try again")
        return self._put(schedule, due, UNCHANGED_SINCE_READ, {":read": {"N": str(schedule.version)}}, stale)

    def delete(self, schedule: Schedule) -> None:
        """Delete the schedule as it was read.

        Raises:
            StaleSchedule: it changed since.
        """
        try:
            self._call(
                self._client.delete_item,
                TableName=self.table_name,
                Key=_key(PREFIX + schedule.id),
                ConditionExpression=UNCHANGED_SINCE_READ,
                ExpressionAttributeNames={"#version": "version"},
                ExpressionAttributeValues={":read": {"N": str(schedule.version)}},
            )
        except _ConditionFailed as exc:
            raise StaleSchedule(f"schedule {schedule.id!r} changed while this request ran; try again") from exc

    def due(self, shard: int, now: datetime, limit: int, start: dict[str, Any] | None) -> tuple[list[Schedule], Any]:
        """One page of the schedules of `shard` due at or before `now`, and where the next page starts.

        The index also holds timers (`timer#...`), which the filter drops after the read. It is
        eventually consistent: an entry a moment stale makes a tick whose write the version refuses.
        """
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": DUE_INDEX,
            "KeyConditionExpression": "dueShard = :shard AND dueAt <= :now",
            "FilterExpression": "begins_with(#id, :prefix)",
            "ExpressionAttributeNames": {"#id": "id"},
            "ExpressionAttributeValues": {
                ":shard": {"S": str(shard)},
                ":now": {"S": due_at(now)},
                ":prefix": {"S": PREFIX},
            },
            "Limit": limit,
        }
        if start is not None:
            kwargs["ExclusiveStartKey"] = start
        answer = self._call(self._client.query, **kwargs)
        return [s for s in map(_readable, answer.get("Items", [])) if s is not None], answer.get("LastEvaluatedKey")

    def page(self, limit: int, start: str | None) -> tuple[list[Schedule], str | None]:
        """One page of every schedule (a Scan: an operator's listing, never the ticker's path) and the id
        the next page starts after. A page may hold fewer than `limit`: timers are read and dropped."""
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "FilterExpression": "begins_with(#id, :prefix)",
            "ExpressionAttributeNames": {"#id": "id"},
            "ExpressionAttributeValues": {":prefix": {"S": PREFIX}},
            "Limit": limit,
        }
        if start is not None:
            kwargs["ExclusiveStartKey"] = _key(start)
        answer = self._call(self._client.scan, **kwargs)
        last = answer.get("LastEvaluatedKey")
        return [_schedule(item) for item in answer.get("Items", [])], last["id"]["S"] if last else None

    def declared(self) -> tuple[list[str], int]:
        """The ids of the code-declared schedules as last reconciled, and the version of that list."""
        answer = self._call(
            self._client.get_item, TableName=self.table_name, Key=_key(DECLARED_KEY), ConsistentRead=True
        )
        item = answer.get("Item")
        if item is None:
            return [], 0
        return json.loads(item["ids"]["S"]), int(item["version"]["N"])

    def set_declared(self, ids: list[str], version: int) -> None:
        """Replace the list of code-declared ids read at `version`.

        Raises:
            StaleSchedule: another container replaced it first.
        """
        condition, values = (NOT_STORED, {}) if version == 0 else (UNCHANGED_SINCE_READ, {":read": {"N": str(version)}})
        try:
            self._call(
                self._client.put_item,
                TableName=self.table_name,
                Item={
                    **_key(DECLARED_KEY),
                    "ids": {"S": json.dumps(sorted(ids))},
                    "version": {"N": str(version + 1)},
                },
                ConditionExpression=condition,
                **({"ExpressionAttributeNames": {"#version": "version"}} if values else {}),
                **({"ExpressionAttributeValues": values} if values else {}),
            )
        except _ConditionFailed as exc:
            raise StaleSchedule("the declared schedules were reconciled by another container") from exc

    def _put(
        self, schedule: Schedule, due: datetime | None, condition: str, values: dict[str, Any], refusal: TaskprocError
    ) -> Schedule:
        stored = Schedule(schedule.definition, schedule.state, schedule.version + 1)
        item: dict[str, Any] = {
            **_key(PREFIX + schedule.id),
            "version": {"N": str(stored.version)},
            "definition": {"S": json.dumps(schedule.definition.document(), ensure_ascii=False)},
            "state": {"S": schedule.state.model_dump_json(exclude_none=True)},
        }
        if due is not None and not schedule.definition.paused:
            item["dueShard"] = {"S": due_shard(schedule.id)}
            item["dueAt"] = {"S": due_at(due)}
        kwargs: dict[str, Any] = {"TableName": self.table_name, "Item": item, "ConditionExpression": condition}
        if values:
            kwargs["ExpressionAttributeNames"] = {"#version": "version"}
            kwargs["ExpressionAttributeValues"] = values
        try:
            self._call(self._client.put_item, **kwargs)
        except _ConditionFailed as exc:
            raise refusal from exc
        return stored

    @staticmethod
    def _call(operation: Callable[..., dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
        """Run one DynamoDB request; botocore has already retried what is retryable."""
        try:
            return operation(**kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                raise _ConditionFailed from exc
            raise StoreError(f"DynamoDB {operation.__name__} on the schedules table failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StoreError(f"DynamoDB {operation.__name__} on the schedules table failed: {exc}") from exc


class _ConditionFailed(Exception):
    """A conditional write found the item other than the condition wanted."""


def _key(item_id: str) -> dict[str, Any]:
    return {"id": {"S": item_id}}


def _readable(item: dict[str, Any]) -> Schedule | None:
    """The schedule an item holds, or None (logged) when it cannot be read: one bad item must not stop
    a tick for the others."""
    try:
        return _schedule(item)
    except (KeyError, ValueError):  # pydantic's ValidationError is a ValueError
        logger.exception("schedule item %r cannot be read", item.get("id", {}).get("S"))
        return None


def _schedule(item: dict[str, Any]) -> Schedule:
    return Schedule(
        ScheduleDefinition.model_validate_json(item["definition"]["S"], strict=False),
        ScheduleState.model_validate_json(item["state"]["S"]),
        int(item["version"]["N"]),
    )
