"""Composed work in a chaos run: workflows of 20 to 100 children, chains of 2 or 3 steps, and what they expect.

Every child, root and step is a `simulate` task whose fate is drawn from the run's seed: a `fail`
workflow may hold a child that always fails (so its policy really ends it), the others fail by
chance; a chain's middle step may always fail (so it ends there). `then` never fails, so a
workflow that runs it must end COMPLETED. Sent while workers and the API die; each POST is sent
again until an API answers, which the ids make safe (a workflow's repeat publishes only the
children not stored yet, a chain's is a duplicate).

The invariants are tools/chaos/compose_invariants.py's; the callbacks' receiver is receiver.py.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests

from tools.chaos.compose_invariants import ChainSent, WorkflowSent, step_id, then_id
from tools.chaos.invariants import Expected

# A workflow of 100 children is 100 puts behind one answer, which a loaded machine (and the API's
# faults, each retried with backoff) can stretch past a minute; a repeat meanwhile only adds to it.
HTTP_TIMEOUT_SECONDS = 90
PATIENCE_SECONDS = 240.0
PAUSE_SECONDS = 0.3
# Workflow sizes in turn (the fuller mix reaches 100), and their policies in turn.
WORKFLOW_SIZES = (20, 100, 50, 35)
POLICIES = ("fail", "continue")
EXECUTION_TIMES_MS = (0, 50, 150)
# Chances a child, root or step fails an attempt; three attempts at 0.6 all fail one time in five.
FAILURE_CHANCES = (0.0, 0.0, 0.0, 0.2, 0.6)
# The chains go out side by side; the workflows one after another, so that a 100-child publish (a
# hundred puts behind one answer) does not hold the API and the embedded AWS from the rest at once.
CONCURRENCY = 4


def _simulation(rng: random.Random, chance: float | None = None) -> dict[str, Any]:
    return {
        "executionTime": rng.choice(EXECUTION_TIMES_MS),
        "failureChance": rng.choice(FAILURE_CHANCES) if chance is None else chance,
    }


@dataclass(frozen=True)
class ComposeOptions:
    workflows: int = 4
    sizes: tuple[int, ...] = WORKFLOW_SIZES
    chains: int = 10


@dataclass
class ComposePlan:
    workflows: list[tuple[dict[str, Any], WorkflowSent]] = field(default_factory=list)
    chains: list[tuple[dict[str, Any], ChainSent]] = field(default_factory=list)

    def expected(
        self, items: Mapping[str, Mapping[str, Any]], workflows: list[WorkflowSent], chains: list[ChainSent]
    ) -> list[Expected]:
        """What check_tasks must hold of every task the accepted `workflows` and `chains` made: children and
        roots (which must exist), and the steps, `then`s and callback tasks that do."""
        accepted = {sent.id for sent in workflows} | {sent.root for sent in chains}
        expected: list[Expected] = []
        for body, workflow in self.workflows:
            if workflow.id not in accepted:
                continue
            for child in body["children"]:
                expected.append(_expected(child["id"], child["payload"]))
            if then_id(workflow.id) in items:
                expected.append(Expected(then_id(workflow.id), result={"sleptMs": 0}))
        for body, chain in self.chains:
            if chain.root not in accepted:
                continue
            expected.append(_expected(chain.root, body["payload"]))
            for number, step in enumerate(body["then"], start=1):
                if step_id(chain.root, number) in items:
                    expected.append(_expected(step_id(chain.root, number), step["payload"], stored=False))
        expected += [
            Expected(task_id, result={"status": 200})
            for task_id, item in items.items()
            if item.get("type") == "callback"
        ]
        return expected


def _expected(task_id: str, payload: dict[str, Any], stored: bool = True) -> Expected:
    """A simulate task's expectations; `stored`: its payload is kept as sent (a step's gains `previous`)."""
    simulation = payload["simulation"]
    return Expected(
        task_id,
        always_fails=simulation["failureChance"] == 1.0,
        payload=payload if stored else None,
        result={"sleptMs": simulation["executionTime"]},
    )


def make_compose(run_id: str, options: ComposeOptions, callback_url: str | None, rng: random.Random) -> ComposePlan:
    """The workflows and chains of a run. Workflows alternate `fail` and `continue`, the first of each
    policy holding a child that always fails; the even ones and the first `continue` have a callback. Chains take 2 or 3
    steps; every third one's first step always fails, so the chain ends in its middle."""
    plan = ComposePlan()
    for number in range(options.workflows):
        workflow_id = f"chaos-{run_id}-wf-{number}"
        size = options.sizes[number % len(options.sizes)]
        policy = POLICIES[number % 2]
        doomed = size // 3 if number < 2 else None
        children = [
            {
                "id": f"{workflow_id}/{n}",
                "type": "simulate",
                "payload": {"simulation": _simulation(rng, 1.0 if n == doomed else None), "n": n},
            }
            for n in range(1, size + 1)
        ]
        body: dict[str, Any] = {
            "id": workflow_id,
            "children": children,
            "then": {"type": "simulate", "payload": {"simulation": {"executionTime": 0, "failureChance": 0.0}}},
            "onChildFailure": policy,
        }
        if callback_url is not None and (number % 2 == 0 or number == 1):
            body["callback"] = {"url": callback_url}
        sent = WorkflowSent(workflow_id, tuple(child["id"] for child in children), policy, "callback" in body)
        plan.workflows.append((body, sent))
    for number in range(options.chains):
        root = f"chaos-{run_id}-chain-{number}"
        steps = 2 + number % 2
        fails_in_middle = number % 3 == 0
        then = [
            {"type": "simulate", "payload": {"simulation": _simulation(rng, 1.0 if doomed else None), "n": n}}
            for n, doomed in ((n, fails_in_middle and n == 1) for n in range(1, steps + 1))
        ]
        body = {"id": root, "type": "simulate", "payload": {"simulation": _simulation(rng, 0.0), "n": 0}, "then": then}
        plan.chains.append((body, ChainSent(root, steps)))
    return plan


