"""The operator of a chaos run: retries, cancels and bulk retries sent while workers die and faults land.

It aims at each status an action can meet: delayed tasks while PENDING, tasks
the listing shows RETRYING, long tasks it sees PROCESSING, FAILED and CANCELLED
tasks to retry, and bulk retries started together with single retries of the
same tasks. Every answer is kept (`Answer`), so the invariants can match each
operator entry of a history with the answer the API gave for it.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

from tools.chaos.invariants import Answer
from tools.chaos.plan import PlannedTask

HTTP_TIMEOUT_SECONDS = 10
TICK_SECONDS = 0.3
PAGE = 100
# A task is retried at most this often, so that always-failing tasks end within the run.
MAX_RETRIES_PER_TASK = 2
# Long enough that a look at it often finds it PROCESSING.
LONG_TASK_MS = 400
# Long tasks looked at per tick, to find one PROCESSING: GETs are cheap, a miss costs a tick.
PROCESSING_LOOKS = 10


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class OperatorOptions:
    actions: int = 40  # POSTs to send (a bulk retry counts as one)
    seconds: float = 60.0  # give up sending after this long
    race_every: int = 4  # every n-th retry is a bulk retry raced by single retries of the same tasks


def _long(task: PlannedTask) -> bool:
    """Long enough to be found PROCESSING: a long simulation, or long work that heartbeats."""
    if task.task_type == "steps":
        return True
    return (
        task.task_type == "simulate" and (task.payload.get("simulation") or {}).get("executionTime", 0) >= LONG_TASK_MS
    )


class ChaosOperator:
    """Sends operator requests against the API and keeps every answer."""

    def __init__(self, api_url: str, tasks: list[PlannedTask], options: OperatorOptions, rng: random.Random) -> None:
        """`tasks`: the plan's tasks, the only ones it acts on."""
        self.api_url = api_url
        self.options = options
        self.rng = rng
        self.answers: list[Answer] = []
        self.tasks = {task.task_id: task for task in tasks}
        self._lock = threading.Lock()
        self._local = threading.local()
        self._retried: Counter[str] = Counter()
        self._looked_at: set[str] = set()
        self._published: set[str] = set()
        self._retry_rounds = 0
        self._raced = False  # a bulk retry raced by single retries has been sent
        self._found_processing = False  # a task was found PROCESSING and cancelled
        delayed = sorted(task.task_id for task in tasks if task.delay_seconds)
        self._cancel_on_accept = set(rng.sample(delayed, min(len(delayed) // 2, max(1, options.actions // 6))))

    # --- requests ---------------------------------------------------------

    def _http(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _post(self, kind: str, task_id: str | None, path: str, body: dict[str, Any] | None = None) -> Answer:
        sent = _now_ms()
        try:
            response = self._http().post(f"{self.api_url}{path}", json=body, timeout=HTTP_TIMEOUT_SECONDS)
        except requests.RequestException:
            answer = Answer(kind, task_id, sent, limit=int((body or {}).get("limit", 1)))
        else:
            answered = _now_ms()
            bulk = response.json() if kind == "bulk_retry" and response.ok else {}
            retried = tuple(bulk.get("retried", []))
            skipped = tuple(entry["id"] for entry in bulk.get("skipped", []))
            answer = Answer(kind, task_id, sent, answered, response.status_code, retried, skipped)
        with self._lock:
            self.answers.append(answer)
        return answer

    def _get(self, path: str) -> dict[str, Any] | None:
        try:
            response = self._http().get(f"{self.api_url}{path}", timeout=HTTP_TIMEOUT_SECONDS)
        except requests.RequestException:
            return None
        return response.json() if response.status_code == 200 else None

    def retry(self, task_id: str) -> Answer:
        with self._lock:
            self._retried[task_id] += 1
        return self._post("retry", task_id, f"/tasks/{quote(task_id, safe='')}/retry")

    def cancel(self, task_id: str) -> Answer:
        return self._post("cancel", task_id, f"/tasks/{quote(task_id, safe='')}/cancel")

    def bulk_retry(self, limit: int) -> Answer:
        return self._post("bulk_retry", None, "/retries", {"status": "FAILED", "limit": limit, "type": "simulate"})

    def listed(self, status: str, limit: int = PAGE) -> list[str]:
        """Ids of one page of `status`, newest first (only the run's own tasks)."""
        page = self._get(f"/tasks?status={status}&limit={limit}") or {}
        return [task["id"] for task in page.get("tasks", []) if task["id"] in self.tasks]

    def list_all(self, status: str) -> list[str]:
        """Every id the listing holds in `status`, following the cursor."""
        ids: list[str] = []
        cursor: str | None = None
        while True:
            query = f"/tasks?status={status}&limit={PAGE}" + (f"&cursor={quote(cursor, safe='')}" if cursor else "")
            page = self._get(query)
            if page is None:
                raise RuntimeError(f"GET /tasks?status={status} did not answer 200")
            ids += [task["id"] for task in page["tasks"]]
            cursor = page.get("nextCursor")
            if not cursor:
                return ids

    def stats(self) -> dict[str, int]:
        """`GET /stats`' exact counts (the index's); the estimated ones (metrics, queue depths) are left out."""
        stats = self._get("/stats")
        if stats is None:
            raise RuntimeError("GET /stats did not answer 200")
        sources = stats.get("sources") or {}
        return {
            status: count
            for status, count in stats["counts"].items()
            if (sources.get(f"counts.{status}") or {}).get("exact", True)
        }

    # --- the schedule -------------------------------------------------------

    def _spent(self) -> int:
        with self._lock:
            return len(self.answers)

    def accepted(self, task_id: str) -> None:
        """Told of each task's first accepted publish: cancel some delayed ones at once, while PENDING."""
        with self._lock:
            self._published.add(task_id)
        if task_id in self._cancel_on_accept:
            self.cancel(task_id)

    def _cancel_retrying(self) -> None:
        fresh = [task_id for task_id in self.listed("RETRYING", 10) if task_id not in self._looked_at]
        if fresh:
            self._looked_at.add(fresh[0])
            self.cancel(fresh[0])

    def _cancel_processing(self) -> None:
        """Look at a few long tasks already published; cancel the first one found PROCESSING."""
        with self._lock:
            published = set(self._published)
        candidates = [
            task.task_id
            for task in self.tasks.values()
            if _long(task) and task.task_id in published and task.task_id not in self._looked_at
        ]
        # Until one is found, look at every candidate: on a slow machine the operator has few rounds.
        looks = len(candidates) if not self._found_processing else min(PROCESSING_LOOKS, len(candidates))
        for task_id in self.rng.sample(sorted(candidates), looks):
            view = self._get(f"/tasks/{quote(task_id, safe='')}")
            if view is None:
                continue  # no answer (the API may be dying): look again next time
            if view["status"] in {"COMPLETED", "FAILED", "CANCELLED"}:
                self._looked_at.add(task_id)
                continue
            if view["status"] == "PROCESSING":
                self._looked_at.add(task_id)
                self._found_processing = True
                self.cancel(task_id)
                return

    def _retry_some(self) -> None:
        """Retry one FAILED (or CANCELLED) task, or race a bulk retry with single retries of its targets."""
        failed = [task_id for task_id in self.listed("FAILED", 20) if self._retried[task_id] < MAX_RETRIES_PER_TASK]
        self._retry_rounds += 1
        # The first chance races at once (a slow machine may leave the operator few rounds), then every n-th.
        first_race = not self._raced
        if len(failed) >= 2 and (first_race or self._retry_rounds % self.options.race_every == 0):
            targets = failed[:3]
            jobs: list[Callable[[], Answer]] = [lambda: self.bulk_retry(len(targets))]
            jobs += [lambda t=task_id: self.retry(t) for task_id in targets[:2]]
            with ThreadPoolExecutor(len(jobs)) as pool:
                answers = list(pool.map(lambda job: job(), jobs))
            # A bulk retry no API answered (one was dying, or the machine is slow) races again next round.
            self._raced = self._raced or answers[0].status_code == 200
            with self._lock:
                for task_id in targets:  # the bulk retry may have taken them too
                    self._retried[task_id] += 1
            return
        if failed:
            self.retry(self.rng.choice(failed))
        cancelled = [t for t in self.listed("CANCELLED", 20) if self._retried[t] < MAX_RETRIES_PER_TASK]
        if cancelled and self.rng.random() < 0.3:
            self.retry(self.rng.choice(cancelled))

    def run(self, done: threading.Event) -> None:
        """Send `options.actions` requests (or until `options.seconds` pass, or `done` is set)."""
        deadline = time.monotonic() + self.options.seconds
        steps = (self._cancel_retrying, self._cancel_processing, self._retry_some)
        while self._spent() < self.options.actions and time.monotonic() < deadline and not done.is_set():
            for step in steps:
                step()
            time.sleep(TICK_SECONDS)

    def figures(self) -> Counter[str]:
        """Requests by kind and answer, e.g. `cancel 202`, `bulk_retry 200`, `retry none` (no answer)."""
        with self._lock:
            return Counter(f"{a.kind} {a.status_code or 'none'}" for a in self.answers)

    def bulk_figures(self) -> tuple[int, int]:
        """Tasks the bulk retries retried, and tasks they skipped (a racing retry won)."""
        with self._lock:
            return sum(len(a.retried) for a in self.answers), sum(len(a.skipped) for a in self.answers)
