"""The task table's plumbing: one DynamoDB request at a time, conditions and their refusals.

The lease lifecycle (store.py) and the operator's writes (operator_store.py) share
it. A refused condition comes back as `ConditionFailed` with the item as the
refused write saw it (ReturnValuesOnConditionCheckFailure), so a caller learns
why without a second read; every other failure is a `StoreError`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import StaleRecord, StoreError
from chalicelib.models import Status
from chalicelib.tasks.index import index_update
from chalicelib.tasks.record import TaskRecord, iso_from_ms, record_from_item

TASK_IS_NEW = "attribute_not_exists(#id)"
UNCHANGED_SINCE_READ = "#version = :version"
# The health check reads this key; no task needs to exist under it.
HEALTH_PROBE_KEY = "taskproc:health-probe"
# Errors are kept in the history of every attempt; capped, a full history of
# MAX_ATTEMPTS entries fits in the item beside a maximal payload and result.
MAX_ERROR_BYTES = 1_000

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


class ConditionFailed(Exception):
    """A conditional write was refused; `old` is the item as it saw it (None if there was none)."""

    def __init__(self, old: dict[str, Any] | None) -> None:
        super().__init__("condition failed")
        self.old = old


def capped_error(error: str) -> str:
    """`error`, cut to at most MAX_ERROR_BYTES of UTF-8 (an ellipsis marks a cut)."""
    encoded = error.encode("utf-8", errors="replace")
    if len(encoded) <= MAX_ERROR_BYTES:
        return error
    return encoded[: MAX_ERROR_BYTES - 3].decode("utf-8", errors="ignore") + "…"


def names(*expressions: str) -> dict[str, str]:
    """ExpressionAttributeNames for every #name the expressions use."""
    return {f"#{name}": name for expression in expressions for name in re.findall(r"#(\w+)", expression)}


def deserialize(item: dict[str, Any] | None) -> dict[str, Any] | None:
    if not item:
        return None
    return {key: _deserializer.deserialize(value) for key, value in item.items()}


def serialize(item: dict[str, Any]) -> dict[str, Any]:
    return {key: _serializer.serialize(value) for key, value in item.items()}


def _landed(old: dict[str, Any] | None, version: int, entries: list[dict[str, Any]] | None) -> bool:
    """Whether `old` is the item as a version-checked write from `version` left it: one version on,
    its history ending with the entries that write appended (each carries its own time)."""
    if not old or not entries or int(old.get("version", 0)) != version + 1:
        return False
    history = old.get("history") or []
    return len(history) >= len(entries) and history[-len(entries) :] == entries


