"""What workflows, chains and completion callbacks must hold after chaos, checked on the table and the receiver.

Pure functions over plain values: the task items as the table holds them (deserialized, `payload`
parsed), what the run sent (`WorkflowSent`, `ChainSent`) and what the callback receiver recorded of
every request it answered (`Delivery`, tools/chaos/receiver.py). Nothing here reads taskproc's own
counts, logs or views: a workflow's outcome is derived from its children's items, a chain's from
its steps' items, a callback's delivery from the receiver's records.

- **`then` exactly once.** Once every child of a workflow is terminal, its policy decides: with
  `fail` and a child FAILED (else CANCELLED) the workflow ended FAILED (CANCELLED), `<wf>/then` must
  not exist, and no child may have started long after the failure without the workflow having
  asked it to stop; otherwise `<wf>/then` exists, COMPLETED with one successful attempt (the chaos
  `then` never fails), and its `children` list every child, in order, each terminal and, for a
  child never retried, in the status it has now.
- **Chain steps.** Step n of `<root>` exists exactly when the task before it COMPLETED; it was
  created after that completion, from that task's result (`previous`), ran at most one successful
  attempt, and no step past the chain's length exists.
- **Callbacks.** Every terminal task (and decided workflow) with a callback was delivered (the
  receiver accepted a signed body with its id and a status it ended in) or has a visible FAILED
  `<id>/callback` task (or a later end's `<id>/callback/<n>`). Every request the receiver saw was
  signed. One end has one body: taskproc publishes one callback task per end of a task (the first
  end's `<id>/callback`, the end after an operator's (n-1)-th retry `<id>/callback/<n>`,
  docs/workflows.md), whose every attempt sends the same bytes, so an id may carry no more
  different bodies than it has callback tasks. A body may be accepted more than once (the
  receiver deduplicates by id and `finishedAt`): only after an attempt whose answer the sender did
  not get (a slow answer, a killed worker, a fault on the completion's write), so the receiver may
  see no more requests for an id than its callback tasks made attempts.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tools.chaos.invariants import TERMINAL, Findings, is_attempt, runs
from tools.chaos.receiver import Delivery

Item = Mapping[str, Any]
# The fan-out of a failed workflow's cancels may wait for the failed child's message to come back
# (a kill, a fault): a child that started this long after the failure was not stopped by it.
CANCEL_SLACK_SECONDS = 20.0


@dataclass(frozen=True)
class WorkflowSent:
    """A workflow `POST /workflows` accepted."""

    id: str
    children: tuple[str, ...]
    policy: str  # "fail" or "continue"
    callback: bool = False


@dataclass(frozen=True)
class ChainSent:
    """A task published with `steps` chain steps."""

    root: str
    steps: int


@dataclass
class ComposeFigures:
    workflows: int = 0
    workflow_ends: dict[str, int] = field(default_factory=dict)  # by status: COMPLETED (then ran), FAILED, ...
    children: int = 0
    cancelled_children: int = 0  # children a failed workflow cancelled
    thens: int = 0  # `then` tasks that ran
    chains: int = 0
    steps_published: int = 0
    chains_ended_early: int = 0  # a step (or the root) did not complete, and the chain stopped there
    callbacks: int = 0  # terminal tasks and decided workflows with a callback
    delivered: int = 0
    callbacks_failed: int = 0  # undelivered, with a visible FAILED callback task
    deliveries: int = 0  # requests the receiver answered
    refused: int = 0  # answered non-2xx to a signed body (its planned 500s)
    accepted_repeats: int = 0  # accepted again, for an id already accepted (deduplicated)
    callbacks_retried: int = 0  # callback tasks with more than one attempt


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _parsed(item: Item, name: str) -> Any:
    raw = item.get(name)
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def _succeeded(item: Item) -> int:
    return sum(1 for e in item.get("history") or [] if is_attempt(e) and e.get("outcome") == "succeeded")


def _attempt_entries(item: Item | None) -> int:
    return sum(1 for e in (item or {}).get("history") or [] if is_attempt(e))


def _retried(item: Item) -> bool:
    return any(entry.get("kind") == "retry" for entry in item.get("history") or [])


def then_id(workflow_id: str) -> str:
    return f"{workflow_id}/then"


def callback_id(task_id: str) -> str:
    return f"{task_id}/callback"


_CALLBACK_TASK = re.compile(r"(?P<of>.+)/callback(?:/(?P<n>[0-9]+))?")


def callback_tasks(items: Mapping[str, Item]) -> dict[str, list[Item]]:
    """Every callback task in the table, by the id of the task (or workflow) whose ends it delivers."""
    by_task: dict[str, list[Item]] = defaultdict(list)
    for key, item in items.items():
        matched = _CALLBACK_TASK.fullmatch(key)
        if matched and item.get("type", "callback") == "callback":
            by_task[matched["of"]].append(item)
    return by_task


def step_id(root: str, number: int) -> str:
    return f"{root}/then/{number}"


def workflow_outcome(workflow: WorkflowSent, items: Mapping[str, Item]) -> str | None:
    """What the workflow must have come to, from its children's statuses: "FAILED" or "CANCELLED" (by its
    `fail` policy: `then` never runs), "then" (`then` must run), or None while a child is not terminal."""
    statuses = [items.get(child, {}).get("status") for child in workflow.children]
    if any(status not in TERMINAL for status in statuses):
        return None
    if workflow.policy == "fail" and "FAILED" in statuses:
        return "FAILED"
    if workflow.policy == "fail" and "CANCELLED" in statuses:
        return "CANCELLED"
    return "then"


def workflow_status(workflow: WorkflowSent, items: Mapping[str, Item]) -> str | None:
    """The workflow's terminal status, once decided: its policy's, or its `then` task's once that ended."""
    outcome = workflow_outcome(workflow, items)
    if outcome != "then":
        return outcome
    then = items.get(then_id(workflow.id))
    return then.get("status") if then is not None and then.get("status") in TERMINAL else None


