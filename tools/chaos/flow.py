"""Flow control under chaos: pause and resume a capped type mid-run, read the handlers' own
records of their runs from the workers' logs, and check the flow invariants on them.

The limits checked are the built-in flow-controlled types' own (chalicelib/handlers/limited.py),
read from the module, so the checks follow the types if their limits change.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

from chalicelib.handlers import limited
from tools.chaos.flow_invariants import (
    HandlerRun,
    PauseSpan,
    Rate,
    UniqueHold,
    attempts_spent_waiting,
    over_cap,
    over_rate,
    started_while_paused,
    unique_admitted_twice,
)
from tools.chaos.invariants import Findings
from tools.chaos.plan import FLOW_TYPES

STARTED_EVENT = '"message":"flow_run_started"'
# The consumer's line as an attempt starts: when the gate admitted it and a rate counted it.
ADMITTED_EVENT = '"message":"started"'
ENDED_EVENT = '"message":"flow_run_ended"'
# What the dead-letter handler logs for a message it received.
DEAD_LETTER_EVENTS = ('"message":"dead_lettered"', '"message":"dead_lettered_duplicate"', '"message":"redriven"')
# A deferral whose renewal could not be sent hides the message instead, which spends a receive:
# the one way flow control can bring a message nearer the dead-letter queue.
DEFERRED_EVENT = '"message":"flow_deferred"'

CAPS = {"capped": limited.CAPPED_CONCURRENCY}
KEY_CAPS = {"per-customer": limited.CUSTOMER_CONCURRENCY}
_UNITS_MS = {"second": 1_000, "minute": 60_000, "hour": 3_600_000}
HTTP_TIMEOUT_SECONDS = 10
# A pause or resume whose API died under it is sent again until one answers.
ACTION_PATIENCE_SECONDS = 40.0


def _rate(text: str) -> Rate:
    count, unit = text.split("/")
    return Rate(int(count), _UNITS_MS[unit])


RATES = {"throttled": _rate(limited.THROTTLED_RATE)}


def _events(paths: Iterable[Path], marks: tuple[str, ...]) -> list[dict[str, Any]]:
    events = []
    for path in paths:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if any(mark in line for mark in marks):
                events.append(json.loads(line[line.index("{") :]))
    return events


def handler_runs(worker_logs: Iterable[Path]) -> list[HandlerRun]:
    """Every run the flow-controlled handlers logged, ended or not (its worker killed)."""
    paths = list(worker_logs)
    ended = {(e["taskId"], e["attempt"]): int(e["endedMs"]) for e in _events(paths, (ENDED_EVENT,))}
    admitted = {(e["taskId"], e["attempt"]): e for e in _events(paths, (ADMITTED_EVENT,)) if "admittedMs" in e}
    runs = []
    for event in _events(paths, (STARTED_EVENT,)):
        kind = event["taskType"]
        gate = admitted.get((event["taskId"], event["attempt"]), {})
        runs.append(
            HandlerRun(
                task_id=event["taskId"],
                type=kind,
                key=event.get("customer") if kind in KEY_CAPS else None,
                started_ms=int(event["startedMs"]),
                deadline_ms=int(event["deadlineMs"]),
                ended_ms=ended.get((event["taskId"], event["attempt"])),
                admitted_ms=gate.get("admittedMs"),
                counted_ms=gate.get("countedMs"),
            )
        )
    return runs


def dead_lettered(worker_logs: Iterable[Path], task_ids: set[str]) -> list[str]:
    """The tasks among `task_ids` whose message the dead-letter handler received after a deferral
    spent one of its receives. A kill or a lost answer may dead-letter any task's message (the
    handler redrives it, and the task still ends as it must); a deferral must never be why."""
    paths = list(worker_logs)
    spent = {e.get("taskId") for e in _events(paths, (DEFERRED_EVENT,)) if e.get("renewed") is False}
    received = {e.get("taskId") for e in _events(paths, DEAD_LETTER_EVENTS)}
    return sorted(task_id for task_id in task_ids if task_id in spent and task_id in received)


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def unique_holds(items: Mapping[str, Mapping[str, Any]]) -> list[UniqueHold]:
    """Every stored task that holds a unique key, and until when: its window's end, or its end."""
    holds = []
    for item in items.values():
        unique = item.get("unique")
        if not unique:
            continue
        until = unique["until"]
        finished = item.get("finishedAt")
        ends = int(until) if not isinstance(until, str) else (_ms(finished) if finished else None)
        holds.append(UniqueHold(unique["key"], item["id"], _ms(item["createdAt"]), ends))
    return holds


@dataclass
class PauseDriver:
    """Pauses a type for a while, once, and keeps when the pause took effect and when it was lifted."""

    api_url: str
    type_name: str
    after_seconds: float
    for_seconds: float
    spans: list[PauseSpan] = field(default_factory=list)
    error: str | None = None

    def run(self, done: threading.Event) -> None:
        if done.wait(self.after_seconds):
            return
        paused = self._post("pause")
        if paused is None:
            self.error = "no API answered the pause"
            return
        effective = _ms(paused["effectiveBy"])
        done.wait(self.for_seconds)
        resume_sent = int(time.time() * 1000)
        if self._post("resume") is None:
            self.error = "no API answered the resume"
            self.spans.append(PauseSpan(self.type_name, effective, None))
            return
        self.spans.append(PauseSpan(self.type_name, effective, resume_sent))

    def _post(self, action: str) -> dict[str, Any] | None:
        """POST the action until an API answers 200 (a killed API's request may have acted: the
        repeat then answers `changed: false` with the first pause's times)."""
        deadline = time.monotonic() + ACTION_PATIENCE_SECONDS
        while time.monotonic() < deadline:
            try:
                response = requests.post(
                    f"{self.api_url}/types/{self.type_name}/{action}", timeout=HTTP_TIMEOUT_SECONDS
                )
            except requests.RequestException:
                time.sleep(0.2)
                continue
            if response.status_code == 200:
                return dict(response.json())
            time.sleep(0.2)
        return None


def check_flow(
    items: Mapping[str, Mapping[str, Any]],
    worker_logs: list[Path],
    pauses: Iterable[PauseSpan],
    held: Mapping[str, str],
    findings: Findings,
) -> list[HandlerRun]:
    """Fill the flow invariants of `findings`; `held` maps a unique publish held back to the holder it named.

    Returns the runs read, for the report's figures.
    """
    runs = handler_runs(worker_logs)
    findings.over_cap = over_cap(runs, CAPS, KEY_CAPS)
    findings.over_rate = over_rate(runs, RATES, {})
    findings.ran_while_paused = started_while_paused(runs, pauses)
    findings.spent_waiting = attempts_spent_waiting(items, runs, FLOW_TYPES)
    flow_ids = {task_id for task_id, item in items.items() if item.get("type") in FLOW_TYPES}
    findings.flow_dead_lettered = dead_lettered(worker_logs, flow_ids)
    findings.unique_twice = unique_admitted_twice(unique_holds(items))
    findings.unique_leaked = sorted(task_id for task_id in held if task_id in items)
    return runs
