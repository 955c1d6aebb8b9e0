"""The fake API of tests/cli/fake_api.py with the schedules' routes the console uses, in memory.

It answers as the schedules' routes do: `GET /schedules?limit=&cursor=` (summaries: the timing,
`nextFiring`, `lastFiring`'s time, `counts`), `GET /schedules/{id}` (the definition, `nextFirings`,
`lastFiring` with its task's status, `lastSkip`, `lastError`, `counts`), `POST /schedules/{id}/pause|resume`
(the schedule's view) and `/trigger` (201 with the new task's view, id `<id>@<now>.manual`), and
`/stats` with the schedules' counters summed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from tests.cli.fake_api import FakeApi, _error

COUNTERS = ("fired", "skipped", "caughtUp", "missed", "refused")


def schedule_view(
    schedule_id: str,
    task_type: str = "simulate",
    *,
    cron: str | None = "0 9 * * MON-FRI",
    rate: str | None = None,
    timezone: str = "Europe/Berlin",
    paused: bool = False,
    next_firings: list[str] | None = None,
    last_firing: dict[str, Any] | None = None,
    last_skip: dict[str, str] | None = None,
    counts: dict[str, int] | None = None,
    last_error: str | None = None,
    source: str = "api",
) -> dict[str, Any]:
    """A schedule as `GET /schedules/{id}` shows it; `last_error` is the refusal's message."""
    error = None
    if last_error is not None:
        error = {
            "at": "2026-12-01T07:00:00Z",
            "message": last_error,
            "details": [{"field": "payload.data", "message": "Field required"}],
        }
    return {
        "id": schedule_id,
        "type": task_type,
        "payload": {"simulation": {"failureChance": 0}},
        "cron": None if rate else cron,
        "rate": rate,
        "timezone": timezone,
        "overlap": "skip",
        "catchupWindowSeconds": 3600,
        "paused": paused,
        "source": source,
        "nextFirings": next_firings if next_firings is not None else [] if paused else _weekday_nines(),
        "lastFiring": last_firing,
        "buffered": None,
        "lastSkip": last_skip,
        "lastError": error,
        "counts": {name: 0 for name in COUNTERS} | (counts or {}),
        "history": [{"kind": "created", "at": "2026-11-30T12:00:00Z", "by": "anonymous"}],
        "createdAt": "2026-11-30T12:00:00Z",
        "updatedAt": "2026-11-30T12:00:00Z",
    }


def summary(view: dict[str, Any]) -> dict[str, Any]:
    """The schedule as `GET /schedules` lists it."""
    chosen = {k: view[k] for k in ("id", "type", "cron", "rate", "timezone", "paused", "source", "counts")}
    last = view["lastFiring"]
    return {**chosen, "nextFiring": (view["nextFirings"] or [None])[0], "lastFiring": last["at"] if last else None}


def _weekday_nines() -> list[str]:
    # 09:00 in Berlin in winter (UTC+1) on the weekdays after Tuesday 2026-12-01.
    return [f"2026-12-{day:02d}T08:00:00Z" for day in (2, 3, 4, 7, 8)]


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class FakeScheduleApi(FakeApi):
    """FakeApi with `schedules` by id; everything else as FakeApi answers it."""

    schedules: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Paths (without the query) answered with this status instead.
    fail_paths: dict[str, int] = field(default_factory=dict)

    def _route(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        if path in self.fail_paths:
            return self.fail_paths[path], _error("fake_failure", f"the fake answers {self.fail_paths[path]}")
        if (method, path) == ("GET", "/schedules"):
            return self._list_schedules(query)
        match = re.fullmatch(r"/schedules/([^/]+)(?:/(pause|resume|trigger))?", path)
        if match is None:
            return super()._route(method, path, query, body)
        schedule_id = unquote(match[1])
        schedule = self.schedules.get(schedule_id)
        if schedule is None:
            return 404, _error("not_found", f"no schedule with id {schedule_id!r}")
        if method == "GET" and match[2] is None:
            return 200, schedule
        if method == "POST" and match[2] in ("pause", "resume"):
            schedule["paused"] = match[2] == "pause"
            schedule["nextFirings"] = [] if schedule["paused"] else _weekday_nines()
            return 200, schedule
        if method == "POST" and match[2] == "trigger":
            return self._trigger(schedule)
        return 404, _error("not_found", f"no route {method} {path}")

    def _list_schedules(self, query: dict[str, str]) -> tuple[int, Any]:
        limit, start = int(query.get("limit", "50")), int(query.get("cursor", "0"))
        chosen = [self.schedules[key] for key in sorted(self.schedules)][start : start + limit]
        more = start + limit < len(self.schedules)
        return 200, {"schedules": [summary(s) for s in chosen], "nextCursor": str(start + limit) if more else None}

    def _trigger(self, schedule: dict[str, Any]) -> tuple[int, Any]:
        at = _utc_now()
        task = self.add(f"{schedule['id']}@{at}.manual", "PENDING", attempts=0)
        task.update(type=schedule["type"], payload=schedule["payload"])
        schedule["lastFiring"] = {"at": at, "taskId": task["id"], "status": "PENDING"}
        schedule["counts"]["fired"] += 1
        return 201, task

    def _stats(self) -> dict[str, Any]:
        stats = super()._stats()
        summed = {name: sum(s["counts"][name] for s in self.schedules.values()) for name in COUNTERS}
        stats["schedules"] = summed
        for name in COUNTERS:
            stats["sources"][f"schedules.{name}"] = {
                "source": f"schedule items' counters, summed over {len(self.schedules)} schedules",
                "exact": True,
            }
        return stats
