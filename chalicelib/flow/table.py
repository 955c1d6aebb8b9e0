"""The flow table's plumbing: one item per cap, rate, pause or unique key, one request at a time.

Like the task table (chalicelib/tasks/table.py), a refused condition comes back as `ConditionFailed`
with the item as the refused write saw it, so a policy learns why (and when to look again)
without a second read; every other failure is a `StoreError`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from chalicelib.tasks.table import ConditionFailed, TaskTable, deserialize, names, serialize

__all__ = ["ConditionFailed", "FlowTable"]


class FlowTable:
    """Reads and conditionally writes flow items, keyed by `key` (e.g. "concurrency#<type>")."""

    def __init__(self, client: Any, table_name: str, clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self.name = table_name
        self._clock = clock

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    def get(self, key: str, consistent: bool = True) -> dict[str, Any] | None:
        """The item under `key`, or None."""
        response = TaskTable._call(
            self._client.get_item, TableName=self.name, Key=self._key(key), ConsistentRead=consistent
        )
        return deserialize(response.get("Item"))

    def update(
        self,
        key: str,
        update: str,
        values: dict[str, Any] | None = None,
        condition: str | None = None,
        return_values: str = "NONE",
        names_extra: dict[str, str] | None = None,
    ) -> dict[str, Any] | None:
        """One UpdateItem; returns the attributes `return_values` asks for (None for "NONE").

        `names_extra` gives placeholders whose names are data, such as a type's name used as a
        map key (`#types.#type`); the other #names are the attribute names they spell.

        Raises:
            ConditionFailed: `condition` was false; `.old` is the item as the write saw it.
            StoreError: DynamoDB failed after botocore's retries.
        """
        expressions = [update] + ([condition] if condition else [])
        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "Key": self._key(key),
            "UpdateExpression": update,
            "ReturnValues": return_values,
        }
        # `names_extra` maps placeholders to names that are data (a type's name as a map key),
        # which `names` cannot derive from the expression.
        attribute_names = {**names(*expressions), **(names_extra or {})}
        if attribute_names:
            kwargs["ExpressionAttributeNames"] = attribute_names
        if values:
            kwargs["ExpressionAttributeValues"] = serialize(values)
        if condition:
            kwargs["ConditionExpression"] = condition
            kwargs["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        response = TaskTable._call(self._client.update_item, **kwargs)
        return deserialize(response.get("Attributes"))

    @staticmethod
    def _key(key: str) -> dict[str, Any]:
        return {"key": {"S": key}}
