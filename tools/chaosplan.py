"""What a chaos run sends: tasks, their extra copies, and poison, drawn from one seed."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

# Mixed work: mostly quick, some long enough for a kill to land mid-attempt.
EXECUTION_TIMES_MS = (0, 0, 50, 150, 400, 800)
FAILURE_CHANCES = (0.0, 0.0, 0.2, 0.5, 1.0)
# Ids a URL or a key might mangle; a few tasks use them to prove they travel intact.
ODD_ID_PARTS = ("a/b", "100%", "ü-ß-日本", "sp ace", "q?x=1&y", "#hash")
POISON_KINDS = ("not_json", "not_a_task", "out_of_range")


@dataclass(frozen=True)
class PlannedTask:
    task_id: str
    payload: dict[str, Any]
    # Extra POST /publish calls with the same id (0, 1 or 2: two or three publishes in all).
    republish: int = 0
    # Extra copies of its message sent straight to the queue.
    requeue: int = 0

    @property
    def always_fails(self) -> bool:
        simulation = self.payload.get("simulation") or {}
        return self.payload.get("message") == "ERROR" or simulation.get("failureChance") == 1.0

    def copy_payload(self, copy: int) -> dict[str, Any]:
        """The payload of the `copy`-th publish: the same work, marked so the stored one shows which won."""
        return {**self.payload, "copy": copy}

    def message(self) -> str:
        """The first publish's task as the API puts it on the queue."""
        task = {"id": self.task_id, "payload": self.copy_payload(1)}
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


def make_plan(
    run_id: str,
    tasks: int,
    duplicate_share: float,
    requeue_share: float,
    poison_per_kind: int,
    rng: random.Random,
) -> Plan:
    """`tasks` tasks, a share published two or three times, a share queued twice, and poison of each kind."""
    plan = Plan()
    for number in range(tasks):
        task_id = f"chaos-{run_id}-{number:05d}"
        if number % 40 == 7:
            task_id = f"{task_id}-{ODD_ID_PARTS[(number // 40) % len(ODD_ID_PARTS)]}"
        payload: dict[str, Any] = {
            "simulation": {
                "executionTime": rng.choice(EXECUTION_TIMES_MS),
                "failureChance": rng.choice(FAILURE_CHANCES),
            },
            "n": number,
        }
        if number % 50 == 13:
            payload["message"] = "ERROR"  # always fails, whatever the failure chance
        plan.tasks.append(
            PlannedTask(
                task_id=task_id,
                payload=payload,
                republish=rng.choice((1, 2)) if rng.random() < duplicate_share else 0,
                requeue=1 if rng.random() < requeue_share else 0,
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
