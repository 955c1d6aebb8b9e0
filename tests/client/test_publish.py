"""publish and publish_many: the bodies they send, the ids they make, and one result per entry."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import BaseModel
from taskproc_client import BATCH_SIZE, Client, Status, ValidationFailed

from tests.cli.fake_api import FakeApi


class ChecksumPayload(BaseModel):
    text: str
    algorithm: str = "sha256"


def test_publish_sends_every_option_under_its_json_name(client: Client, fake: FakeApi) -> None:
    ref = client.publish(
        "checksum",
        {"text": "hi"},
        id="t-1",
        delay=timedelta(seconds=30),
        tags=["team:billing", "run=7"],
        key="customer-9",
        priority="high",
        unique_key="nightly",
        unique_until="terminal",
        expires_in=600,
    )

    assert (ref.id, ref.status, ref.duplicate) == ("t-1", Status.PENDING, False)
    assert fake.seen[-1].path == "/publish"
    assert fake.seen[-1].body == {
        "id": "t-1",
        "type": "checksum",
        "payload": {"text": "hi"},
        "delaySeconds": 30,
        "tags": ["team:billing", "run=7"],
        "key": "customer-9",
        "priority": "high",
        "uniqueKey": "nightly",
        "uniqueUntil": "terminal",
        "expiresInSeconds": 600,
    }


def test_publish_leaves_out_the_options_not_given(client: Client, fake: FakeApi) -> None:
    client.publish("checksum", {"text": "hi"}, id="t-1")

    assert fake.seen[-1].body == {"id": "t-1", "type": "checksum", "payload": {"text": "hi"}}


def test_a_publish_without_an_id_gets_a_fresh_uuid_so_that_a_retry_is_safe(client: Client, fake: FakeApi) -> None:
    first = client.publish("checksum", {"text": "a"})
    second = client.publish("checksum", {"text": "a"})

    assert first.id != second.id
    assert str(uuid.UUID(first.id)) == first.id
    assert [seen.body["id"] for seen in fake.seen] == [first.id, second.id]


def test_a_pydantic_payload_is_sent_as_its_json_document(client: Client, fake: FakeApi) -> None:
    client.publish("checksum", ChecksumPayload(text="hello"), id="t-1")

    assert fake.seen[-1].body["payload"] == {"text": "hello", "algorithm": "sha256"}


def test_run_at_is_sent_as_rfc_3339_and_a_naive_time_is_refused_before_sending(client: Client, fake: FakeApi) -> None:
    at = datetime(2026, 12, 24, 9, 0, tzinfo=UTC)

    client.publish("checksum", {"text": "x"}, id="t-1", run_at=at)

    assert fake.seen[-1].body["runAt"] == "2026-12-24T09:00:00+00:00"
    with pytest.raises(ValueError, match="aware datetime"):
        client.publish("checksum", {"text": "x"}, run_at=datetime(2026, 12, 24, 9, 0))
    assert len(fake.seen) == 1


def test_a_second_publish_of_an_id_is_a_duplicate(client: Client, fake: FakeApi) -> None:
    client.publish("checksum", {"text": "x"}, id="t-1")

    again = client.publish("checksum", {"text": "y"}, id="t-1")

    assert again.duplicate is True
    assert fake.tasks["t-1"]["payload"] == {"text": "x"}


def test_a_refused_publish_raises_validation_failed_naming_each_field(client: Client) -> None:
    with pytest.raises(ValidationFailed) as refused:
        client.publish("nosuchtype", {"text": "x"}, tags=["has space"])

    assert refused.value.status == 400
    assert {e["field"] for e in refused.value.errors} == {"type", "tags"}
    assert "type: must be one of checksum, simulate" in str(refused.value)


def test_publish_many_of_250_entries_sends_3_requests_of_100_100_and_50_in_order(client: Client, fake: FakeApi) -> None:
    entries = [{"type": "checksum", "payload": {"text": str(n)}, "id": f"t-{n:03d}"} for n in range(250)]

    results = client.publish_many(entries)

    batches = [seen.body["tasks"] for seen in fake.seen]
    assert [seen.path for seen in fake.seen] == ["/publish/batch"] * 3
    assert [len(batch) for batch in batches] == [BATCH_SIZE, BATCH_SIZE, 50]
    assert [entry["id"] for batch in batches for entry in batch] == [f"t-{n:03d}" for n in range(250)]
    assert [result.id for result in results] == [f"t-{n:03d}" for n in range(250)]
    assert all(result.accepted and result.error is None for result in results)


def test_publish_many_answers_refused_entries_with_their_error_and_does_not_raise(
    client: Client, fake: FakeApi
) -> None:
    fake.add("old", "COMPLETED")
    entries = [
        {"type": "checksum", "payload": {"text": "a"}, "tags": ["ok"]},
        {"type": "nosuchtype", "payload": {}, "id": "bad-type"},
        {"type": "checksum", "payload": {}, "id": "old"},
        {"type": "checksum", "payload": {"text": "c"}, "delay": 5},
    ]

    results = client.publish_many(entries)

    assert [r.accepted for r in results] == [True, False, True, True]
    assert results[1].id == "bad-type"
    assert isinstance(results[1].error, ValidationFailed)
    assert results[1].error.errors == [{"field": "type", "message": "must be one of checksum, simulate"}]
    assert results[2].duplicate is True and results[2].status is Status.COMPLETED
    assert fake.seen[-1].body["tasks"][0]["tags"] == ["ok"]
    assert fake.seen[-1].body["tasks"][3]["delaySeconds"] == 5
    assert results[0].id == fake.seen[-1].body["tasks"][0]["id"]  # the id the client made


def test_publish_many_of_nothing_sends_nothing(client: Client, fake: FakeApi) -> None:
    assert client.publish_many([]) == []
    assert fake.seen == []
