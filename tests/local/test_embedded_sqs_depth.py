"""The embedded endpoint's SQS after local/embedded_sqs.py: moto's behaviour, at a depth of 10,000 messages.

One scripted scenario (delays, visibility, receive counts, redrive, deletes with
old, repeated and bogus receipt handles, queue counts) runs against unpatched moto
in this process and against the embedded endpoint (patched, in its own process):
the two traces must be the same, and the scenario must still give them on a queue
10,000 messages deep.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto import mock_aws

from local import embedded_sqs
from local.launcher import Launched, clean_environment, free_port, launch

DEEP = 10_000
SHALLOW = 200
# The head of the queue stays delayed for the whole walk; late messages are delayed for a moment.
HEAD_DELAY_SECONDS = 900
LATE_DELAY_SECONDS = 3
MAX_RECEIVES = 2


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The embedded endpoint (`python -m local aws`), patched as `make run` patches it."""
    port = free_port()
    log = tmp_path_factory.mktemp("embedded-sqs") / "aws.log"
    process: Launched = launch("aws", clean_environment({"AWS_PORT": str(port)}), log)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()


def _client(endpoint_url: str | None = None) -> Any:
    return boto3.client(
        "sqs",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(max_pool_connections=20, retries={"mode": "standard", "max_attempts": 2}),
    )


def _fill(sqs: Any, url: str, first: int, count: int, delay: int = 0) -> None:
    def batch(start: int) -> None:
        entries = [
            {"Id": str(n), "MessageBody": f"m{start + n}", "DelaySeconds": delay}
            for n in range(min(10, first + count - start))
        ]
        assert not sqs.send_message_batch(QueueUrl=url, Entries=entries).get("Failed")

    for start in range(first, first + count, 10):  # in order: the walk expects the queue's order
        batch(start)


def _receive(sqs: Any, url: str) -> list[dict[str, Any]]:
    response = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"])
    return list(response.get("Messages", []))


def _seen(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((m["Body"], m["Attributes"]["ApproximateReceiveCount"]) for m in messages)


def _visibility(sqs: Any, url: str, messages: list[dict[str, Any]], seconds: int) -> None:
    entries = [
        {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": seconds}
        for n, m in enumerate(messages)
    ]
    assert not sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries).get("Failed")


def _delete(sqs: Any, url: str, handles: list[str]) -> list[str]:
    """Delete by handle; the error codes of the entries that failed, in order."""
    entries = [{"Id": str(n), "ReceiptHandle": handle} for n, handle in enumerate(handles)]
    failed = sqs.delete_message_batch(QueueUrl=url, Entries=entries).get("Failed", [])
    return [entry["Code"] for entry in sorted(failed, key=lambda entry: int(entry["Id"]))]


def _error(call: Any, **kwargs: Any) -> str:
    try:
        call(**kwargs)
    except ClientError as exc:
        return str(exc.response["Error"]["Code"])
    return "no error"


def _counts(sqs: Any, url: str) -> tuple[int, int, int]:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
        int(attributes["ApproximateNumberOfMessagesDelayed"]),
    )


def scenario(sqs: Any, name: str, depth: int) -> tuple[list[Any], dict[str, tuple[int, int, int]]]:
    """Walk a queue `depth` messages deep through delays, visibility, redrive and deletes; what each step saw."""
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVES})
    url = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "30", "RedrivePolicy": redrive})["QueueUrl"]
    _fill(sqs, url, 0, 10, delay=HEAD_DELAY_SECONDS)  # the head of the queue: every receive passes it
    _fill(sqs, url, 10, depth - 10)
    trace: list[Any] = []

    first = _receive(sqs, url)
    trace.append(("first receive skips the delayed head", _seen(first)))
    second = _receive(sqs, url)
    trace.append(("in-flight messages are not received again", _seen(second)))
    counts = {"after two receives": _counts(sqs, url)}

    _visibility(sqs, url, first, 0)
    again = _receive(sqs, url)
    trace.append(("visible again: received again, counted twice", _seen(again)))

    trace.append(("delete a batch", _delete(sqs, url, [m["ReceiptHandle"] for m in second])))
    trace.append(("delete it again", _delete(sqs, url, [m["ReceiptHandle"] for m in second])))
    trace.append(("delete a bogus handle", _delete(sqs, url, ["not-a-handle"])))
    trace.append(
        (
            "change a bogus handle",
            _error(sqs.change_message_visibility, QueueUrl=url, ReceiptHandle="not-a-handle", VisibilityTimeout=0),
        )
    )

    _visibility(sqs, url, again, 0)
    after_redrive = _receive(sqs, url)
    trace.append(("at maxReceiveCount the messages go to the dead letters", _seen(after_redrive)))
    dead = _receive(sqs, dlq_url)
    trace.append(("the dead letters", _seen(dead)))
    trace.append(("a dead letter's old handle is not the queue's", _delete(sqs, url, [first[0]["ReceiptHandle"]])))
    trace.append(("but the dead-letter queue takes it", _delete(sqs, dlq_url, [first[0]["ReceiptHandle"]])))
    counts["after the redrive"] = _counts(sqs, url)
    counts["dead letters"] = _counts(sqs, dlq_url)

    counts["at the end"] = _counts(sqs, url)

    sent_late = time.monotonic()
    _fill(sqs, dlq_url, 1000, 10, delay=LATE_DELAY_SECONDS)
    trace.append(("late messages while delayed", _seen(_receive(sqs, dlq_url))))
    while time.monotonic() - sent_late < LATE_DELAY_SECONDS + 0.5:
        time.sleep(0.1)
    trace.append(("late messages once their delay is over", _seen(_receive(sqs, dlq_url))))
    return trace, counts