def _then_payload_wrong(workflow: WorkflowSent, then: Item, items: Mapping[str, Item]) -> bool:
    """Whether `then` was given other children than the workflow's, in another order, or not yet ended."""
    payload = then.get("payload") or {}
    if "childrenOf" in payload:
        return payload["childrenOf"] != workflow.id  # over the payload cap: it reads them itself
    given = payload.get("children")
    if not isinstance(given, list) or [c.get("id") for c in given] != list(workflow.children):
        return True
    for outcome in given:
        child = items.get(outcome["id"], {})
        if outcome.get("status") not in TERMINAL:
            return True
        if not _retried(child) and outcome.get("status") != child.get("status"):
            return True
        if (outcome.get("status") == "COMPLETED") != ("result" in outcome):
            return True
    return False


def _ran_on_after_failure(workflow: WorkflowSent, items: Mapping[str, Item]) -> list[str]:
    """Children of a workflow its `fail` policy ended that started an attempt well after the failure, unasked
    to stop (a child PENDING or RETRYING then is cancelled, one PROCESSING asked to stop: each has an entry)."""
    children = [items.get(child, {}) for child in workflow.children]
    failures = [
        _instant(child["finishedAt"])
        for child in children
        if child.get("status") == "FAILED" and child.get("finishedAt") and not _retried(child)
    ]
    if not failures:
        return []
    failed_at = min(failures)
    asked = f"workflow {workflow.id}"
    late = []
    for child in children:
        if _retried(child) or not child:
            continue
        history = child.get("history") or []
        if any(entry.get("by") == asked for entry in history):
            continue
        starts = [_instant(entry["startedAt"]) for entry in history if is_attempt(entry)]
        if starts and (max(starts) - failed_at).total_seconds() > CANCEL_SLACK_SECONDS:
            late.append(str(child.get("id")))
    return late


def check_workflows(
    workflows: Iterable[WorkflowSent], items: Mapping[str, Item], findings: Findings, figures: ComposeFigures
) -> None:
    """Fill `then-not-once`, `then-early` and `not-cancelled` for every workflow whose children are all terminal."""
    ends: dict[str, int] = defaultdict(int)
    for workflow in workflows:
        figures.workflows += 1
        figures.children += len(workflow.children)
        figures.cancelled_children += sum(
            1
            for child in workflow.children
            if any(entry.get("by") == f"workflow {workflow.id}" for entry in items.get(child, {}).get("history") or [])
        )
        outcome = workflow_outcome(workflow, items)
        if outcome is None:
            continue  # a child not terminal: `stuck` or `lost` says so
        then = items.get(then_id(workflow.id))
        if outcome == "then":
            if then is None or then.get("status") != "COMPLETED" or _succeeded(then) != 1:
                findings.then_not_once.append(workflow.id)
            elif _then_payload_wrong(workflow, then, items):
                findings.then_early.append(workflow.id)
            else:
                figures.thens += 1
            ends[str(then.get("status")) if then else "no then"] += 1
            continue
        ends[outcome] += 1
        if then is not None:
            findings.then_not_once.append(workflow.id)
        if outcome == "FAILED":
            findings.not_cancelled += _ran_on_after_failure(workflow, items)
    figures.workflow_ends = dict(sorted(ends.items()))


def check_chains(
    chains: Iterable[ChainSent], items: Mapping[str, Item], findings: Findings, figures: ComposeFigures
) -> None:
    """Fill `step-twice`, `step-after-end` and `chain-lost` for every chain."""
    for chain in chains:
        figures.chains += 1
        before = last = items.get(chain.root)
        for number in range(1, chain.steps + 2):
            step = items.get(step_id(chain.root, number))
            if number > chain.steps:
                if step is not None:
                    findings.step_twice.append(f"{step_id(chain.root, number)}: past the chain's {chain.steps} steps")
                break
            completed = before is not None and before.get("status") == "COMPLETED"
            if step is None:
                if completed:
                    findings.chain_lost.append(step_id(chain.root, number))
                before = None
                continue
            figures.steps_published += 1
            if not completed:
                findings.step_after_end.append(step_id(chain.root, number))
            elif before is not None and _step_misbuilt(step, before):
                findings.step_twice.append(step_id(chain.root, number))
            if _succeeded(step) > 1:
                findings.step_twice.append(step_id(chain.root, number))
            before = last = step
        figures.chains_ended_early += last is not None and last.get("status") in TERMINAL - {"COMPLETED"}


