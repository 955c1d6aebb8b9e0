"""The schedules' counters summed for `GET /stats`: a Scan of the schedules table, bounded in pages.

Each schedule item keeps its own counters (`fired`, `skipped`, `caughtUp`, `missed`, `refused`:
chalicelib/schedules/record.py's `Counts`), written with each firing in the same conditional write
that moves the schedule's cursor, so a firing is counted once or not at all. Summing them gives
exact figures for the schedules that exist, each since it was created; a deleted schedule's
firings leave the sums with it. CloudWatch metrics would outlive a deletion, but they are
approximate sums over a window and the engine emits none; the counters are the same figures
each schedule's view shows.

No index holds every schedule (the sparse due index leaves out paused ones), so the sums come
from a Scan, which also reads the timers that share the table (`timer#<task id>`, one per task
that runs more than 900 s ahead) and drops them. It reads at most SCAN_PAGES pages of at most
SCAN_PAGE_ITEMS items (and 1 MB) each: at most 2 MB, 256 read units eventually consistent; a
hundred schedules of about 2 KB read about 25. Past that budget the sums are those of the
schedules read, and `complete` is False: at least those figures. Two pages one after the other,
side by side with the index counts, keep `GET /stats`' chain of calls as long as it was
(tests/unit/test_timeouts.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import StoreError
from chalicelib.schedules.record import Counts
from chalicelib.schedules.store import PREFIX

SCAN_PAGES = 2
SCAN_PAGE_ITEMS = 1_000
COUNTERS = tuple(Counts.model_fields)


@dataclass(frozen=True)
class ScheduleCounts:
    """The counters summed over the schedules read; `complete` when the Scan read the whole table."""

    sums: dict[str, int]
    schedules: int
    complete: bool


def sum_counters(client: Any, table_name: str) -> ScheduleCounts:
    """Every schedule's counters summed, reading at most SCAN_PAGES pages of the schedules table.

    Raises:
        StoreError: the table did not answer.
    """
    sums = dict.fromkeys(COUNTERS, 0)
    schedules, more = 0, False
    pages = client.get_paginator("scan").paginate(
        TableName=table_name,
        # `state` is one of DynamoDB's reserved words.
        ProjectionExpression="#state",
        FilterExpression="begins_with(id, :prefix)",
        ExpressionAttributeNames={"#state": "state"},
        ExpressionAttributeValues={":prefix": {"S": PREFIX}},
        PaginationConfig={"PageSize": SCAN_PAGE_ITEMS},
    )
    try:
        for number, page in enumerate(pages, start=1):
            for item in page.get("Items", []):
                counts = _counts(item)
                schedules += 1
                for name in COUNTERS:
                    sums[name] += getattr(counts, name)
            more = "LastEvaluatedKey" in page
            if number == SCAN_PAGES:
                break
    except (ClientError, BotoCoreError) as exc:
        raise StoreError(f"DynamoDB Scan on the schedules table failed: {exc}") from exc
    return ScheduleCounts(sums=sums, schedules=schedules, complete=not more)


def _counts(item: dict[str, Any]) -> Counts:
    """A schedule item's counters; an item whose state cannot be read counts nothing rather than failing /stats."""
    try:
        return Counts.model_validate(json.loads(item["state"]["S"]).get("counts", {}))
    except (KeyError, TypeError, ValueError, AttributeError):  # pydantic's ValidationError is a ValueError
        return Counts()
