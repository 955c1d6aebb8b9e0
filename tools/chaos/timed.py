"""Time under chaos: schedules and `runAt` tasks while the workers (and their tickers) and the API die.

At the start of a run the driver creates a few rate schedules through the API (two `allow`,
one `skip` whose task outlasts its period, so that it skips) and publishes tasks due a few
seconds to half a minute ahead: the nearest through SQS's delay, the others through timers
(the chaos stage lowers RUN_AT_TIMER_SECONDS), a couple cancelled as soon as they are stored.
Once the run has lasted long enough and every `runAt` has passed it pauses the schedules; after
the settle, tools/chaos/time_invariants.py checks the schedule items, the tasks and the ticks
the workers logged.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from tools.chaos.invariants import Answer, Expected, Findings
from tools.chaos.plan import PlannedTask
from tools.chaos.time_invariants import (
    RunAtSeen,
    ScaledClock,
    ScheduleSeen,
    check_caught_up,
    check_firings,
    check_run_at,
    firing_instant,
    missed_ticks,
    seen_before,
)

TICK_EVENT = '"message":"tick"'
TIMER_EVENT = '"message":"timer_dispatched"'
TICK_SCHEDULE_SECONDS = 60  # the ticker's period on the schedule clock
# Long enough that firings a dead ticker owed fire once it is back: an hour of schedule time.
CATCHUP_SECONDS = 3_600
# (name, rate, overlap, type, payload). At the run's default scale of 30 they fire every 6, 10 and
# 4 wall seconds; the `skip` one's task runs 5 s, so that about every other firing waits.
SCHEDULES = (
    ("allow-3", "3 minutes", "allow", "checksum", {"text": "every 3 minutes"}),
    ("allow-5", "5 minutes", "allow", "checksum", {"text": "every 5 minutes"}),
    ("skip-2", "2 minutes", "skip", "steps", {"steps": 5, "stepMs": 1000}),
)
# How far ahead each `runAt` is, in wall seconds, cycled over the tasks.
RUN_AT_AHEAD_SECONDS = (1.5, 4.0, 30.0, 6.0, 2.0, 9.0, 20.0, 12.0, 15.0, 25.0)
# Cancelled at once: ahead by at least this much, so that the cancel lands long before their time.
CANCEL_AHEAD_SECONDS = 12.0
RUN_AT_PAYLOAD = {"simulation": {"executionTime": 50, "failureChance": 0.0}}
HTTP_TIMEOUT_SECONDS = 10
ACTION_PATIENCE_SECONDS = 40.0
RECONNECT_PAUSE_SECONDS = 0.2
POLL_SECONDS = 0.2


@dataclass(frozen=True)
class TimeOptions:
    schedules: int = len(SCHEDULES)  # how many of SCHEDULES to create (0: none)
    run_at_tasks: int = 10
    cancels: int = 2  # of the runAt tasks, cancelled before their time
    pause_after_seconds: float = 30.0  # the schedules run at least this long (wall s) before their pause


@dataclass
class TimeFigures:
    schedules: int = 0
    firings: int = 0  # firing instants checked to have exactly one task
    skipped: int = 0  # firings of the `skip` schedule left out while its previous task ran
    missed: int = 0  # firings no tick saw inside their catch-up window
    lateness: list[float] = field(default_factory=list)  # wall s from each firing's instant to its task
    run_at_tasks: int = 0
    timers: int = 0  # runAt tasks whose message a ticker sent from a timer (the workers' logs)
    cancelled_early: int = 0
    ticks: int = 0
    missed_ticks: int = 0  # tick periods in which no ticker ran


def log_events(paths: Iterable[Path], mark: str) -> list[dict[str, Any]]:
    events = []
    for path in paths:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if mark in line:
                try:
                    events.append(json.loads(line[line.index("{") :]))
                except ValueError:  # a line cut by a SIGKILL
                    continue
    return events


def logged_at(event: Mapping[str, Any]) -> float:
    """The wall time of a log line, as the stage's logger stamps it (`2026-12-01T15:04:41.123+00:00`)."""
    return datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()


