"""`GET /stats`' schedule figures against moto: every schedule's counters summed from a Scan bounded in pages."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from chalice.test import Client

from chalicelib.operate import schedule_stats
from chalicelib.schedules.definition import ScheduleDefinition
from chalicelib.schedules.record import Counts, new_schedule
from chalicelib.schedules.store import DECLARED_KEY

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
ZEROS = {"fired": 0, "skipped": 0, "caughtUp": 0, "missed": 0, "refused": 0}


def stored(rt: Any, schedule_id: str, paused: bool = False, **counts: int) -> None:
    """A schedule in the schedules table as the schedules' store writes it, with these counters."""
    definition = ScheduleDefinition.model_validate(
        {"id": schedule_id, "type": "simulate", "payload": {}, "rate": "15 minutes", "paused": paused}
    )
    schedule = new_schedule(definition, "api", NOW, "anonymous").changed(counts=Counts(**counts))
    rt.schedules.create(schedule, None if paused else NOW)


def stats(client: Client) -> dict[str, Any]:
    response = client.http.get("/stats")
    assert response.status_code == 200, response.body
    return dict(json.loads(response.body))


@pytest.fixture
def scans(runtime: Any) -> Iterator[list[dict[str, Any]]]:
    """Every Scan request the runtime's DynamoDB client sends, as its parameters."""
    seen: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        seen.append(params)

    events = runtime.dynamodb.meta.events
    events.register("provide-client-params.dynamodb.Scan", record)
    yield seen
    events.unregister("provide-client-params.dynamodb.Scan", record)


def test_stats_sum_every_schedules_counters_paused_ones_included_and_say_they_are_exact(
    client: Client, runtime: Any
) -> None:
    stored(runtime, "hourly", fired=10, caughtUp=2, skipped=1)
    stored(runtime, "nightly", fired=3, missed=4, refused=1)
    stored(runtime, "held", paused=True, fired=5, skipped=2)

    body = stats(client)

    assert body["schedules"] == {"fired": 18, "skipped": 3, "caughtUp": 2, "missed": 4, "refused": 1}
    for name in ZEROS:
        source = body["sources"][f"schedules.{name}"]
        assert source["exact"] is True
        assert "summed over 3 schedules" in source["source"] and "Scan" in source["source"]


def test_timers_and_the_declared_list_beside_the_schedules_are_not_counted(client: Client, runtime: Any) -> None:
    stored(runtime, "hourly", fired=7)
    table = runtime.settings.SCHEDULES_TABLE
    runtime.dynamodb.put_item(TableName=table, Item={"id": {"S": "timer#t-1"}, "dueShard": {"S": "3"}})
    runtime.dynamodb.put_item(TableName=table, Item={"id": {"S": DECLARED_KEY}, "ids": {"S": "[]"}})

    body = stats(client)

    assert body["schedules"] == ZEROS | {"fired": 7}
    assert "summed over 1 schedules" in body["sources"]["schedules.fired"]["source"]


def test_no_schedules_sum_to_zeros_that_are_exact(client: Client) -> None:
    body = stats(client)

    assert body["schedules"] == ZEROS
    assert body["sources"]["schedules.refused"]["exact"] is True


def test_the_scan_stops_after_its_pages_and_then_says_at_least(
    client: Client, runtime: Any, scans: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(schedule_stats, "SCAN_PAGE_ITEMS", 2)
    for n in range(7):
        stored(runtime, f"s-{n}", fired=1)

    body = stats(client)

    assert len(scans) == schedule_stats.SCAN_PAGES == 2
    assert all(scan["Limit"] == 2 for scan in scans)
    assert body["schedules"]["fired"] == 4  # two pages of two
    source = body["sources"]["schedules.fired"]
    assert source["exact"] is False
    assert "at least: the Scan stopped after 2 pages" in source["source"]


def test_a_table_that_fits_the_budget_is_read_in_one_scan_of_the_state_alone(
    client: Client, runtime: Any, scans: list[dict[str, Any]]
) -> None:
    stored(runtime, "hourly", fired=1)

    stats(client)

    [scan] = scans
    assert scan["TableName"] == runtime.settings.SCHEDULES_TABLE
    assert scan["ProjectionExpression"] == "#state" and scan["ExpressionAttributeNames"] == {"#state": "state"}
    assert scan["Limit"] == schedule_stats.SCAN_PAGE_ITEMS


def test_a_schedule_item_whose_state_cannot_be_read_counts_nothing_and_stats_still_answer(
    client: Client, runtime: Any
) -> None:
    stored(runtime, "hourly", fired=2)
    table = runtime.settings.SCHEDULES_TABLE
    runtime.dynamodb.put_item(TableName=table, Item={"id": {"S": "schedule#broken"}, "state": {"S": "{not json"}})
    runtime.dynamodb.put_item(TableName=table, Item={"id": {"S": "schedule#odd"}, "state": {"S": '{"counts": 3}'}})

    body = stats(client)

    assert body["schedules"] == ZEROS | {"fired": 2}
    assert "summed over 3 schedules" in body["sources"]["schedules.fired"]["source"]


def test_a_schedules_table_that_does_not_answer_is_a_503_said_in_words(
    client: Client, runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        runtime, "settings", runtime.settings.model_copy(update={"SCHEDULES_TABLE": "taskproc-test-gone"})
    )

    response = client.http.get("/stats")

    assert response.status_code == 503
    assert "the schedules table" in json.loads(response.body)["error"]["message"]