def _step_misbuilt(step: Item, before: Item) -> bool:
    """Whether a step was created before the task before it completed, or from another result than its own."""
    created, finished = step.get("createdAt"), before.get("finishedAt")
    if created and finished and _instant(created) < _instant(finished):
        return True
    previous = (step.get("payload") or {}).get("previous")
    return previous != _parsed(before, "result")


def _statuses_it_ended_in(item: Item) -> set[str]:
    return {str(run.end_status) for run in runs(item.get("history") or [], item.get("status"))} & TERMINAL


def check_callbacks(
    items: Mapping[str, Item],
    workflows: Iterable[WorkflowSent],
    deliveries: Sequence[Delivery],
    findings: Findings,
    figures: ComposeFigures,
    half_made: Iterable[str] = (),
) -> None:
    """Fill `callback-missing`, `callback-wrong`, `callback-unsigned` and `callback-repeated`.

    `half_made`: the ids of workflows in the table whose POST no API accepted (the run gave up on it):
    nothing is promised of them, but a delivery of theirs is no stranger's.
    """
    by_id: dict[str, list[Delivery]] = defaultdict(list)
    for delivery in deliveries:
        figures.deliveries += 1
        if not delivery.signed:
            findings.callback_unsigned.append(str(delivery.id))
            continue
        if delivery.id is not None:
            by_id[delivery.id].append(delivery)
        figures.refused += not delivery.accepted
        figures.accepted_repeats += delivery.repeat
    # id -> the statuses its callback may carry
    expected: dict[str, set[str]] = {}
    for task_id, item in items.items():
        if item.get("callback") and item.get("status") in TERMINAL:
            expected[task_id] = _statuses_it_ended_in(item)
    for workflow in workflows:
        status = workflow_status(workflow, items) if workflow.callback else None
        if status is None:
            continue
        reopened = any(_retried(items.get(child, {})) for child in workflow.children)
        expected[workflow.id] = set(TERMINAL) if reopened else {status}
    delivering = callback_tasks(items)
    for task_id, statuses in sorted(expected.items()):
        figures.callbacks += 1
        accepted = [delivery for delivery in by_id.get(task_id, []) if delivery.accepted]
        tasks = delivering.get(task_id, [])
        if any(_attempt_entries(task) > 1 for task in tasks):
            figures.callbacks_retried += 1
        if not accepted:
            if any(task.get("status") == "FAILED" for task in tasks):
                figures.callbacks_failed += 1
            else:
                findings.callback_missing.append(task_id)
            continue
        figures.delivered += 1
        if any(delivery.status not in statuses for delivery in accepted):
            findings.callback_wrong.append(f"{task_id}: delivered {accepted[0].status}, ended {sorted(statuses)}")
    known = {*expected, *half_made}
    for task_id, received in sorted(by_id.items()):
        if task_id not in known:
            findings.callback_wrong.append(f"{task_id}: delivered, but no terminal task or workflow has a callback")
        tasks = delivering.get(task_id, [])
        bodies = len({delivery.body for delivery in received})
        if bodies > max(1, len(tasks)):
            findings.callback_wrong.append(f"{task_id}: {bodies} different bodies, {len(tasks)} callback tasks")
        attempts = sum(_attempt_entries(task) for task in tasks)
        if len(received) > attempts:
            findings.callback_repeated.append(f"{task_id}: {len(received)} requests, {attempts} attempts")


def compose_pending(
    workflows: Iterable[WorkflowSent], chains: Iterable[ChainSent], items: Mapping[str, Item]
) -> list[str]:
    """What is still on its way: a workflow's child or `then`, a chain's next step, a callback task not
    published yet. Empty once the compose work has settled (its tasks' own ends are `stranded`'s)."""
    waiting = []
    for workflow in workflows:
        outcome = workflow_outcome(workflow, items)
        if outcome is None:
            waiting.append(workflow.id)
        elif outcome == "then" and items.get(then_id(workflow.id), {}).get("status") not in TERMINAL:
            waiting.append(then_id(workflow.id))
        elif workflow.callback and workflow_status(workflow, items) and callback_id(workflow.id) not in items:
            waiting.append(callback_id(workflow.id))
    for chain in chains:
        before = items.get(chain.root)
        for number in range(1, chain.steps + 1):
            if before is None or before.get("status") != "COMPLETED":
                break
            before = items.get(step_id(chain.root, number))
            if before is None:
                waiting.append(step_id(chain.root, number))
    delivering = callback_tasks(items)
    for task_id, item in items.items():
        if item.get("callback") and item.get("status") in TERMINAL and task_id not in delivering:
            waiting.append(callback_id(task_id))
    return sorted(waiting)
