"""The long-poll over `make run`'s stack: it answers soon after the task ends, measured, and holds no other request."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime
from typing import Any

import pytest

from tests.e2e.stack import Stack

pytestmark = pytest.mark.e2e

# The bound: the answer within this long of the task's end.
WITHIN_SECONDS = 0.5
ROUNDS = 5
# A second of work: the long-poll is surely waiting when the task ends.
WORK = {"simulation": {"executionTime": 1000, "failureChance": 0}}


def _epoch(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def _long_poll(stack: Stack, task_id: str, answer: dict[str, Any]) -> None:
    answer["sent"] = time.time()
    answer["status"], answer["view"] = stack.api.call("GET", f"/tasks/{task_id}?waitSeconds=20")
    answer["received"] = time.time()


def test_a_long_poll_answers_within_half_a_second_of_the_task_s_end_and_blocks_no_other_request(
    stack: Stack,
) -> None:
    # One task through first, unmeasured: the consumer's and the API's first calls to the embedded
    # endpoint open connections and fill caches, which is the stack starting, not the wait.
    warm_up = f"warm-up-{uuid.uuid4()}"
    stack.api.publish(warm_up, WORK)
    assert stack.api.call("GET", f"/tasks/{warm_up}?waitSeconds=20")[1]["status"] == "COMPLETED"
    lags, health_seconds = [], []
    for _ in range(ROUNDS):
        task_id = f"awaited-{uuid.uuid4()}"
        stack.api.publish(task_id, WORK)
        answer: dict[str, Any] = {}
        waiting = threading.Thread(target=_long_poll, args=(stack, task_id, answer))
        waiting.start()
        while "sent" not in answer:
            time.sleep(0.01)
        # While it waits, the API answers others: Chalice's local server gives each request a thread.
        started = time.monotonic()
        assert stack.api.call("GET", "/health")[0] == 200
        health_seconds.append(time.monotonic() - started)
        waiting.join(30)
        assert not waiting.is_alive(), "the long-poll did not answer within 30 s"

        assert answer["status"] == 200 and answer["view"]["status"] == "COMPLETED", answer
        finished = _epoch(answer["view"]["finishedAt"])
        assert answer["sent"] < finished, "the task ended before the wait began: nothing was waited for"
        # The stack runs on this machine, so its clock and the test's are one: the lag is the answer's
        # arrival after the end the consumer wrote.
        lags.append(answer["received"] - finished)
    print(
        f"long-poll lag after finishedAt, s: {', '.join(f'{lag:.3f}' for lag in lags)}; /health meanwhile:"
        f" {max(health_seconds):.3f} s at most"
    )
    assert max(lags) < WITHIN_SECONDS, lags
    assert min(lags) >= 0, lags
    assert max(health_seconds) < 2.0, health_seconds  # far below the wait: it did not queue behind it
