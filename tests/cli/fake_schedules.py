"""The fake API of tests/cli/fake_api.py with the schedules' routes the console uses, in memory.

It plays the issue-20 contract: `GET /schedules`, `GET /schedules/{id}` (the definition,
`nextFirings`, `lastFiring`, the counters and `lastError`), `POST /schedules/{id}/pause|resume`
(the schedule's view) and `/trigger` (201 with the new task's view, id `<id>@<now>.manual`),
and `/stats` with the schedules' counters summed.
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
    counts: dict[str, int] | None = None,
    last_error: str | None = None,
) -> dict[str, Any]:
    """A schedule as `GET /schedules/{id}` shows it."""
    timing: dict[str, str] = {"rate": rate} if rate else {"cron": cron or "* * * * *"}
    return {
        "id": schedule_id,
        "type": task_type,
        "payload": {"simulation": {"failureChance": 0}},
        **timing,
        "timezone": timezone,
        "overlap": "skip",
        "catchupWindowSeconds": 3600,
        "paused": paused,
        "nextFirings": next_firings if next_firings is not None else [] if paused else _weekday_nines(),
        "lastFiring": last_firing,
        "counts": {name: 0 for name in COUNTERS} | (counts or {}),
        "lastError": last_error,
    }


def _weekday_nines() -> list[str]:
    # 09:00 in Berlin in winter (UTC+1) on the weekdays after Tuesday 2026-12-01.
    return [f"2026-12-{day:02d}T08:00:00Z" for day in (2, 3, 4, 7, 8)]


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class FakeScheduleApi(FakeApi):
    """FakeApi with `schedules` by id; everything else as FakeApi answers it."""

    schedules: dict[str, dict[str, Any]] = field(default_factory=dict)

    def _route(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        if (method, path) == ("GET", "/schedules"):
            return 200, {"schedules": [self.schedules[key] for key in sorted(self.schedules)], "nextCursor": None}
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