@dataclass
class ComposeDriver:
    """Sends a ComposePlan, each POST again until an API answers it; keeps what was accepted."""

    api_url: str
    plan: ComposePlan
    say: Callable[[str], None]
    workflows: list[WorkflowSent] = field(default_factory=list)
    chains: list[ChainSent] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # ids no API accepted, with the last answer

    def send(self) -> None:
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            chains = [pool.submit(self._chain, body, sent) for body, sent in self.plan.chains]
            for body, sent in self.plan.workflows:
                self._workflow(body, sent)
            for chain in chains:
                chain.result()
        self.say(
            f"published {len(self.workflows)}/{len(self.plan.workflows)} workflows and "
            f"{len(self.chains)}/{len(self.plan.chains)} chains"
        )

    def _workflow(self, body: dict[str, Any], sent: WorkflowSent) -> None:
        if self._post("/workflows", body):
            self.workflows.append(sent)

    def _chain(self, body: dict[str, Any], sent: ChainSent) -> None:
        if self._post("/publish", body):
            self.chains.append(sent)

    def _post(self, path: str, body: dict[str, Any]) -> bool:
        """POST until a 201; a 503, or an API that died under the request, is tried again."""
        deadline = time.monotonic() + PATIENCE_SECONDS
        last = "no answer"
        with requests.Session() as http:
            while time.monotonic() < deadline:
                try:
                    response = http.post(f"{self.api_url}{path}", json=body, timeout=HTTP_TIMEOUT_SECONDS)
                except requests.RequestException:
                    time.sleep(PAUSE_SECONDS)
                    continue
                if response.status_code == 201:
                    return True
                last = f"{response.status_code} {response.text[:200]}"
                if response.status_code != 503:
                    break
                time.sleep(PAUSE_SECONDS)
        self.refused.append(f"{body['id']}: {last}")
        self.say(f"not accepted: {body['id']}: {last}")
        return False