class TaskTable:
    """Reads and conditionally writes task items in one DynamoDB table."""

    def __init__(
        self,
        client: Any,
        table_name: str,
        *,
        retention_days: int = 30,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._table = table_name
        self._retention_ms = retention_days * 86_400_000
        self._clock = clock

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    @property
    def client(self) -> Any:
        """The DynamoDB client, for readers of the table's index."""
        return self._client

    def get(self, task_id: str) -> TaskRecord | None:
        """The task as it stands now (a strongly consistent read), or None."""
        response = self._call(self._client.get_item, TableName=self._table, Key=self._key(task_id), ConsistentRead=True)
        item = deserialize(response.get("Item"))
        return record_from_item(item) if item else None

    def get_item(self, task_id: str) -> dict[str, Any] | None:
        """The raw item (strongly consistent), for writes that must put it back unchanged."""
        response = self._call(self._client.get_item, TableName=self._table, Key=self._key(task_id), ConsistentRead=True)
        return deserialize(response.get("Item"))

    def ping(self) -> None:
        """One cheap read that proves the table answers.

        Raises:
            StoreError: it does not.
        """
        self._call(self._client.get_item, TableName=self._table, Key=self._key(HEALTH_PROBE_KEY))

    def _put_new(self, item: dict[str, Any]) -> dict[str, Any] | None:
        """Put `item` unless its id exists; returns None when stored, else the existing item."""
        try:
            self._call(
                self._client.put_item,
                TableName=self._table,
                Item=serialize(item),
                ConditionExpression=TASK_IS_NEW,
                ExpressionAttributeNames=names(TASK_IS_NEW),
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ConditionFailed as refused:
            if refused.old is None:
                raise StoreError(f"task {item['id']!r} exists but the table returned no item") from None
            return refused.old
        return None

    def _expires_at(self, now_ms: int) -> int:
        """The TTL attribute's value: epoch seconds, RETENTION_DAYS after the task finished."""
        return (now_ms + self._retention_ms) // 1000

    def _end_if_unchanged(
        self,
        record: TaskRecord,
        status: Status,
        entries: list[dict[str, Any]],
        action: str,
        error: str | None = None,
    ) -> TaskRecord:
        """Move a task, as `record` read it, to the terminal `status`, appending `entries` to its history.

        Any lease, backoff and cancel request go; `error`, when given, becomes `lastError`.

        Raises:
            StaleRecord: the task changed since `record` was read.
        """
        now = self.now_ms()
        now_iso = iso_from_ms(now)
        index_sets, _, index_values = index_update(status, record.id, now_iso)
        sets = [
            "#status = :status",
            "#finishedAt = :now_iso",
            "#updatedAt = :now_iso",
            "#expiresAt = :expiresAt",
            "#history = list_append(#history, :entries)",
            *index_sets,
        ]
        values: dict[str, Any] = {
            ":status": status.value,
            ":now_iso": now_iso,
            ":expiresAt": self._expires_at(now),
            ":entries": entries,
            ":one": 1,
            **index_values,
        }
        if error is not None:
            sets.append("#lastError = :error")
            values[":error"] = capped_error(error)
        update = (
            f"SET {', '.join(sets)} ADD #version :one"
            " REMOVE #leaseOwner, #leaseExpiresAt, #attemptStartedAt, #retryAt, #cancelRequested"
        )
        return self._update_if_unchanged(record, update, values, action)

    def _update_if_unchanged(self, record: TaskRecord, update: str, values: dict[str, Any], action: str) -> TaskRecord:
        """Apply `update` only if the task is still as `record` read it (its version is unchanged).

        Returns the task as written.

        Raises:
            StaleRecord: it changed in between.
        """
        try:
            response = self._update(
                record.id, update, UNCHANGED_SINCE_READ, {**values, ":version": record.version}, "ALL_NEW"
            )
        except ConditionFailed as refused:
            if _landed(refused.old, record.version, values.get(":entries")):
                # botocore retried a write whose answer was lost, and met the write itself.
                return record_from_item(refused.old) if refused.old else record
            raise StaleRecord(f"task {record.id!r} changed while it was being {action}") from refused
        item = deserialize(response.get("Attributes"))
        return record_from_item(item) if item else record

    def _update(
        self, task_id: str, update: str, condition: str, values: dict[str, Any], return_values: str = "NONE"
    ) -> dict[str, Any]:
        return self._call(
            self._client.update_item,
            TableName=self._table,
            Key=self._key(task_id),
            UpdateExpression=update,
            ConditionExpression=condition,
            ExpressionAttributeNames=names(update, condition),
            ExpressionAttributeValues=self._values(values),
            ReturnValues=return_values,
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )

    @staticmethod
    def _key(task_id: str) -> dict[str, Any]:
        return {"id": {"S": task_id}}

    @staticmethod
    def _values(values: dict[str, Any]) -> dict[str, Any]:
        return {key: _serializer.serialize(value) for key, value in values.items()}

    @staticmethod
    def _call(operation: Callable[..., dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
        """Run one DynamoDB request; botocore has already retried what is retryable."""
        try:
            return operation(**kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                raise ConditionFailed(deserialize(exc.response.get("Item"))) from exc
            raise StoreError(f"DynamoDB {operation.__name__} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StoreError(f"DynamoDB {operation.__name__} failed: {exc}") from exc
