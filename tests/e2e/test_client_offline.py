"""The Python client against `make run`'s stack over real HTTP: each built-in type published and waited
for, the ends a wait can meet, a batch of 250 with refused entries, the tag filter, the long poll's
promptness, and the README's example."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from taskproc_client import (
    Client,
    NotFound,
    Status,
    TaskFailed,
    TaskView,
    ValidationFailed,
    WaitTimeout,
    WorkflowStatus,
)

from tests.e2e.stack import ROOT, Stack, wait_until

pytestmark = pytest.mark.e2e

# Every registered type, with a payload that succeeds at once, and what its result holds.
BUILT_IN = {
    "simulate": ({"simulation": {"executionTime": 50, "failureChance": 0}}, {"sleptMs": 50}),
    "checksum": ({"text": "hello"}, {"algorithm": "sha256", "digest": hashlib.sha256(b"hello").hexdigest()}),
    "steps": ({"steps": 2, "stepMs": 100}, {"steps": 2}),
    "capped": ({"sleepMs": 10}, {"sleptMs": 10}),
    "per-customer": ({"sleepMs": 10, "customer": "c-1"}, {"sleptMs": 10}),
    "throttled": ({"sleepMs": 10}, {"sleptMs": 10}),
}


@pytest.fixture(scope="module")
def client(stack: Stack) -> Client:
    return Client(stack.api.base_url)


@pytest.mark.parametrize("task_type", sorted(BUILT_IN))
def test_each_built_in_type_is_published_and_waited_for(client: Client, task_type: str) -> None:
    payload, result = BUILT_IN[task_type]

    ref = client.publish(task_type, payload)

    view = ref.wait(timeout=60)
    assert view.status is Status.COMPLETED and view.type == task_type
    assert view.result == result
    assert ref.result(timeout=5) == result  # a terminal task answers at once


def test_a_wait_on_a_task_that_fails_raises_task_failed_with_its_error(client: Client) -> None:
    ref = client.publish("simulate", {"simulation": {"failureChance": 1, "permanentFailure": True}})

    with pytest.raises(TaskFailed) as failed:
        ref.wait(timeout=60)

    assert failed.value.view.status is Status.FAILED and failed.value.view.attempts == 1
    assert failed.value.last_error is not None and failed.value.last_error.startswith("permanent failure")


def test_a_wait_past_its_timeout_raises_a_timeout_error(client: Client) -> None:
    ref = client.publish("checksum", {"text": "later"}, delay=60)
    started = time.monotonic()

    with pytest.raises(WaitTimeout) as timed_out:
        ref.wait(timeout=3)

    assert 3 <= time.monotonic() - started < 6
    assert isinstance(timed_out.value, TimeoutError)
    assert timed_out.value.view is not None and timed_out.value.view.status is Status.PENDING
    client.cancel(ref.id)


def test_publish_many_of_250_with_refused_entries_answers_each_in_order(client: Client) -> None:
    run = f"batch-{time.time_ns()}"
    entries: list[dict[str, Any]] = [
        {"type": "checksum", "payload": {"text": f"{run}-{n}"}, "id": f"{run}-{n:03d}"} for n in range(250)
    ]
    entries[7] = {"type": "no-such-type", "payload": {}, "id": f"{run}-007"}
    entries[120] = {"type": "checksum", "payload": {"txt": "typo"}, "id": f"{run}-120"}
    entries[249] = {"type": "checksum", "payload": {"text": "x"}, "id": f"{run}-249", "delay": 901}

    results = client.publish_many(entries)

    assert [r.id for r in results] == [f"{run}-{n:03d}" for n in range(250)]
    refused = {n: r.error for n, r in enumerate(results) if not r.accepted}
    assert set(refused) == {7, 120, 249}
    assert all(isinstance(error, ValidationFailed) for error in refused.values())
    assert [e["field"] for e in refused[7].errors] == ["type"]  # type: ignore[union-attr]
    assert [e["field"] for e in refused[249].errors] == ["delaySeconds"]  # type: ignore[union-attr]
    for n in (0, 99, 100, 248):  # the first and last of each request
        digest = hashlib.sha256(f"{run}-{n}".encode()).hexdigest()
        assert client.wait(f"{run}-{n:03d}", timeout=90).result["digest"] == digest


def test_the_tag_filter_lists_only_the_tasks_published_with_the_tag(client: Client) -> None:
    tag = f"run:{time.time_ns()}"
    failing = {"simulation": {"failureChance": 1, "permanentFailure": True}}
    tagged = [client.publish("simulate", failing, tags=[tag, "e2e"]) for _ in range(3)]
    other = client.publish("simulate", failing, tags=["e2e"])
    for ref in [*tagged, other]:
        with pytest.raises(TaskFailed):
            ref.wait(timeout=60)

    listed = list(client.iter_tasks("FAILED", tag=tag, page_size=2))

    assert sorted(task.id for task in listed) == sorted(ref.id for ref in tagged)
    assert all(tag in task.tags for task in listed)
    assert client.get(tagged[0].id).tags == [tag, "e2e"]


def test_the_long_poll_answers_within_half_a_second_of_the_task_ending(client: Client) -> None:
    ref = client.publish("simulate", {"simulation": {"executionTime": 1000, "failureChance": 0}})
    answered: list[float] = []

    def wait() -> None:
        ref.wait(timeout=60)
        answered.append(time.time())

    waiter = threading.Thread(target=wait)
    waiter.start()
    waiter.join(70)

    view = client.get(ref.id)
    assert answered, "the wait did not return"
    assert view.finished_at is not None
    late = answered[0] - view.finished_at.timestamp()
    assert 0 <= late < 0.5, f"the wait returned {late:.3f} s after the task ended"


def _published(client: Client, task_id: str) -> TaskView | None:
    try:
        return client.get(task_id)
    except NotFound:
        return None


def test_a_chain_and_a_workflow_published_with_the_client_run_what_follows_them(client: Client) -> None:
    run, sure = f"compose-{time.time_ns()}", {"simulation": {"failureChance": 0}}
    client.publish("checksum", {"text": "hello"}, id=run, then=[{"type": "simulate", "payload": sure}])
    flow = client.publish_workflow(
        [{"type": "checksum", "payload": {"text": text}} for text in ("a", "b")],
        {"type": "simulate", "payload": sure},
        id=f"{run}-flow",
    )

    step = wait_until(lambda: _published(client, f"{run}/then/1"), 60, "the chain's step")
    then = wait_until(lambda: _published(client, flow.then.id), 60, "the workflow's then")

    assert client.wait(step.id, timeout=60).payload["previous"] == BUILT_IN["checksum"][1]
    assert flow.children == [f"{run}-flow/1", f"{run}-flow/2"]
    assert [child["status"] for child in client.wait(then.id, timeout=60).payload["children"]] == ["COMPLETED"] * 2
    assert client.workflow(flow.id).status is WorkflowStatus.COMPLETED


def test_the_readmes_python_example_prints_the_digest(stack: Stack) -> None:
    readme = (ROOT / "README.md").read_text()
    [example] = [block for block in re.findall(r"```python\n(.*?)```", readme, re.S) if "taskproc_client" in block]
    assert len(example.strip().splitlines()) == 6

    done = subprocess.run(
        [sys.executable, "-c", example],
        # This stack's port, as `make run` prints it to paste.
        env={**os.environ, "PYTHONPATH": str(ROOT / "client"), "TASKPROC_URL": stack.api.base_url},
        capture_output=True,
        text=True,
        timeout=90,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout == hashlib.sha256(b"hello").hexdigest() + "\n"
