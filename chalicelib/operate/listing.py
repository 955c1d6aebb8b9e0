"""Reading the listing index: pages merged across shards, and counts with a bounded cost.

A page queries every shard of the status for its newest entries after the cursor
(in parallel), merges them by sort key and keeps the first `limit`. The sort key
is unique, so "after the cursor" is exact: a task that did not change between
two pages is served once, never repeated or skipped.

A filter (a type, tags) is a FilterExpression: DynamoDB reads, and bills, every entry
the key condition reaches, matching or not. So a filtered page reads at most
FILTERED_READ_BUDGET entries per shard; a shard that spends it stops at the last
entry it read, and the page serves only what lies above the highest such stop, where
every shard has been read. Its cursor is that stop: a filter that matches few tasks
answers a short (even empty) page and a cursor to go on, at a bounded cost, instead of
reading the whole status in one request.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import StoreError
from chalicelib.models import Status
from chalicelib.operate.views import TaskSummary
from chalicelib.tasks.index import INDEX_NAME, SHARD_ATTRIBUTE, SHARDS, SORT_ATTRIBUTE, shard_key
from chalicelib.tasks.record import priority_of_item
from chalicelib.tasks.table import deserialize, serialize

# Counting reads every index entry it counts; past this many per status it stops and
# says "at least", so one `GET /stats` costs a bounded number of read units.
COUNT_CAP = 1_000
# The most index entries a filtered page reads in one shard: 8 x 125 = 1,000 a page, about
# 400 KB of summaries (50 read units) when entries are of a few hundred bytes.
FILTERED_READ_BUDGET = 125


@dataclass(frozen=True)
class Filters:
    """What narrows a listing besides its status; part of a cursor's scope."""

    task_type: str | None = None
    updated_since: str | None = None
    tags: tuple[str, ...] = ()  # every one of them

    @property
    def narrows(self) -> bool:
        """Whether a FilterExpression drops entries the key condition reads, so that reads can outrun matches."""
        return self.task_type is not None or bool(self.tags)

    def scope(self) -> str:
        # Without tags, the scope of the listings that had none, so that their cursors stay valid.
        tags = f"|tags={','.join(sorted(self.tags))}" if self.tags else ""
        return f"type={self.task_type or ''}|since={self.updated_since or ''}{tags}"


@dataclass(frozen=True)
class Page:
    entries: list[dict[str, Any]]
    more: bool
    resume_after: str | None  # the position the next page starts below: the last entry served, or a budget's stop


@dataclass(frozen=True)
class _ShardRead:
    entries: list[dict[str, Any]]
    more: bool
    stopped_at: str | None = None  # the last sort key read, when the read budget ran out before the shard did


def summary(entry: dict[str, Any]) -> TaskSummary:
    return TaskSummary(
        id=entry["id"],
        type=entry.get("type"),
        status=Status(entry["status"]),
        attempts=int(entry.get("attempts", 0)),
        maxAttempts=int(entry.get("maxAttempts", 1)),
        createdAt=entry["createdAt"],
        updatedAt=entry["updatedAt"],
        lastError=entry.get("lastError"),
        priority=priority_of_item(entry),
        tags=list(entry.get("tags", [])),
    )


class TaskIndex:
    """Queries the sparse listing index (INDEX_NAME) of the task table."""

    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def page(self, status: Status, limit: int, after: str | None = None, filters: Filters = Filters()) -> Page:
        """The `limit` most recently updated entries of `status` older than position `after`; fewer when a
        filtered read spent its budget (`more` then says so, and `resume_after` is where it stopped)."""
        with ThreadPoolExecutor(max_workers=SHARDS) as pool:
            reads = list(pool.map(lambda shard: self._shard_page(status, shard, limit, after, filters), range(SHARDS)))
        # Below the highest stop, a shard that stopped has entries not yet read: serve only above it.
        floor = max((read.stopped_at for read in reads if read.stopped_at is not None), default=None)
        merged = sorted(
            (e for read in reads for e in read.entries if floor is None or e[SORT_ATTRIBUTE] >= floor),
            key=lambda e: e[SORT_ATTRIBUTE],
            reverse=True,
        )
        if len(merged) > limit:
            return Page(merged[:limit], True, merged[limit - 1][SORT_ATTRIBUTE])
        more = floor is not None or any(read.more for read in reads)
        last = merged[-1][SORT_ATTRIBUTE] if merged else None
        return Page(merged, more, floor if floor is not None else last)

    def count(self, status: Status, cap: int = COUNT_CAP) -> tuple[int, bool]:
        """How many tasks are in `status`, and whether that is exact (False: at least that many)."""
        with ThreadPoolExecutor(max_workers=SHARDS) as pool:
            per_shard = list(pool.map(lambda shard: self._shard_count(status, shard, cap), range(SHARDS)))
        total = sum(n for n, _ in per_shard)
        exact = all(done for _, done in per_shard) and total <= cap
        return min(total, cap), exact

    def _shard_page(self, status: Status, shard: int, limit: int, after: str | None, filters: Filters) -> _ShardRead:
        entries: list[dict[str, Any]] = []
        start: dict[str, Any] | None = None
        read = 0
        while True:
            # A first request as large as the page; then, under a filter, what is left of the budget.
            size = limit + 1
            if filters.narrows:
                size = min(size, FILTERED_READ_BUDGET) if read == 0 else FILTERED_READ_BUDGET - read
            response = self._query(status, shard, after, filters, limit=size, start=start)
            items = response.get("Items", [])
            read += int(response.get("ScannedCount", len(items)))
            # BETWEEN (used with a since filter) includes the cursor's own entry: drop it.
            entries += [e for e in map(deserialize, items) if e[SORT_ATTRIBUTE] != after]
            start = response.get("LastEvaluatedKey")
            if start is None or len(entries) > limit:
                return _ShardRead(entries, start is not None)
            if filters.narrows and read >= FILTERED_READ_BUDGET:
                stop = deserialize(start)
                assert stop is not None
                return _ShardRead(entries, True, stop[SORT_ATTRIBUTE])

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
        kept: list[str] = []
        if filters.task_type is not None:
            kept.append("#type = :type")
            names["#type"] = "type"
            values[":type"] = filters.task_type
        for n, tag in enumerate(filters.tags):
            kept.append(f"contains(#tags, :tag{n})")
            names["#tags"] = "tags"
            values[f":tag{n}"] = tag
        if kept:
            kwargs["FilterExpression"] = " AND ".join(kept)
        kwargs["ExpressionAttributeNames"] = names
        kwargs["ExpressionAttributeValues"] = serialize(values)
        if limit is not None:
            kwargs["Limit"] = limit
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
