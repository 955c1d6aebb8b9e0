"""Reading the listing index: pages merged across shards, and counts with a bounded cost.

A page queries every shard of the status for its newest entries after the cursor
(in parallel), merges them by sort key and keeps the first `limit`. The sort key
is unique, so "after the cursor" is exact: a task that did not change between
two pages is served once, never repeated or skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import StoreError
from chalicelib.index import INDEX_NAME, SHARD_ATTRIBUTE, SHARDS, SORT_ATTRIBUTE, shard_key
from chalicelib.models import Status, TaskSummary
from chalicelib.record import priority_of_item
from chalicelib.table import deserialize, serialize

# Counting reads every index entry it counts; past this many per status it stops and
# says "at least", so one `GET /stats` costs a bounded number of read units.
COUNT_CAP = 1_000


@dataclass(frozen=True)
class Filters:
    """What narrows a listing besides its status; part of a cursor's scope."""

    task_type: str | None = None
    updated_since: str | None = None

    def scope(self) -> str:
        return f"type={self.task_type or ''}|since={self.updated_since or ''}"


@dataclass(frozen=True)
class Page:
    entries: list[dict[str, Any]]
    more: bool

    @property
    def last_position(self) -> str | None:
        return self.entries[-1][SORT_ATTRIBUTE] if self.entries else None


def summary(entry: dict[str, Any]) -> TaskSummary:
    return TaskSummary(
        id=entry["id"],
        type=entry.get("type"),
        priority=priority_of_item(entry),
        status=Status(entry["status"]),
        attempts=int(entry.get("attempts", 0)),
        maxAttempts=int(entry.get("maxAttempts", 1)),
        createdAt=entry["createdAt"],
        updatedAt=entry["updatedAt"],
        lastError=entry.get("lastError"),
    )


class TaskIndex:
    """Queries the sparse `by-status` index of the task table."""

    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def page(self, status: Status, limit: int, after: str | None = None, filters: Filters = Filters()) -> Page:
        """The `limit` most recently updated entries of `status` older than position `after`."""
        with ThreadPoolExecutor(max_workers=SHARDS) as pool:
            per_shard = list(
                pool.map(lambda shard: self._shard_page(status, shard, limit, after, filters), range(SHARDS))
            )
        merged = sorted((e for entries, _ in per_shard for e in entries), key=lambda e: e[SORT_ATTRIBUTE], reverse=True)
        more = len(merged) > limit or any(has_more for _, has_more in per_shard)
        return Page(merged[:limit], more)

    def count(self, status: Status, cap: int = COUNT_CAP) -> tuple[int, bool]:
        """How many tasks are in `status`, and whether that is exact (False: at least that many)."""
        with ThreadPoolExecutor(max_workers=SHARDS) as pool:
            per_shard = list(pool.map(lambda shard: self._shard_count(status, shard, cap), range(SHARDS)))
        total = sum(n for n, _ in per_shard)
        exact = all(done for _, done in per_shard) and total <= cap
        return min(total, cap), exact

    def _shard_page(
        self, status: Status, shard: int, limit: int, after: str | None, filters: Filters
    ) -> tuple[list[dict[str, Any]], bool]:
        entries: list[dict[str, Any]] = []
        start: dict[str, Any] | None = None
        while True:
            response = self._query(status, shard, after, filters, limit=limit, start=start)
            # BETWEEN (used with a since filter) includes the cursor's own entry: drop it.
            entries += [e for e in map(deserialize, response.get("Items", [])) if e[SORT_ATTRIBUTE] != after]
            start = response.get("LastEvaluatedKey")
            if start is None or len(entries) > limit:
                return entries, start is not None

    def _shard_count(self, status: Status, shard: int, cap: int) -> tuple[int, bool]:
        counted, start = 0, None
        while counted <= cap:
            response = self._query(status, shard, None, Filters(), select="COUNT", start=start)
            counted += int(response.get("Count", 0))
            start = response.get("LastEvaluatedKey")
            if start is None:
                return counted, True
        return counted, False

    def _query(
        self,
        status: Status,
        shard: int,
        after: str | None,
        filters: Filters,
        *,
        limit: int | None = None,
        select: str | None = None,
        start: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        condition = "#shard = :shard"
        values: dict[str, Any] = {":shard": shard_key(status, shard)}
        names = {"#shard": SHARD_ATTRIBUTE}
        if after is not None or filters.updated_since is not None:
            names["#sort"] = SORT_ATTRIBUTE
        if after is not None and filters.updated_since is not None:
            condition += " AND #sort BETWEEN :since AND :after"
            values.update({":since": filters.updated_since, ":after": after})
        elif after is not None:
            condition += " AND #sort < :after"
            values[":after"] = after
        elif filters.updated_since is not None:
            condition += " AND #sort >= :since"
            values[":since"] = filters.updated_since
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": INDEX_NAME,
            "KeyConditionExpression": condition,
            "ScanIndexForward": False,
        }
        if filters.task_type is not None:
            kwargs["FilterExpression"] = "#type = :type"
            names["#type"] = "type"
            values[":type"] = filters.task_type
        kwargs["ExpressionAttributeNames"] = names
        kwargs["ExpressionAttributeValues"] = serialize(values)
        if limit is not None:
            kwargs["Limit"] = limit + 1
        if select is not None:
            kwargs["Select"] = select
        if start is not None:
            kwargs["ExclusiveStartKey"] = start
        return _call(self._client.query, **kwargs)


def _call(operation: Callable[..., dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
    try:
        return operation(**kwargs)
    except (ClientError, BotoCoreError) as exc:
        raise StoreError(f"DynamoDB query of the listing index failed: {exc}") from exc