@dataclass
class TimeDriver:
    """Creates the schedules and publishes the `runAt` tasks, pauses the schedules, then checks them."""

    api_url: str
    run_id: str
    clock: ScaledClock
    options: TimeOptions
    publish: Callable[[PlannedTask, int], bool]  # the run's publish, which retries through API kills
    cancel: Callable[[str], Answer]  # the operator's cancel, so its answer accounts for the entry
    say: Callable[[str], None] = print
    started: float = 0.0
    schedule_ids: list[str] = field(default_factory=list)
    payloads: dict[str, dict[str, Any]] = field(default_factory=dict)
    run_at: list[PlannedTask] = field(default_factory=list)
    run_at_ms: dict[str, int] = field(default_factory=dict)
    cancelled_early: set[str] = field(default_factory=set)
    paused_at: dict[str, float] = field(default_factory=dict)  # schedule id -> wall time its pause answered
    pause_sent: float | None = None  # wall time the first pause was sent
    _local: threading.local = field(default_factory=threading.local)

    def _post(self, path: str, body: dict[str, Any] | None, *ok: int) -> requests.Response | None:
        """POST until the API answers one of `ok`, trying again after no answer (a killed API is replaced within
        the patience) or a 5xx; None for any other answer, or none in time."""
        deadline = time.monotonic() + ACTION_PATIENCE_SECONDS
        session = getattr(self._local, "session", None) or requests.Session()
        self._local.session = session
        while time.monotonic() < deadline:
            try:
                response = session.post(f"{self.api_url}{path}", json=body, timeout=HTTP_TIMEOUT_SECONDS)
            except requests.RequestException:
                time.sleep(RECONNECT_PAUSE_SECONDS)
                continue
            if response.status_code in ok:
                return response
            if response.status_code < 500:
                self.say(f"POST {path} answered {response.status_code}: {response.text[:200]}")
                return None
            time.sleep(RECONNECT_PAUSE_SECONDS)
        return None

    def start(self) -> None:
        """Create the schedules, then publish the runAt tasks and cancel some at once."""
        self.started = time.time()
        for name, rate, overlap, task_type, payload in SCHEDULES[: self.options.schedules]:
            schedule_id = f"chaos-{self.run_id}-{name}"
            body = {
                "id": schedule_id,
                "type": task_type,
                "payload": payload,
                "rate": rate,
                "overlap": overlap,
                "catchupWindowSeconds": CATCHUP_SECONDS,
            }
            # A create repeated after its API died may find its own schedule: 409 is then success.
            if self._post("/schedules", body, 201, 409) is not None:
                self.schedule_ids.append(schedule_id)
                self.payloads[schedule_id] = payload
        cancel_left = self.options.cancels
        for number in range(self.options.run_at_tasks):
            ahead = RUN_AT_AHEAD_SECONDS[number % len(RUN_AT_AHEAD_SECONDS)]
            due_ms = math.ceil((time.time() + ahead) * 1000)
            task = PlannedTask(
                task_id=f"chaos-{self.run_id}-at-{number:05d}",
                payload={**RUN_AT_PAYLOAD, "n": number},
                run_at=datetime.fromtimestamp(due_ms / 1000, UTC).isoformat(timespec="milliseconds"),
            )
            if not self.publish(task, 1):
                continue
            self.run_at.append(task)
            self.run_at_ms[task.task_id] = due_ms
            if cancel_left and ahead >= CANCEL_AHEAD_SECONDS:
                cancel_left -= 1
                answer = self.cancel(task.task_id)
                if answer.status_code == 200 and answer.answered_ms is not None and answer.answered_ms < due_ms:
                    self.cancelled_early.add(task.task_id)
        self.say(
            f"created {len(self.schedule_ids)} schedules, published {len(self.run_at)} runAt tasks "
            f"({len(self.cancelled_early)} cancelled before their time)"
        )

    def pause(self, stop: threading.Event) -> None:
        """Once the schedules have run `pause_after_seconds` and every runAt has passed, pause each schedule."""
        last_due = max(self.run_at_ms.values(), default=0) / 1000
        until = max(self.started + self.options.pause_after_seconds if self.schedule_ids else 0, last_due)
        while time.time() < until and not stop.wait(POLL_SECONDS):
            pass
        self.pause_sent = time.time()
        for schedule_id in self.schedule_ids:
            if self._post(f"/schedules/{quote(schedule_id, safe='')}/pause", None, 200) is not None:
                self.paused_at[schedule_id] = time.time()
        self.say(f"paused {len(self.paused_at)} schedules")

    def expected(self, items: Mapping[str, Mapping[str, Any]]) -> list[Expected]:
        """The firings' tasks, for the run-once invariants: each must hold its schedule's payload."""
        return [
            Expected(task_id, payload=self.payloads[schedule_id])
            for task_id in items
            for schedule_id in self.schedule_ids
            if firing_instant(task_id, schedule_id) is not None
        ]

    def check(
        self,
        items: Mapping[str, Mapping[str, Any]],
        schedule_items: Mapping[str, Mapping[str, Any]],
        worker_logs: list[Path],
        findings: Findings,
    ) -> TimeFigures:
        """Every time invariant over the task items, the schedule items (id -> item, `definition` and
        `state` parsed) and the ticks each worker logged."""
        by_ticker = [[logged_at(event) for event in log_events([path], TICK_EVENT)] for path in worker_logs]
        wall_ticks = [t for ticks in by_ticker for t in ticks]
        ticks = [self.clock.schedule_of(t) for t in wall_ticks]
        figures = TimeFigures(schedules=len(self.schedule_ids), ticks=len(wall_ticks))
        figures.missed_ticks = missed_ticks(wall_ticks, TICK_SCHEDULE_SECONDS / self.clock.scale)
        ticked_by = seen_before(by_ticker, self.pause_sent) if self.pause_sent is not None else None
        for schedule_id in self.schedule_ids:
            item = schedule_items.get(schedule_id)
            paused = self.paused_at.get(schedule_id)
            if item is None or paused is None:
                findings.cursor_behind.append(schedule_id)  # gone, or never paused: nothing to check it by
                continue
            schedule = ScheduleSeen.from_item(item["definition"], item["state"])
            paused_by = self.clock.schedule_of(paused)
            fired = check_firings(schedule, items, self.clock, ticks, paused_by, findings)
            figures.firings += fired.checked
            figures.skipped += fired.skipped
            figures.missed += fired.missed
            figures.lateness += fired.lateness
            if ticked_by is not None:
                # Of two tickers racing, the one whose write lands may have read the time a tick earlier.
                check_caught_up(schedule, self.clock.schedule_of(ticked_by), TICK_SCHEDULE_SECONDS, findings)
        planned = [
            RunAtSeen(t.task_id, self.run_at_ms[t.task_id], t.task_id in self.cancelled_early) for t in self.run_at
        ]
        check_run_at(items, planned, findings)
        dispatched = {str(event.get("taskId")) for event in log_events(worker_logs, TIMER_EVENT)}
        figures.run_at_tasks = len(self.run_at)
        figures.timers = sum(1 for task in self.run_at if task.task_id in dispatched)
        figures.cancelled_early = len(self.cancelled_early)
        return figures
