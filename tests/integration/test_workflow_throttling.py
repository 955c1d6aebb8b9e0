"""A workflow's fan-in under DynamoDB's throttling of its item, which moto never does: injected here.

One workflow item is one partition, at most 1,000 write units a second, so children ending together
are throttled on it (docs/workflows.md, "1,000 children ending together"). The errors are answered
before the request is sent, so botocore's standard retry mode (the app's, chalicelib/runtime.py)
decides what to do with them as it would with DynamoDB's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from chalicelib.workflows.store import KEY_PREFIX, workflow_store
from tests.integration.harness import SUCCEEDS, Harness
from tests.integration.test_workflows import Merges, body_of, drain, h, merges, post, workflow

__all__ = ["h", "merges"]  # the fixtures, shared with test_workflows.py

THROTTLES = ("ProvisionedThroughputExceededException", "ThrottlingException")


class _Body:
    def __init__(self, content: bytes) -> None:
        self._content = content

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._content


@contextmanager
def throttle(client: Any, code: str, when: Callable[[Any], bool]) -> Iterator[list[Any]]:
    """Answer each UpdateItem attempt for which `when` holds with `code` (HTTP 400) while the block runs;
    the attempts answered, in order.

    botocore runs every `before-send` handler and takes the first answer, so moto's own handler would
    still apply the write it was never meant to see (a throttled write changes nothing on DynamoDB).
    This handler, first in line, points the attempt at a host moto does not serve: moto passes it by.
    """
    throttled: list[Any] = []
    body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": "injected"}).encode()

    def answer(request: Any, **_: Any) -> AWSResponse | None:
        if not when(request):
            return None
        throttled.append(request)
        url, request.url = request.url, "https://throttled.invalid/"
        return AWSResponse(url, 400, {"x-amzn-ErrorType": code}, _Body(body))

    event = "before-send.dynamodb.UpdateItem"
    client.meta.events.register_first(event, answer)
    try:
        yield throttled
    finally:
        client.meta.events.unregister(event, answer)


def writes_workflow_item(request: Any) -> bool:
    return json.loads(request.body or b"{}").get("Key", {}).get("id", {}).get("S", "").startswith(KEY_PREFIX)


def first_attempt(request: Any) -> bool:
    # botocore's standard mode numbers each attempt of a call in this header.
    return writes_workflow_item(request) and "attempt=1;" in request.headers.get("amz-sdk-request", b"").decode()


@pytest.mark.parametrize("code", THROTTLES)
def test_a_throttled_count_is_retried_by_botocore_and_the_fan_in_runs_then_once(
    h: Harness, merges: Merges, code: str
) -> None:
    children = 12
    assert post(h, body_of("wthrottled", [SUCCEEDS] * children, "continue")).status_code == 201
    with throttle(h.rt.store.client, code, first_attempt) as throttled:
        drain(h)
    assert len(throttled) == children  # every child's count was throttled once, and retried
    assert len(merges.runs) == 1 and len(merges.runs[0]["children"]) == children
    counted = workflow_store(h.rt).read("wthrottled")
    assert counted is not None and sorted(counted.ended) == list(range(1, children + 1))
    assert workflow(h, "wthrottled")["status"] == "COMPLETED"
    assert h.task("wthrottled%2Fthen")["attempts"] == 1


def test_counts_throttled_past_botocore_s_attempts_come_back_with_their_messages_and_count_once(
    h: Harness, merges: Merges
) -> None:
    children = 10
    assert post(h, body_of("wgaveup", [SUCCEEDS] * children, "continue")).status_code == 201
    with throttle(h.rt.store.client, THROTTLES[0], writes_workflow_item) as throttled:
        first = h.deliver()
    assert len(first.records) == children
    assert len(throttled) == children * h.rt.settings.AWS_MAX_ATTEMPTS  # each write retried, then given up
    assert workflow_store(h.rt).read("wgaveup").ended == {}  # type: ignore[union-attr]
    assert workflow(h, "wgaveup")["counts"] == {"COMPLETED": children} and merges.runs == []

    h.reveal(first)  # the children's messages come back, as their visibility timeout passes
    drain(h)

    assert len(merges.runs) == 1
    counted = workflow_store(h.rt).read("wgaveup")
    assert counted is not None and sorted(counted.ended) == list(range(1, children + 1))
    view = workflow(h, "wgaveup")
    assert view["status"] == "COMPLETED" and view["then"]["status"] == "COMPLETED"
    assert h.task("wgaveup%2Fthen")["attempts"] == 1
