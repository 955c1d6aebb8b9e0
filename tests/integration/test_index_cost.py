"""What listing PENDING and PROCESSING tasks would cost: the index writes of a task's success path, measured.

The success path's writes are observed on moto (each write to the task table, and the status it
leaves the item in); what each would cost the index follows DynamoDB's rule for a GSI: an item
that gains the index's keys is one index write, one that loses them is one, and one whose keys
change (the sort key holds `updatedAt`, which every write moves) is two, a delete and a put, each
1 WRU for an entry under 1 KB, once per index that carries the keys.
"""

from __future__ import annotations

from typing import Any

import pytest
from chalice.test import Client

from chalicelib.models import Status
from chalicelib.tasks.index import LISTED_STATUSES, SHARD_ATTRIBUTE
from tests.conftest import FakeClock
from tests.integration.harness import SUCCEEDS, Harness

# The rule of issue 23: listing them may tax the success path by at most this much per task.
ALLOWED_WRU = 0.5


@pytest.fixture
def h(client: Client, runtime: Any, clock: FakeClock) -> Harness:
    return Harness(client, runtime, clock)


def index_wru(before: Status | None, after: Status, indexed: frozenset[Status]) -> int:
    """The index writes (WRU, entries under 1 KB) of one write that moves an item from `before` to `after`."""
    was, is_now = before in indexed, after in indexed
    if was and is_now:
        return 2  # the sort key (updatedAt) moved: a delete and a put
    return 1 if was != is_now else 0


def _success_path(h: Harness) -> list[tuple[Status | None, Status]]:
    """Each write to the task table while one task is published and succeeds, as (status before, after)."""
    table = h.rt.settings.TASKS_TABLE
    client = h.rt.store.client
    moves: list[tuple[Status | None, Status]] = []
    last: list[Status | None] = [None]

    writing: list[bool] = [False]

    def building(model: Any, params: dict[str, Any], **_: Any) -> None:
        writing[0] = model.name in ("PutItem", "UpdateItem") and params.get("TableName") == table

    def written(model: Any, **_: Any) -> None:
        if writing[0]:
            writing[0] = False
            item = client.get_item(TableName=table, Key={"id": {"S": "measured"}}, ConsistentRead=True)["Item"]
            status = Status(item["status"]["S"])
            moves.append((last[0], status))
            last[0] = status

    client.meta.events.register("before-parameter-build.dynamodb", building)
    client.meta.events.register("after-call.dynamodb", written)
    h.publish("measured", SUCCEEDS)
    h.deliver()
    client.meta.events.unregister("after-call.dynamodb", written)
    client.meta.events.unregister("before-parameter-build.dynamodb", building)
    return moves


def test_indexing_pending_and_processing_would_cost_more_than_half_a_wru_per_task_so_they_stay_unlisted(
    h: Harness,
) -> None:
    moves = _success_path(h)
    described = h.rt.store.client.describe_table(TableName=h.rt.settings.TASKS_TABLE)["Table"]
    indexes = [
        index
        for index in described["GlobalSecondaryIndexes"]
        if index["KeySchema"][0]["AttributeName"] == SHARD_ATTRIBUTE
    ]

    today = sum(index_wru(before, after, frozenset(LISTED_STATUSES)) for before, after in moves)
    wider = frozenset({*LISTED_STATUSES, Status.PENDING, Status.PROCESSING})
    listed = sum(index_wru(before, after, wider) for before, after in moves) * len(indexes)

    assert moves == [(None, Status.PENDING), (Status.PENDING, Status.PROCESSING), (Status.PROCESSING, Status.COMPLETED)]
    assert today == 0
    # put enters (1), acquire moves the keys (2), complete leaves (1): 4 per index, and the table
    # writes two (by-status-v2 and the retired by-status, docs/deploying.md)
    assert (len(indexes), listed) == (2, 8)
    assert listed > ALLOWED_WRU