def _shifted(counts: dict[str, tuple[int, int, int]], extra: int) -> dict[str, tuple[int, int, int]]:
    """The counts of the same walk on a queue `extra` messages deeper: only the waiting messages differ."""
    return {
        step: (visible + (0 if step == "dead letters" else extra), *rest) for step, (visible, *rest) in counts.items()
    }  # type: ignore[misc]


@pytest.fixture(scope="module")
def unpatched() -> tuple[list[Any], dict[str, tuple[int, int, int]]]:
    """The scenario on moto as released, in this process (not patched: the patch lives in the endpoint's process)."""
    assert not embedded_sqs._installed, "the tests' own process must not be patched"
    with mock_aws():
        return scenario(_client(), "walk", SHALLOW)


def test_the_patched_endpoint_behaves_as_moto_does(endpoint: str, unpatched: tuple[list[Any], Any]) -> None:
    trace, counts = scenario(_client(endpoint), "walk-shallow", SHALLOW)

    assert trace == unpatched[0]
    assert counts == unpatched[1]


def test_the_walk_is_the_same_ten_thousand_messages_deep(endpoint: str, unpatched: tuple[list[Any], Any]) -> None:
    trace, counts = scenario(_client(endpoint), "walk-deep", DEEP)

    assert trace == unpatched[0]
    assert counts == _shifted(unpatched[1], DEEP - SHALLOW)
    # What the walk means, spelled out once: receive counts, redrive and delays.
    steps = dict(trace)
    assert steps["visible again: received again, counted twice"] == [(f"m{n}", "2") for n in range(10, 20)]
    assert steps["the dead letters"] == [(f"m{n}", str(MAX_RECEIVES + 1)) for n in range(10, 20)]
    assert steps["late messages while delayed"] == []
    assert steps["late messages once their delay is over"] == [(f"m{n}", "1") for n in range(1000, 1010)]
    assert counts["at the end"][2] == 10, "the delayed head is counted as delayed"


def test_concurrent_receives_at_depth_take_each_message_once(endpoint: str) -> None:
    sqs = _client(endpoint)
    url = sqs.create_queue(QueueName="deep-race", Attributes={"VisibilityTimeout": "120"})["QueueUrl"]
    _fill(sqs, url, 0, DEEP)
    taken: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    wanted = 3_000

    def receive() -> None:
        while True:
            with lock:
                if sum(taken.values()) >= wanted:
                    return
            messages = _receive(sqs, url)
            with lock:
                taken.update(m["MessageId"] for m in messages)
                counts.update(m["Attributes"]["ApproximateReceiveCount"] for m in messages)

    with ThreadPoolExecutor(10) as pool:
        for future in [pool.submit(receive) for _ in range(10)]:
            future.result(timeout=300)

    assert sum(taken.values()) >= wanted
    assert max(taken.values()) == 1, "a message was delivered to two receives"
    assert set(counts) == {"1"}
    visible, in_flight, _ = _counts(sqs, url)
    assert (visible, in_flight) == (DEEP - sum(taken.values()), sum(taken.values()))


def test_the_installed_moto_is_the_one_the_patches_were_written_for() -> None:
    assert embedded_sqs.moto_drift() == []


def test_a_changed_moto_function_stops_the_patch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(embedded_sqs.RELIED_ON, "SQSBackend.receive_message", "0" * 16)
    monkeypatch.setattr(embedded_sqs, "MOTO_VERSION", "0.0.0")

    assert embedded_sqs.moto_drift() == ["moto 5.2.5, not 0.0.0", "SQSBackend.receive_message changed"]
    with pytest.raises(embedded_sqs.EmbeddedSqsError, match=r"SQSBackend\.receive_message changed"):
        embedded_sqs.install()
    assert not embedded_sqs._installed


def test_the_embedded_endpoint_installs_the_patch() -> None:
    from local import aws

    assert aws.install_embedded_sqs is embedded_sqs.install
