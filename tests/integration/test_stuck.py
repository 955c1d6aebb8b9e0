"""`GET /stuck` against moto: PENDING tasks past the dispatch bound and PROCESSING ones past their lease."""

from __future__ import annotations

import json
from typing import Any

import pytest
from chalice.test import Client

from chalicelib.models import Task
from chalicelib.operate import stuck
from chalicelib.operate.stuck import dispatch_bound_seconds
from tests.conftest import FakeClock
from tests.integration.harness import SUCCEEDS, Harness


@pytest.fixture
def h(client: Client, runtime: Any, clock: FakeClock) -> Harness:
    return Harness(client, runtime, clock)


def get(h: Harness, path: str) -> tuple[int, Any]:
    response = h.client.http.get(path)
    return response.status_code, json.loads(response.body)


def _abandoned(h: Harness, task_id: str) -> None:
    """A task whose consumer acquired it and died: PROCESSING under a lease nobody renews."""
    h.publish(task_id, SUCCEEDS)
    h.rt.store.acquire(Task(id=task_id, payload=SUCCEEDS), "dead-consumer", "m-1", 3, h.rt.settings.LEASE_SECONDS)


def test_stuck_lists_pending_past_dispatch_and_processing_past_its_lease_and_nothing_else(h: Harness) -> None:
    h.publish("done", SUCCEEDS)
    h.deliver()
    h.publish("waited-long", SUCCEEDS)
    _abandoned(h, "abandoned")
    h.clock.advance(dispatch_bound_seconds(h.rt) + 1)  # past both the dispatch bound and the 60 s lease
    h.publish("just-published", SUCCEEDS)
    _abandoned(h, "running-now")

    status, page = get(h, "/stuck")

    assert status == 200
    found = {task["id"]: (task["status"], task["reason"]) for task in page["tasks"]}
    assert found == {"waited-long": ("PENDING", "pending past dispatch"), "abandoned": ("PROCESSING", "lease expired")}
    abandoned = next(task for task in page["tasks"] if task["id"] == "abandoned")
    lease_ms = int(h.rt.settings.LEASE_SECONDS * 1000)
    assert _ms(abandoned["since"]) == _ms(h.task("abandoned")["updatedAt"]) + lease_ms
    assert page["scanned"] == 5 and page["next"] is None  # the table holds the five tasks


def test_a_pending_task_is_listed_once_past_its_dispatch_bound_with_the_moment_it_became_stuck(h: Harness) -> None:
    h.publish("waiting", SUCCEEDS)
    created = h.task("waiting")["createdAt"]
    h.clock.advance(dispatch_bound_seconds(h.rt) - 1)
    assert get(h, "/stuck")[1]["tasks"] == []

    h.clock.advance(2)
    [task] = get(h, "/stuck")[1]["tasks"]

    assert (task["id"], task["status"], task["type"], task["reason"]) == (
        "waiting",
        "PENDING",
        "simulate",
        "pending past dispatch",
    )
    assert task["createdAt"] == created
    bound_ms = dispatch_bound_seconds(h.rt) * 1000
    assert _ms(task["since"]) == _ms(created) + bound_ms


def test_stuck_pages_walk_the_whole_table_once_with_a_signed_cursor(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [f"lost-{n}" for n in range(5)]
    for task_id in ids:
        h.publish(task_id, SUCCEEDS)
    h.clock.advance(dispatch_bound_seconds(h.rt) + 1)
    monkeypatch.setattr(stuck, "SCAN_LIMIT", 2)

    seen: list[str] = []
    scanned, path, pages = 0, "/stuck", 0
    while True:
        status, page = get(h, path)
        assert status == 200
        assert page["scanned"] <= 2
        seen += [task["id"] for task in page["tasks"]]
        scanned += page["scanned"]
        pages += 1
        if page["next"] is None:
            break
        path = f"/stuck?cursor={page['next']}"

    assert sorted(seen) == ids
    assert scanned >= len(ids) and pages >= 3
    status, answer = get(h, "/stuck?cursor=forged.cursor")
    assert status == 400 and answer["error"]["details"][0]["field"] == "cursor"


@pytest.mark.parametrize(("query", "field"), [("limit=5", "limit"), ("cursor=a&cursor=b", "cursor")])
def test_a_bad_stuck_query_is_a_400_naming_the_parameter(h: Harness, query: str, field: str) -> None:
    status, answer = get(h, f"/stuck?{query}")
    assert status == 400
    assert answer["error"]["details"][0]["field"] == field


def _ms(iso: str) -> int:
    from chalicelib.tasks.record import ms_from_iso

    return ms_from_iso(iso)
