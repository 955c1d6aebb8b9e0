"""Every status's error class, and which failures are tried again, how often, and after how long."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from taskproc_client import (
    Client,
    Conflict,
    NotFound,
    PayloadTooLarge,
    RetryPolicy,
    TaskprocError,
    Throttled,
    Unauthorized,
    Unavailable,
    Unreachable,
    ValidationFailed,
)
from taskproc_client.errors import error_from_entry

from local.launcher import free_port
from tests.cli.fake_api import FakeApi
from tests.client.conftest import QUICK


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, ValidationFailed),
        (401, Unauthorized),
        (403, Unauthorized),
        (404, NotFound),
        (409, Conflict),
        (413, PayloadTooLarge),
        (429, Throttled),
        (500, Unavailable),
        (502, Unavailable),
        (503, Unavailable),
        (418, TaskprocError),
    ],
)
def test_each_status_raises_its_error_with_the_apis_code_and_message(
    client: Client, fake: FakeApi, status: int, kind: type[TaskprocError]
) -> None:
    fake.fail_with = status

    with pytest.raises(kind) as raised:
        client.stats()

    assert type(raised.value) is kind
    assert (raised.value.status, raised.value.code) == (status, "fake_failure")
    assert raised.value.message == f"the fake answers {status}"


def test_a_validation_error_carries_each_field_and_rule(client: Client) -> None:
    with pytest.raises(ValidationFailed) as refused:
        client.list("COMPLETED")  # type: ignore[arg-type]

    assert refused.value.errors == [{"field": "status", "message": "one of FAILED, RETRYING, CANCELLED"}]
    assert str(refused.value) == "bad status (status: one of FAILED, RETRYING, CANCELLED)"


def test_api_gateways_own_refusal_is_read_from_its_message(no_aws: None) -> None:
    answers = {"/stats": httpx.Response(403, json={"message": "Forbidden"})}
    with pytest.raises(Unauthorized, match=r"^Forbidden$"):
        scripted_client(lambda request: answers[request.url.path]).stats()


def test_a_refused_batch_entry_maps_by_its_code() -> None:
    assert isinstance(error_from_entry({"code": "validation_error", "message": "m", "details": []}), ValidationFailed)
    assert isinstance(error_from_entry({"code": "payload_too_large", "message": "m"}), PayloadTooLarge)
    assert isinstance(error_from_entry({"code": "service_unavailable", "message": "m"}), Unavailable)
    assert type(error_from_entry({"code": "something_new", "message": "m"})) is TaskprocError


def test_an_api_that_cannot_be_reached_raises_unreachable_after_the_retries() -> None:
    with pytest.raises(Unreachable, match="cannot reach the API"):
        Client(f"http://127.0.0.1:{free_port()}", retries=QUICK).stats()


def test_a_read_is_tried_again_after_5xx_and_429_and_succeeds(client: Client, fake: FakeApi) -> None:
    fake.fail_next = [503, 429, 500]

    assert client.stats().counts["FAILED"] == 0
    assert len(fake.seen) == 4


def test_retries_stop_at_the_policys_limit(client: Client, fake: FakeApi) -> None:
    fake.fail_with = 503

    with pytest.raises(Unavailable):
        client.stats()

    assert len(fake.seen) == QUICK.attempts


def test_a_publish_is_tried_again_since_its_id_makes_it_safe(client: Client, fake: FakeApi) -> None:
    fake.fail_next = [503]

    ref = client.publish("checksum", {"text": "x"})

    assert [seen.body["id"] for seen in fake.seen] == [ref.id, ref.id]


def test_a_batch_is_tried_again_with_the_same_ids(client: Client, fake: FakeApi) -> None:
    fake.fail_next = [502]

    client.publish_many([{"type": "checksum", "payload": {"text": "x"}}])

    first, second = (seen.body["tasks"][0]["id"] for seen in fake.seen)
    assert first == second


@pytest.mark.parametrize(
    "action",
    [
        lambda c: c.retry("t-1"),
        lambda c: c.cancel("t-1"),
        lambda c: c.retry_all_failed(),
        lambda c: c.trigger_schedule("s-1"),
        lambda c: c.create_schedule("s-2", "checksum", {"text": "x"}, cron="0 * * * *"),
        lambda c: c.delete_schedule("s-1"),
    ],
    ids=["retry", "cancel", "retry_all_failed", "trigger", "create_schedule", "delete_schedule"],
)
def test_an_action_that_is_not_idempotent_is_not_tried_again_after_a_5xx(
    client: Client, fake: FakeApi, action: Callable[[Client], object]
) -> None:
    fake.fail_next = [503]

    with pytest.raises(Unavailable):
        action(client)

    assert len(fake.seen) == 1


def test_an_action_that_is_not_idempotent_is_tried_again_after_a_429(client: Client, fake: FakeApi) -> None:
    fake.add("t-1", "FAILED", last_error="e")
    fake.fail_next = [429]

    assert client.retry("t-1").status == "PENDING"
    assert len(fake.seen) == 2


def scripted_client(answer: Callable[[httpx.Request], httpx.Response]) -> Client:
    """A client whose every request is answered (or failed) by `answer`, without a network."""
    return Client("http://127.0.0.1:9", retries=QUICK, http=httpx.Client(transport=httpx.MockTransport(answer)))


def counting(failure: Exception) -> tuple[list[str], Callable[[httpx.Request], httpx.Response]]:
    """A handler failing the first request with `failure`, answering the next; and the paths it saw."""
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if len(seen) == 1:
            raise failure
        return httpx.Response(202, json={"id": "t-1", "status": "PENDING"})

    return seen, answer


def test_an_action_is_tried_again_when_its_connection_was_never_made() -> None:
    seen, answer = counting(httpx.ConnectError("refused"))

    assert scripted_client(answer).cancel("t-1").status == "PENDING"
    assert seen == ["/tasks/t-1/cancel", "/tasks/t-1/cancel"]


def test_an_action_is_not_tried_again_when_its_answer_was_lost_after_sending() -> None:
    seen, answer = counting(httpx.ReadTimeout("no answer"))

    with pytest.raises(Unreachable, match="timed out"):
        scripted_client(answer).cancel("t-1")
    assert seen == ["/tasks/t-1/cancel"]


def test_a_read_whose_answer_was_lost_is_tried_again() -> None:
    seen, answer = counting(httpx.ReadTimeout("no answer"))

    assert scripted_client(answer).get("t-1").status == "PENDING"
    assert len(seen) == 2


def test_the_backoff_is_jittered_below_an_exponential_cap() -> None:
    policy = RetryPolicy(attempts=6, base_seconds=0.5, cap_seconds=3.0)

    draws = {retry: [policy.delay(retry) for _ in range(300)] for retry in range(5)}

    for retry, delays in draws.items():
        ceiling = min(3.0, 0.5 * 2**retry)
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8 and min(delays) < ceiling * 0.2  # spread over the range, not fixed
