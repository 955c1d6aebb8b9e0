"""What a chaos run sends: tasks of every type, their extra copies, and poison, drawn from one seed.

Besides ordinary simulated work the plan holds tasks whose fate is known in
advance: permanent failures (one attempt per run), overruns (a handler that
sleeps past its deadline, so every attempt times out), `checksum` tasks (whose
result can be computed here), `steps` tasks (long work that heartbeats its progress
under a lease of its own, so kills land between heartbeats) and delayed tasks
(PENDING long enough to cancel). Flow-controlled tasks (`capped`, `per-customer` with
one heavy customer, `throttled`) always succeed when they run, so each must end COMPLETED
at attempt 1 unless a kill took one over; unique tasks share a few `uniqueKey`s, so all but
one publish of each key is held back.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from typing import Any

# Mixed work: mostly quick, some long enough for a kill to land mid-attempt, all within
# the chaos stage's handler timeout (see OVERRUN_MS).
EXECUTION_TIMES_MS = (0, 0, 50, 150, 400, 600)
# The longest simulation the payload model allows; the chaos stage's lease makes its
# handler timeout shorter than this, so every attempt of such a task overruns its deadline.
OVERRUN_MS = 1000
DELAY_SECONDS = 5
ALGORITHMS = ("sha256", "sha1", "md5")
FAILURE_CHANCES = (0.0, 0.0, 0.2, 0.5, 1.0)
# Ids a URL or a key might mangle; a few tasks use them to prove they travel intact.
ODD_ID_PARTS = ("a/b", "100%", "ü-ß-日本", "sp ace", "q?x=1&y", "#hash")
POISON_KINDS = ("not_json", "not_a_task", "out_of_range")
# Expiring tasks: delayed past a short expiry (they must never start), or with one they meet.
SHORT_EXPIRY_SECONDS = 2
LONG_EXPIRY_SECONDS = 600
# A `steps` task: a few heartbeats a run, each step longer than the coalescing floor of 2/3 s.
STEP_MS = 700
# The built-in flow-controlled types (chalicelib/handlers/limited.py), and what they sleep.
FLOW_TYPES = ("capped", "per-customer", "throttled")
FLOW_SLEEPS_MS = (200, 400, 600, 800)  # long enough for the caps to fill
# Half the per-customer tasks are one customer's, the rest spread over a few others.
HEAVY_CUSTOMER = "heavy"
LIGHT_CUSTOMERS = ("c1", "c2", "c3")
# Unique tasks share this many keys (each key alternately windowed and held until terminal).
UNIQUE_KEYS = 4
UNIQUE_FOR_SECONDS = 3600


@dataclass(frozen=True)
class PlannedTask:
    task_id: str
    payload: dict[str, Any]
    # Extra POST /publish calls with the same id (0, 1 or 2: two or three publishes in all).
    republish: int = 0
    # Extra copies of its message sent straight to the queue.
    requeue: int = 0
    task_type: str = "simulate"
    delay_seconds: int = 0
    expires_in_seconds: int = 0  # 0: no expiry
    unique_key: str | None = None
    unique_for: int | None = None  # seconds; else held until terminal, when unique_key is set
    run_at: str | None = None  # RFC 3339: the task must not start before it (tools/chaos/timed.py)
    callback: str | None = None  # the URL of its completion callback (tools/chaos/receiver.py)

    @property
    def flow(self) -> bool:
        """A flow-controlled task: it waits for its limits, and succeeds once it runs."""
        return self.task_type in FLOW_TYPES

    @property
    def _simulation(self) -> dict[str, Any]:
        return self.payload.get("simulation") or {} if self.task_type == "simulate" else {}

    @property
    def permanent(self) -> bool:
        """Every attempt fails permanently: each run is one failed attempt."""
        return bool(self._simulation.get("permanentFailure")) and self._simulation.get("failureChance") == 1.0

    @property
    def overruns(self) -> bool:
        """Every attempt outlives the handler's deadline, so each one times out."""
        return self._simulation.get("executionTime") == OVERRUN_MS

    @property
    def always_fails(self) -> bool:
        if self.task_type != "simulate":
            return False
        return self.payload.get("message") == "ERROR" or self._simulation.get("failureChance") == 1.0 or self.overruns

    def copy_payload(self, copy: int) -> dict[str, Any]:
        """The payload of the `copy`-th publish: the same work, marked so the stored one shows which won."""
        if self.task_type == "checksum":  # its model forbids other fields: the text carries the mark
            return {**self.payload, "text": f"{self.payload['text']} #{copy}"}
        if self.task_type == "steps":  # the same: the step's length carries it
            return {**self.payload, "stepMs": self.payload["stepMs"] + copy}
        if self.flow:  # the same: the sleep carries it
            return {**self.payload, "sleepMs": self.payload["sleepMs"] + copy}
        return {**self.payload, "copy": copy}

    def expected_result(self, payload: dict[str, Any]) -> Any:
        """The result a successful attempt must store for the stored `payload`."""
        if self.task_type == "checksum":
            algorithm = payload.get("algorithm", "sha256")
            digest = hashlib.new(algorithm, payload["text"].encode("utf-8"), usedforsecurity=False).hexdigest()
            return {"algorithm": algorithm, "digest": digest}
        if self.task_type == "steps":
            return {"steps": payload["steps"]}
        if self.flow:
            return {"sleptMs": payload["sleepMs"]}
        return {"sleptMs": (payload.get("simulation") or {}).get("executionTime", 0)}

    def expected_progress(self, payload: dict[str, Any]) -> Any:
        """The progress a COMPLETED task must show: its last run's last heartbeat (None: not checked)."""
        if self.task_type == "steps":
            return {"done": payload["steps"], "total": payload["steps"]}
        return None

    def publish_body(self, copy: int) -> dict[str, Any]:
        body: dict[str, Any] = {"id": self.task_id, "type": self.task_type, "payload": self.copy_payload(copy)}
        if self.delay_seconds:
            body["delaySeconds"] = self.delay_seconds
        if self.run_at is not None:
            body["runAt"] = self.run_at
        if self.callback is not None:
            body["callback"] = {"url": self.callback}
        if self.expires_in_seconds:
            body["expiresInSeconds"] = self.expires_in_seconds
        if self.unique_key is not None:
            body["uniqueKey"] = self.unique_key
            if self.unique_for is not None:
                body["uniqueFor"] = self.unique_for
            else:
                body["uniqueUntil"] = "terminal"
        return body

    def message(self) -> str:
        """The first publish's task as the API puts it on the queue."""
        task: dict[str, Any] = {"id": self.task_id, "type": self.task_type, "payload": self.copy_payload(1)}
        if self.callback is not None:
            task["callback"] = {"url": self.callback}
        return json.dumps(task, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class Poison:
    kind: str
    body: str
    # The id the DLQ handler records it under, when the body carries a usable one.
    task_id: str | None = None


@dataclass
class Plan:
    tasks: list[PlannedTask] = field(default_factory=list)
    poison: list[Poison] = field(default_factory=list)

    @property
    def duplicates(self) -> int:
        """Extra deliveries of the same task: publishes beyond the first, and queue copies."""
        return sum(task.republish + task.requeue for task in self.tasks)


def _expiry(number: int) -> int:
    if number % 50 == 15:  # delayed (number % 10 == 5): its delay outlasts its expiry
        return SHORT_EXPIRY_SECONDS
    return LONG_EXPIRY_SECONDS if number % 25 == 21 else 0


def make_plan(
    run_id: str,
    tasks: int,
    duplicate_share: float,
    requeue_share: float,
    poison_per_kind: int,
    rng: random.Random,
) -> Plan:
    """`tasks` tasks, a share published two or three times, a share queued twice, and poison of each kind.

    One task in 20 is a `checksum`, one in 20 a `steps`, one in 20 each of the three flow-controlled
    types, one in 20 a unique task sharing its key with others, one in 25 fails permanently, one
    in 25 overruns its deadline and one in 10 is published with a delay; one in 50 of the
    delayed ones expires before its delay ends, and one in 25 of all has an expiry it meets.
    """
    plan = Plan()
    for number in range(tasks):
        task_id = f"chaos-{run_id}-{number:05d}"
        if number % 40 == 7:
            task_id = f"{task_id}-{ODD_ID_PARTS[(number // 40) % len(ODD_ID_PARTS)]}"
        simulation: dict[str, Any] = {
            "executionTime": rng.choice(EXECUTION_TIMES_MS),
            "failureChance": rng.choice(FAILURE_CHANCES),
        }
        if number % 25 == 3:
            simulation.update(failureChance=1.0, permanentFailure=True)
        elif number % 25 == 11:
            simulation.update(executionTime=OVERRUN_MS, failureChance=0.0)
        payload: dict[str, Any] = {"simulation": simulation, "n": number}
        if number % 50 == 13:
            payload["message"] = "ERROR"  # always fails, whatever the failure chance
        task_type = "simulate"
        if number % 20 == 17:
            task_type = "checksum"
            text = f"chaos {run_id} task {number} {'ü日本' * (number % 4)}"
            payload = {"text": text, "algorithm": ALGORITHMS[number % 3]}
        elif number % 20 == 9:
            task_type = "steps"
            payload = {"steps": 2 + number % 3, "stepMs": STEP_MS}
        elif number % 20 in (2, 6, 10):
            task_type = FLOW_TYPES[(number % 20) // 4]
            heavy = rng.random() < 0.5
            customer = HEAVY_CUSTOMER if heavy else rng.choice(LIGHT_CUSTOMERS)
            payload = {"sleepMs": rng.choice(FLOW_SLEEPS_MS), "customer": customer}
        unique_key, unique_for = None, None
        if number % 20 == 14:
            key = (number // 20) % UNIQUE_KEYS
            unique_key = f"chaos-{run_id}-unique-{key}"
            unique_for = UNIQUE_FOR_SECONDS if key % 2 == 0 else None
            payload = {"simulation": {"executionTime": 50, "failureChance": 0.0}, "n": number}
        flow = task_type in FLOW_TYPES
        plan.tasks.append(
            PlannedTask(
                task_id=task_id,
                payload=payload,
                republish=rng.choice((1, 2)) if rng.random() < duplicate_share else 0,
                requeue=1 if rng.random() < requeue_share else 0,
                task_type=task_type,
                delay_seconds=DELAY_SECONDS if number % 10 == 5 else 0,
                expires_in_seconds=0 if flow or unique_key else _expiry(number),
                unique_key=unique_key,
                unique_for=unique_for,
            )
        )
    for number in range(poison_per_kind):
        marker = f"chaos-{run_id}-poison-{number}"
        plan.poison += [
            Poison("not_json", f"{marker}: this is not JSON {{"),
            Poison("not_a_task", json.dumps({"note": "JSON, but not a task", "marker": marker})),
            # A payload that breaks only its type's model is no poison (it fails permanently); one
            # that is not even an object is.
            Poison(
                "payload_not_object", json.dumps({"id": marker, "payload": ["not", "an", "object"]}), task_id=marker
            ),
        ]
    return plan
