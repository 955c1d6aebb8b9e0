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

INDEX_NAME = "by-status"
SHARDS = 8
LISTED_STATUSES = (Status.FAILED, Status.RETRYING, Status.CANCELLED)
SHARD_ATTRIBUTE = "statusShard"
SORT_ATTRIBUTE = "statusSort"
# What the index projects besides its keys and the table's: a task's summary.
# Changing it changes the index, which CloudFormation cannot do in place on a retained table: a
# field added to summaries since (priority) is read from the task itself, not listed.
PROJECTED = ("status", "type", "attempts", "maxAttempts", "createdAt", "updatedAt", "lastError")


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
