"""Chains over moto: `then` at publish, each step published as `<id>/then/<n>` once the task before it completes.

A step is a follow-up (chalicelib/consume/terminal.py): published after the COMPLETED write, again by any
delivery that finds the task terminal without it, under a fixed id written only if new. So duplicate
completions publish each step once, and a kill between the write and the step's publish loses nothing.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from chalice.test import Client
from pydantic import BaseModel, ConfigDict

from chalicelib.handlers import REGISTRY
from chalicelib.models import MAX_TASK_BYTES, Status
from chalicelib.registry import PermanentError, Registry, TaskType
from tests.conftest import FakeClock
from tests.integration.harness import SUCCEEDS, Harness
from tests.integration.lambda_sqs import Delivery, lambda_records
from tests.integration.test_callbacks import invoke_killed
from tests.integration.test_never_stranded import ProcessKilled, killed_after

JSON = {"Content-Type": "application/json"}
DOOMED = {"simulation": {"failureChance": 1, "permanentFailure": True}}


class MergePayload(BaseModel):
    """A step type that reads `previous`: it declares it."""

    model_config = ConfigDict(extra="forbid", strict=True)

    label: str
    previous: Any


class StrictPayload(BaseModel):
    """A step type that would refuse `previous`: it gets its payload as given."""

    model_config = ConfigDict(extra="forbid", strict=True)

    label: str


def merge(payload: MergePayload, context: Any) -> dict[str, Any]:
    return {"label": payload.label, "previous": payload.previous}


class Flaky:
    """A type that fails for good while `failing` is set, then succeeds."""

    def __init__(self) -> None:
        self.failing = True

    def __call__(self, payload: dict[str, Any], context: Any) -> str:
        if self.failing:
            raise PermanentError("down for now")
        return "recovered"


@pytest.fixture
def flaky() -> Flaky:
    return Flaky()


@pytest.fixture
def h(client: Client, runtime: Any, clock: FakeClock, flaky: Flaky) -> Harness:
    registry = Registry()
    for name in REGISTRY.names():
        registry.register(REGISTRY.get(name))  # type: ignore[arg-type]
    registry.register(TaskType("merge", merge, payload=MergePayload))
    registry.register(TaskType("strict", lambda payload, context: payload.label, payload=StrictPayload))
    registry.register(TaskType("flaky", flaky))
    registry.register(TaskType("big", lambda payload, context: "r" * (30 * 1024)))
    runtime.registry = registry
    return Harness(client, runtime, clock)


def post(h: Harness, path: str, body: Any) -> Any:
    return h.client.http.post(path, body=json.dumps(body), headers=JSON)


def publish(h: Harness, task_id: str, then: list[dict[str, Any]], payload: Any = SUCCEEDS, **extra: Any) -> None:
    response = post(h, "/publish", {"id": task_id, "payload": payload, "then": then, **extra})
    assert response.status_code == 201, response.body


def view(h: Harness, task_id: str) -> dict[str, Any]:
    response = h.client.http.get(f"/tasks/{task_id.replace('/', '%2F')}")
    assert response.status_code == 200, response.body
    return json.loads(response.body)


def states(h: Harness, task_id: str) -> list[tuple[str, str]]:
    return [(step["id"], step["state"]) for step in view(h, task_id)["then"]]


def drain(h: Harness, rounds: int = 12) -> None:
    """Deliver until the task queue has nothing visible left (each round one batch)."""
    for _ in range(rounds):
        if not h.deliver().records:
            return
    raise AssertionError("the queue did not drain")


def sends_by_id(h: Harness) -> Counter[str]:
    """Every task message sent from now on, counted by the task id in its body."""
    sent: Counter[str] = Counter()

    def count(params: dict[str, Any], **_: Any) -> None:
        sent[json.loads(params["MessageBody"])["id"]] += 1

    h.sqs.meta.events.register("before-parameter-build.sqs.SendMessage", count)
    return sent


def test_a_chain_of_three_runs_in_order_each_step_given_the_result_before_it_as_previous(h: Harness) -> None:
    publish(h, "resize", [{"type": "merge", "payload": {"label": n}} for n in ("one", "two", "three")])
    assert states(h, "resize") == [(f"resize/then/{n}", "waiting") for n in (1, 2, 3)]
    drain(h)
    root = view(h, "resize")
    assert root["status"] == "COMPLETED"
    assert states(h, "resize") == [(f"resize/then/{n}", "published") for n in (1, 2, 3)]
    results = [root["result"]]
    for n, label in enumerate(("one", "two", "three"), start=1):
        step = view(h, f"resize/then/{n}")
        assert step["status"] == "COMPLETED" and step["type"] == "merge" and step["attempts"] == 1
        assert step["payload"] == {"label": label, "previous": results[-1]}
        assert step["result"] == {"label": label, "previous": results[-1]}
        results.append(step["result"])
    assert states(h, "resize/then/1") == [("resize/then/2", "published"), ("resize/then/3", "published")]
    assert view(h, "resize/then/3")["then"] is None  # the last step has none after it


def test_a_failure_in_the_middle_ends_the_chain_and_a_retry_that_completes_the_step_goes_on(
    h: Harness, flaky: Flaky
) -> None:
    publish(
        h,
        "mid",
        [{"type": "merge", "payload": {"label": "a"}}, {"type": "flaky"}, {"type": "merge", "payload": {"label": "c"}}],
    )
    drain(h)
    assert view(h, "mid/then/2")["status"] == "FAILED"
    assert h.rt.store.get("mid/then/3") is None
    assert states(h, "mid") == [("mid/then/1", "published"), ("mid/then/2", "published"), ("mid/then/3", "not_run")]
    assert states(h, "mid/then/1") == [("mid/then/2", "published"), ("mid/then/3", "not_run")]
    assert states(h, "mid/then/2") == [("mid/then/3", "not_run")]
    listed = json.loads(h.client.http.get("/tasks?status=FAILED").body)["tasks"]
    assert "mid/then/2" in {task["id"] for task in listed}  # an ordinary task: listed, and retried below

    flaky.failing = False
    assert post(h, "/tasks/mid%2Fthen%2F2/retry", {}).status_code == 202
    assert states(h, "mid/then/2") == [("mid/then/3", "waiting")]  # the chain is open again
    drain(h)
    assert view(h, "mid/then/2")["status"] == "COMPLETED"
    last = view(h, "mid/then/3")
    assert last["status"] == "COMPLETED" and last["payload"] == {"label": "c", "previous": "recovered"}
    assert [state for _, state in states(h, "mid")] == ["published"] * 3


@pytest.mark.parametrize("ending", ["failed", "cancelled"])
def test_a_task_that_fails_or_is_cancelled_publishes_no_step_and_shows_every_step_not_run(
    h: Harness, ending: str
) -> None:
    steps = [{"type": "merge", "payload": {"label": "a"}}, {"type": "merge", "payload": {"label": "b"}}]
    if ending == "failed":
        publish(h, "ended", steps, DOOMED)
    else:
        publish(h, "ended", steps)
        assert post(h, "/tasks/ended/cancel", {}).status_code == 200
    drain(h)
    assert view(h, "ended")["status"] == ending.upper()
    assert states(h, "ended") == [("ended/then/1", "not_run"), ("ended/then/2", "not_run")]
    assert h.rt.store.get("ended/then/1") is None


def test_a_step_cancelled_before_it_runs_ends_the_chain_there(h: Harness) -> None:
    publish(h, "cut", [{"type": "merge", "payload": {"label": "a"}}, {"type": "merge", "payload": {"label": "b"}}])
    h.deliver()  # the root completes; step 1 is published
    assert view(h, "cut/then/1")["status"] == "PENDING"
    assert post(h, "/tasks/cut%2Fthen%2F1/cancel", {}).status_code == 200
    drain(h)
    assert states(h, "cut") == [("cut/then/1", "published"), ("cut/then/2", "not_run")]
    assert h.rt.store.get("cut/then/2") is None


def test_duplicate_completion_deliveries_publish_each_step_once(h: Harness) -> None:
    sent = sends_by_id(h)
    publish(h, "twice", [{"type": "merge", "payload": {"label": "a"}}, {"type": "merge", "payload": {"label": "b"}}])
    root_body = json.dumps({"id": "twice", "payload": SUCCEEDS, "then": [{"type": "merge", "payload": {"label": "a"}}]})
    h.deliver()  # the root completes, step 1 is published
    for _ in range(3):  # copies of the root's message arrive after it completed
        h.send_raw(root_body)
    h.deliver()  # step 1 runs beside them; step 2 is published
    step_one = h.rt.store.get("twice/then/1")
    assert step_one is not None
    for _ in range(3):  # and copies of step 1's message too
        h.send_raw(step_one.task.message_body())
    drain(h)
    assert sent["twice/then/1"] == 1 + 3  # its publish, and the three copies sent here
    assert sent["twice/then/2"] == 1
    assert view(h, "twice/then/1")["attempts"] == 1 and view(h, "twice/then/2")["attempts"] == 1
    assert [state for _, state in states(h, "twice")] == ["published", "published"]


def test_a_kill_between_the_completion_write_and_the_step_s_send_delays_the_step_and_loses_nothing(
    h: Harness,
) -> None:
    publish(h, "killed", [{"type": "merge", "payload": {"label": "a"}}, {"type": "merge", "payload": {"label": "b"}}])
    invoke_killed(h, "SendMessage")  # the step's message is the consumer's first send
    assert h.rt.store.get("killed").status is Status.COMPLETED
    assert states(h, "killed") == [("killed/then/1", "waiting"), ("killed/then/2", "waiting")]
    drain(h)  # the root's message comes back, finds it COMPLETED, and publishes step 1
    assert [state for _, state in states(h, "killed")] == ["published", "published"]
    assert view(h, "killed/then/2")["status"] == "COMPLETED"
    assert view(h, "killed/then/1")["attempts"] == 1


def test_a_kill_between_the_step_s_send_and_its_item_runs_the_step_once(h: Harness) -> None:
    sent = sends_by_id(h)
    publish(h, "half", [{"type": "merge", "payload": {"label": "a"}}, {"type": "merge", "payload": {"label": "b"}}])
    delivery = Delivery(lambda_records(h.sqs, h.rt.tasks_queue.url))
    with killed_after(h.sqs, "SendMessage"), pytest.raises(ProcessKilled):  # step 1's message sent, not stored
        h.client.lambda_.invoke("process_tasks", {"Records": delivery.records})
    h.reveal(delivery)
    assert h.rt.store.get("half").status is Status.COMPLETED and h.rt.store.get("half/then/1") is None
    drain(h)
    one = view(h, "half/then/1")
    assert one["status"] == "COMPLETED" and one["attempts"] == 1
    assert one["then"] == [{"id": "half/then/2", "type": "merge", "state": "published"}]
    assert view(h, "half/then/2")["status"] == "COMPLETED"
    assert sent["half/then/2"] == 1


def test_previous_is_left_out_for_a_type_whose_model_would_refuse_it_and_given_to_simulate(h: Harness) -> None:
    publish(h, "kinds", [{"type": "strict", "payload": {"label": "s"}}, {"type": "simulate", "payload": SUCCEEDS}])
    drain(h)
    strict = view(h, "kinds/then/1")
    assert strict["status"] == "COMPLETED" and strict["payload"] == {"label": "s"}
    simulated = view(h, "kinds/then/2")
    assert simulated["status"] == "COMPLETED" and simulated["payload"] == {**SUCCEEDS, "previous": "s"}


def test_a_step_too_large_with_previous_is_stored_failed_visibly_and_ends_the_chain(h: Harness) -> None:
    padding = "p" * (MAX_TASK_BYTES - 20 * 1024)  # fits with the root; not with a 30 KiB `previous`
    publish(
        h,
        "heavy",
        [{"type": "simulate", "payload": {"pad": padding}}, {"type": "merge", "payload": {"label": "b"}}],
        {},
        type="big",
    )
    drain(h)
    assert view(h, "heavy")["status"] == "COMPLETED"
    step = view(h, "heavy/then/1")
    assert step["status"] == "FAILED" and step["attempts"] == 0
    assert "not published" in step["lastError"] and f"over the {MAX_TASK_BYTES} bytes" in step["lastError"]
    assert step["payload"] == {"pad": padding}  # as given, without `previous`
    assert states(h, "heavy") == [("heavy/then/1", "published"), ("heavy/then/2", "not_run")]
    failed = json.loads(h.client.http.get("/tasks?status=FAILED").body)["tasks"]
    assert "heavy/then/1" in {task["id"] for task in failed}


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        ({"then": [{"type": "nope"}]}, "then[0].type", "registered types"),
        ({"then": [{"type": "callback"}]}, "then[0].type", "registered types"),
        (
            {"then": [{"type": "merge", "payload": {"label": "a"}}, {"type": "merge", "payload": {}}]},
            "then[1].payload.label",
            "required",
        ),
        (
            {"then": [{"type": "merge", "payload": {"label": "a", "previous": 1}}]},
            "then[0].payload.previous",
            "left out",
        ),
        ({"then": [{"type": "simulate", "payload": {"previous": 1}}]}, "then[0].payload.previous", "left out"),
        (
            {"then": [{"type": "simulate", "payload": {"simulation": {"failureChance": 2}}}]},
            "then[0].payload.simulation.failureChance",
            "less than or equal",
        ),
        ({"then": [{"type": "merge", "payload": {"label": "a"}, "color": 1}]}, "then[0].color", "Extra inputs"),
        ({"then": []}, "then", "at least 1"),
        ({"then": [{"type": "simulate"}] * 11}, "then", "at most 10"),
        ({"then": {"type": "simulate"}}, "then", "valid list"),
        ({"id": "x" * 249, "then": [{"type": "simulate"}]}, "id", "/then/10"),
        ({"chain": {"root": "a", "step": 1}}, "chain", "Extra inputs"),
        ({"id": "mine/then/3"}, "id", "must not end in /then/"),
    ],
    ids=[
        "unknown-type",
        "reserved-type",
        "payload-field",
        "previous-declared",
        "previous-extra",
        "payload-rule",
        "extra-field",
        "empty",
        "eleven",
        "not-a-list",
        "id-too-long",
        "chain-is-taskproc-s",
        "a-step-s-id",
    ],
)
def test_a_publish_whose_chain_breaks_a_rule_is_a_400_naming_the_field_and_the_rule(
    h: Harness, body: dict[str, Any], field: str, rule: str
) -> None:
    response = post(h, "/publish", {"id": "refused", "payload": SUCCEEDS, **body})
    assert response.status_code == 400, response.body
    details = json.loads(response.body)["error"]["details"]
    assert any(d["field"] == field and rule in d["message"] for d in details), details
    assert h.rt.store.get(body.get("id", "refused")) is None


def test_a_step_of_a_type_that_declares_previous_needs_no_previous_at_publish(h: Harness) -> None:
    publish(h, "declared", [{"type": "merge", "payload": {"label": "a"}}])
    assert states(h, "declared") == [("declared/then/1", "waiting")]


def test_batch_entries_take_a_chain_and_a_refused_one_names_its_step(h: Harness) -> None:
    entries = [
        {"id": "b-ok", "payload": SUCCEEDS, "then": [{"type": "merge", "payload": {"label": "a"}}]},
        {"id": "b-bad", "payload": SUCCEEDS, "then": [{"type": "merge", "payload": {"label": "a"}}, {"type": "nope"}]},
    ]
    response = post(h, "/publish/batch", {"tasks": entries})
    assert response.status_code == 200, response.body
    ok, bad = json.loads(response.body)["results"]
    assert ok["status"] == "PENDING"
    assert [d["field"] for d in bad["error"]["details"]] == ["then[1].type"]
    drain(h)
    assert view(h, "b-ok/then/1")["payload"]["previous"] == view(h, "b-ok")["result"]
    assert h.rt.store.get("b-bad") is None


def test_a_chain_s_task_published_from_its_message_alone_keeps_its_chain(h: Harness) -> None:
    with killed_after(h.sqs, "SendMessage"), pytest.raises(ProcessKilled):  # the publish dies after its send
        post(
            h,
            "/publish",
            {"id": "adopted", "payload": SUCCEEDS, "then": [{"type": "merge", "payload": {"label": "a"}}]},
        )
    assert h.rt.store.get("adopted") is None
    drain(h)
    assert states(h, "adopted") == [("adopted/then/1", "published")]
    assert view(h, "adopted/then/1")["status"] == "COMPLETED"


def calls_of(h: Harness) -> Counter[str]:
    """Every DynamoDB and SQS call the functions make from now on, by operation name, and each read of
    the task table by the id it reads."""
    made: Counter[str] = Counter()
    tasks_table = h.rt.settings.TASKS_TABLE

    def count(params: dict[str, Any], model: Any, **_: Any) -> None:
        made[model.name] += 1
        if model.name == "GetItem" and params.get("TableName") == tasks_table:
            made[f"GetItem {params['Key']['id']['S']}"] += 1

    for client in (h.rt.store.client, h.rt.tasks_queue._client):
        client.meta.events.register("before-parameter-build", count)
    return made


def test_a_step_costs_its_publisher_two_reads_one_send_and_one_write_and_a_task_without_a_chain_nothing(
    h: Harness,
) -> None:
    publish(h, "plain", [{"type": "merge", "payload": {"label": "a"}}])
    h.client.http.post("/publish", body=json.dumps({"id": "bare", "payload": SUCCEEDS}), headers=JSON)
    records = lambda_records(h.sqs, h.rt.tasks_queue.url)
    assert len(records) == 2
    made = calls_of(h)
    h.client.lambda_.invoke("process_tasks", {"Records": records})  # both complete; only "plain" has a step
    task_table_reads = {call: n for call, n in made.items() if call.startswith("GetItem ")}
    # The hook reads the completed task's terminal item (chalicelib/consume/terminal.py, shared by its follow-ups),
    # then the step's existence check; the task without a chain is read by nobody.
    assert task_table_reads == {"GetItem plain": 1, "GetItem plain/then/1": 1}, made
    assert made["SendMessage"] == 1, made  # the step's message
    # Each task an acquire and a completion, and the step's conditional write: all UpdateItem.
    assert made["UpdateItem"] == 2 + 2 + 1, made
