"""The listing index: a sparse, write-sharded GSI over the statuses an operator acts on.

Only FAILED, RETRYING and CANCELLED items carry the index's keys, so a task that
succeeds at its first attempt never writes to the index. The partition key is
`<STATUS>#<shard>`, the shard a hash of the id: failures arriving at 1,000 a
second spread over SHARDS partitions instead of heating one. The sort key is
`<updatedAt>#<id>`, unique, so a page is the newest entries of every shard merged
and a cursor is just the last sort key served.
"""

from __future__ import annotations

import zlib
from typing import Any

from chalicelib.models import Status

# A projection cannot change in place (the prod table is retained, and CloudFormation cannot
# update an index), so a new projection is a new index under a new name, with the same keys:
# DynamoDB fills it from the items that carry them. `by-status-v2` added `priority` and `tags`
# to what `by-status` projects; the migration is in docs/deploying.md.
INDEX_NAME = "by-status-v2"
# Still in the template, and written with every listed item, but never read: an update may create
# or delete one index, so the release that created INDEX_NAME could not also delete this one.
RETIRED_INDEX_NAME = "by-status"
SHARDS = 8
LISTED_STATUSES = (Status.FAILED, Status.RETRYING, Status.CANCELLED)
SHARD_ATTRIBUTE = "statusShard"
SORT_ATTRIBUTE = "statusSort"
# What the index projects besides its keys and the table's: a task's summary, and what a
# listing filters on (`type`, `tags`).
PROJECTED = ("status", "type", "attempts", "maxAttempts", "createdAt", "updatedAt", "lastError", "priority", "tags")


def shard_of(task_id: str) -> int:
    return zlib.crc32(task_id.encode("utf-8")) % SHARDS


def shard_key(status: Status, shard: int) -> str:
    return f"{status.value}#{shard}"


def sort_key(updated_at: str, task_id: str) -> str:
    return f"{updated_at}#{task_id}"


def index_attributes(status: Status, task_id: str, updated_at: str) -> dict[str, str]:
    """The index keys an item in `status` carries: none outside the listed statuses."""
    if status not in LISTED_STATUSES:
        return {}
    return {
        SHARD_ATTRIBUTE: shard_key(status, shard_of(task_id)),
        SORT_ATTRIBUTE: sort_key(updated_at, task_id),
    }


def index_update(status: Status, task_id: str, updated_at: str) -> tuple[list[str], list[str], dict[str, Any]]:
    """The SET and REMOVE clauses (and values) that keep an item's index keys true to `status`."""
    attributes = index_attributes(status, task_id, updated_at)
    if not attributes:
        return [], [f"#{SHARD_ATTRIBUTE}", f"#{SORT_ATTRIBUTE}"], {}
    sets = [f"#{name} = :{name}" for name in attributes]
    return sets, [], {f":{name}": value for name, value in attributes.items()}
