"""The workflow, chain and callback invariants on hand-made records: each fires on what it names, not on health."""

from __future__ import annotations

import json
from typing import Any

from tools.chaos.compose_invariants import (
    CANCEL_SLACK_SECONDS,
    ChainSent,
    ComposeFigures,
    WorkflowSent,
    check_callbacks,
    check_chains,
    check_workflows,
    compose_pending,
)
from tools.chaos.invariants import Findings
from tools.chaos.receiver import Delivery


def _at(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    return f"2026-12-01T12:{int(minutes):02d}:{rest:06.3f}Z"


def task(
    task_id: str, status: str, outcomes: tuple[str, ...] = ("succeeded",), start: float = 0.0, **extra: Any
) -> dict[str, Any]:
    """An item whose attempts, one second apart from `start`, ended in `outcomes`."""
    history: list[dict[str, Any]] = [
        {"attempt": n, "startedAt": _at(start + n - 1), "finishedAt": _at(start + n - 0.5), "outcome": outcome}
        for n, outcome in enumerate(outcomes, start=1)
    ]
    item: dict[str, Any] = {
        "id": task_id,
        "status": status,
        "history": history,
        "attempts": len(history),
        "createdAt": _at(start),
        "payload": {},
    }
    if status in {"COMPLETED", "FAILED", "CANCELLED"}:
        item["finishedAt"] = _at(start + len(outcomes))
    if status == "COMPLETED":
        item["result"] = json.dumps({"sleptMs": 0})
    return {**item, **extra}


def items_of(*tasks: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["id"]: t for t in tasks}


def then_of(workflow_id: str, children: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    outcomes = [
        {"id": c["id"], "status": c["status"], "result": {"sleptMs": 0}}
        if c["status"] == "COMPLETED"
        else {"id": c["id"], "status": c["status"], "lastError": "x"}
        for c in children
    ]
    return task(f"{workflow_id}/then", "COMPLETED", start=30, payload={"children": outcomes}, **extra)


def workflows(sent: WorkflowSent, items: dict[str, dict[str, Any]]) -> tuple[Findings, ComposeFigures]:
    findings, figures = Findings(), ComposeFigures()
    check_workflows([sent], items, findings, figures)
    return findings, figures


WF = WorkflowSent("wf", ("wf/1", "wf/2", "wf/3"), "continue")


def _children(*statuses: str) -> list[dict[str, Any]]:
    outcome = {"COMPLETED": ("succeeded",), "FAILED": ("failed",), "CANCELLED": ()}
    return [task(f"wf/{n}", status, outcome[status]) for n, status in enumerate(statuses, start=1)]


def test_a_continue_workflow_whose_then_ran_once_with_every_outcome_breaks_nothing() -> None:
    children = _children("COMPLETED", "FAILED", "COMPLETED")
    findings, figures = workflows(WF, items_of(*children, then_of("wf", children)))
    assert findings.broken() == {}
    assert (figures.thens, figures.workflow_ends) == (1, {"COMPLETED": 1})


def test_a_workflow_whose_children_all_ended_without_then_is_then_not_once() -> None:
    findings, _ = workflows(WF, items_of(*_children("COMPLETED", "FAILED", "COMPLETED")))
    assert findings.then_not_once == ["wf"]


def test_a_then_that_succeeded_twice_is_then_not_once() -> None:
    children = _children("COMPLETED", "COMPLETED", "COMPLETED")
    twice = then_of("wf", children, history=task("x", "COMPLETED", ("succeeded", "succeeded"))["history"])
    findings, _ = workflows(WF, items_of(*children, twice))
    assert findings.then_not_once == ["wf"]


def test_a_fail_workflow_with_a_failed_child_that_ran_then_is_then_not_once() -> None:
    sent = WorkflowSent("wf", WF.children, "fail")
    children = _children("COMPLETED", "FAILED", "COMPLETED")
    findings, figures = workflows(sent, items_of(*children, then_of("wf", children)))
    assert findings.then_not_once == ["wf"]
    findings, figures = workflows(sent, items_of(*children))
    assert findings.broken() == {}
    assert figures.workflow_ends == {"FAILED": 1}


def test_a_then_given_a_child_not_yet_ended_or_out_of_order_is_then_early() -> None:
    children = _children("COMPLETED", "COMPLETED", "COMPLETED")
    early = then_of("wf", [*children[:2], {**children[2], "status": "RETRYING"}])
    assert workflows(WF, items_of(*children, early))[0].then_early == ["wf"]
    shuffled = then_of("wf", [children[1], children[0], children[2]])
    assert workflows(WF, items_of(*children, shuffled))[0].then_early == ["wf"]


def test_a_child_that_started_long_after_its_workflow_failed_unasked_to_stop_is_not_cancelled() -> None:
    sent = WorkflowSent("wf", ("wf/1", "wf/2", "wf/3"), "fail")
    failed = task("wf/1", "FAILED", ("failed",))  # finished at 1 s
    late = CANCEL_SLACK_SECONDS + 5
    ran_on = task("wf/2", "COMPLETED", start=late)
    stopped = task("wf/3", "CANCELLED", (), start=late, history=[{"kind": "cancel", "at": _at(2), "by": "workflow wf"}])
    findings, figures = workflows(sent, items_of(failed, ran_on, stopped))
    assert findings.not_cancelled == ["wf/2"]
    assert figures.cancelled_children == 1
    assert figures.workflow_ends == {"FAILED": 1}


def test_a_workflow_with_a_child_still_running_is_pending_and_not_judged() -> None:
    children = [*_children("COMPLETED", "COMPLETED"), task("wf/3", "PROCESSING", ())]
    findings, _ = workflows(WF, items_of(*children))
    assert findings.broken() == {}
    assert compose_pending([WF], [], items_of(*children)) == ["wf"]


CHAIN = ChainSent("c", 2)


def chains(items: dict[str, dict[str, Any]]) -> Findings:
    findings = Findings()
    check_chains([CHAIN], items, findings, ComposeFigures())
    return findings


def _step(number: int, status: str, start: float, previous: Any = None, **extra: Any) -> dict[str, Any]:
    outcomes = ("succeeded",) if status == "COMPLETED" else ("failed",)
    payload = {"previous": {"sleptMs": 0} if previous is None else previous}
    return task(f"c/then/{number}", status, outcomes, start=start, payload=payload, **extra)


def test_a_chain_whose_steps_each_followed_a_completion_breaks_nothing() -> None:
    items = items_of(task("c", "COMPLETED"), _step(1, "COMPLETED", 5), _step(2, "COMPLETED", 10))
    assert chains(items).broken() == {}
    assert compose_pending([], [CHAIN], items) == []


def test_a_step_after_a_failed_task_is_step_after_end() -> None:
    items = items_of(task("c", "COMPLETED"), _step(1, "FAILED", 5), _step(2, "COMPLETED", 10))
    assert chains(items).step_after_end == ["c/then/2"]
    assert chains(items_of(task("c", "FAILED", ("failed",)), _step(1, "COMPLETED", 5))).step_after_end == ["c/then/1"]


def test_a_completed_task_whose_next_step_never_came_is_chain_lost() -> None:
    items = items_of(task("c", "COMPLETED"), _step(1, "COMPLETED", 5))
    assert chains(items).chain_lost == ["c/then/2"]
    assert compose_pending([], [CHAIN], items) == ["c/then/2"]


def test_a_step_built_from_another_result_made_early_run_twice_or_past_the_chain_is_step_twice() -> None:
    root = task("c", "COMPLETED")
    assert chains(items_of(root, _step(1, "COMPLETED", 5, previous={"sleptMs": 7}))).step_twice == ["c/then/1"]
    assert chains(items_of(root, _step(1, "COMPLETED", 0.5))).step_twice == ["c/then/1"]  # before root finished
    twice = _step(1, "COMPLETED", 5, history=task("x", "COMPLETED", ("succeeded", "succeeded"), start=5)["history"])
    assert chains(items_of(root, twice)).step_twice == ["c/then/1"]
    past = items_of(root, _step(1, "COMPLETED", 5), _step(2, "COMPLETED", 10), _step(3, "COMPLETED", 15))
    assert chains(past).step_twice == ["c/then/3: past the chain's 2 steps"]


def delivery(delivery_id: str, status: str, accepted: bool = True, **extra: Any) -> Delivery:
    fields: dict[str, Any] = {
        "id": delivery_id,
        "status": status,
        "body": json.dumps({"id": delivery_id, "status": status}).encode(),
        "signed": True,
        "answered": 200 if accepted else 500,
        "accepted": accepted,
        "repeat": False,
        "at": 0.0,
    }
    return Delivery(**{**fields, **extra})


def callbacks(
    items: dict[str, dict[str, Any]], deliveries: list[Delivery], sent: tuple[WorkflowSent, ...] = ()
) -> tuple[Findings, ComposeFigures]:
    findings, figures = Findings(), ComposeFigures()
    check_callbacks(items, sent, deliveries, findings, figures)
    return findings, figures


URL = {"url": "http://127.0.0.1:1/callbacks"}


def test_a_callback_refused_once_then_delivered_breaks_nothing_and_counts_its_retry() -> None:
    retried = task("t/callback", "COMPLETED", ("failed", "succeeded"))
    items = items_of(task("t", "FAILED", ("failed",), callback=URL), retried)
    findings, figures = callbacks(items, [delivery("t", "FAILED", accepted=False), delivery("t", "FAILED")])
    assert findings.broken() == {}
    assert (figures.callbacks, figures.delivered, figures.refused, figures.callbacks_retried) == (1, 1, 1, 1)


def test_a_terminal_task_without_a_delivery_or_a_failed_callback_task_is_callback_missing() -> None:
    items = items_of(task("t", "COMPLETED", callback=URL), task("t/callback", "COMPLETED"))
    assert callbacks(items, [])[0].callback_missing == ["t"]
    assert callbacks(items_of(task("t", "COMPLETED", callback=URL)), [])[0].callback_missing == ["t"]
    visible = items_of(task("t", "COMPLETED", callback=URL), task("t/callback", "FAILED", ("failed",) * 3))
    findings, figures = callbacks(visible, [delivery("t", "COMPLETED", accepted=False)] * 3)
    assert findings.broken() == {}
    assert figures.callbacks_failed == 1


def test_a_delivery_with_a_status_the_task_never_ended_in_another_body_or_an_unknown_id_is_callback_wrong() -> None:
    items = items_of(task("t", "COMPLETED", callback=URL), task("t/callback", "COMPLETED", ("failed", "succeeded")))
    assert callbacks(items, [delivery("t", "FAILED")])[0].callback_wrong == ["t: delivered FAILED, ended ['COMPLETED']"]
    two = [delivery("t", "COMPLETED", accepted=False), delivery("t", "COMPLETED", body=b'{"other": 1}')]
    assert callbacks(items, two)[0].callback_wrong == ["t: 2 different bodies, 1 callback tasks"]
    stranger = callbacks(items, [delivery("t", "COMPLETED"), delivery("nobody", "COMPLETED")])[0]
    assert stranger.callback_wrong == ["nobody: delivered, but no terminal task or workflow has a callback"]
    findings, figures = Findings(), ComposeFigures()
    check_callbacks(
        items, (), [delivery("t", "COMPLETED"), delivery("nobody", "COMPLETED")], findings, figures, ["nobody"]
    )
    assert findings.callback_wrong == []  # a workflow whose POST was never answered: no stranger


def test_a_task_retried_after_its_callback_is_called_back_once_more_by_its_second_callback_task() -> None:
    ended_twice = task("t", "COMPLETED", ("failed", "succeeded"), callback=URL)
    first, second = task("t/callback", "COMPLETED"), task("t/callback/2", "COMPLETED")
    bodies = [delivery("t", "COMPLETED", body=b'{"end": 1}'), delivery("t", "COMPLETED", body=b'{"end": 2}')]
    assert callbacks(items_of(ended_twice, first, second), bodies)[0].broken() == {}
    one_task = callbacks(items_of(ended_twice, first), bodies)[0]
    assert one_task.callback_wrong == ["t: 2 different bodies, 1 callback tasks"]
    assert one_task.callback_repeated == ["t: 2 requests, 1 attempts"]


def test_a_delivery_whose_signature_did_not_verify_is_callback_unsigned() -> None:
    items = items_of(task("t", "COMPLETED", callback=URL), task("t/callback", "COMPLETED"))
    findings, _ = callbacks(items, [delivery("t", "COMPLETED", signed=False, accepted=False, answered=400)])
    assert findings.callback_unsigned == ["t"]
    assert findings.callback_missing == ["t"]


def test_more_deliveries_of_an_id_than_its_callback_task_made_attempts_is_callback_repeated() -> None:
    items = items_of(task("t", "COMPLETED", callback=URL), task("t/callback", "COMPLETED", ("failed", "succeeded")))
    lost_answer = [delivery("t", "COMPLETED"), delivery("t", "COMPLETED", repeat=True)]
    findings, figures = callbacks(items, lost_answer)
    assert findings.broken() == {}
    assert figures.accepted_repeats == 1
    findings, _ = callbacks(items, [*lost_answer, delivery("t", "COMPLETED", repeat=True)])
    assert findings.callback_repeated == ["t: 3 requests, 2 attempts"]


def test_a_workflow_callback_must_carry_the_status_its_policy_ended_it_in() -> None:
    sent = WorkflowSent("wf", ("wf/1", "wf/2"), "fail", callback=True)
    children = [task("wf/1", "FAILED", ("failed",)), task("wf/2", "CANCELLED", ())]
    items = items_of(*children, task("wf/callback", "COMPLETED"))
    assert callbacks(items, [delivery("wf", "FAILED")], (sent,))[0].broken() == {}
    assert callbacks(items, [delivery("wf", "COMPLETED")], (sent,))[0].callback_wrong == [
        "wf: delivered COMPLETED, ended ['FAILED']"
    ]
    assert compose_pending([sent], [], items_of(*children)) == ["wf/callback"]
