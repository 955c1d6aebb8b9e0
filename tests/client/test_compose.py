"""Chains, callbacks and workflows from the client: the bodies sent, the typed views read, and the retries."""

from __future__ import annotations

import uuid

import pytest
from pydantic import BaseModel
from taskproc_client import Client, Conflict, NotFound, Workflow, WorkflowStatus

from tests.cli.fake_api import FakeApi


class Upload(BaseModel):
    bucket: str


def test_publish_sends_then_and_callback_as_the_api_names_them(client: Client, fake: FakeApi) -> None:
    client.publish(
        "checksum",
        {"text": "hi"},
        id="t-1",
        then=[{"type": "simulate", "payload": Upload(bucket="out")}, {"type": "checksum"}],
        callback="http://127.0.0.1:9/hook",
    )

    assert fake.seen[-1].body == {
        "id": "t-1",
        "type": "checksum",
        "payload": {"text": "hi"},
        "then": [{"type": "simulate", "payload": {"bucket": "out"}}, {"type": "checksum"}],
        "callback": {"url": "http://127.0.0.1:9/hook"},
    }


def test_the_view_of_a_chained_task_reads_its_steps_and_its_callback_task(client: Client) -> None:
    ref = client.publish("simulate", {}, id="t-1", then=[{"type": "checksum"}], callback={"url": "http://h/x"})

    view = ref.get()

    assert view.then is not None
    assert [(step.id, step.type, step.state) for step in view.then] == [("t-1/then/1", "checksum", "waiting")]
    assert view.callback == {"url": "http://h/x"}
    assert view.callback_task == "t-1/callback"


def test_a_batch_entry_takes_then_and_callback_like_publish(client: Client, fake: FakeApi) -> None:
    client.publish_many([{"type": "simulate", "payload": {}, "id": "b-1", "then": [{"type": "checksum"}]}])

    assert fake.seen[-1].body["tasks"] == [
        {"id": "b-1", "type": "simulate", "payload": {}, "then": [{"type": "checksum"}]}
    ]


def test_a_step_without_a_type_is_refused_before_sending(client: Client, fake: FakeApi) -> None:
    with pytest.raises(ValueError, match=r"then\[1\] needs a type"):
        client.publish("simulate", {}, then=[{"type": "checksum"}, {"payload": {}}])

    assert fake.seen == []


def test_publish_workflow_sends_the_body_and_reads_the_view(client: Client, fake: FakeApi) -> None:
    workflow = client.publish_workflow(
        [{"type": "checksum", "payload": {"text": "a"}}, {"id": "page-2", "payload": {}}],
        {"type": "simulate", "payload": {"into": "book-7"}},
        id="pages-7",
        on_child_failure="continue",
        callback="http://127.0.0.1:9/hook",
    )

    assert fake.seen[-1].path == "/workflows"
    assert fake.seen[-1].body == {
        "id": "pages-7",
        "children": [
            {"type": "checksum", "payload": {"text": "a"}},
            {"payload": {}, "id": "page-2"},
        ],
        "then": {"type": "simulate", "payload": {"into": "book-7"}},
        "onChildFailure": "continue",
        "callback": {"url": "http://127.0.0.1:9/hook"},
    }
    assert isinstance(workflow, Workflow)
    assert (workflow.id, workflow.status, workflow.children) == (
        "pages-7",
        WorkflowStatus.RUNNING,
        ["pages-7/1", "page-2"],
    )
    assert workflow.counts == {"PENDING": 2}
    assert (workflow.then.id, workflow.then.status) == ("pages-7/then", "WAITING")
    assert not workflow.status.is_terminal


def test_workflow_reads_where_it_stands_now(client: Client, fake: FakeApi) -> None:
    client.publish_workflow([{"payload": {}}, {"payload": {}}], {"type": "checksum"}, id="w-1")
    fake.finish("w-1/1", "COMPLETED", result={"ok": True})

    workflow = client.workflow("w-1")

    assert workflow.counts == {"COMPLETED": 1, "PENDING": 1}
    assert fake.seen[-1].path == "/workflows/w-1"


def test_a_workflow_id_is_sent_url_encoded_and_an_unknown_one_is_not_found(client: Client, fake: FakeApi) -> None:
    with pytest.raises(NotFound):
        client.workflow("nightly/2026 12")

    assert fake.seen[-1].path == "/workflows/nightly%2F2026%2012"


def test_a_workflow_without_an_id_gets_a_fresh_uuid(client: Client, fake: FakeApi) -> None:
    first = client.publish_workflow([{"payload": {}}], {"type": "checksum"})
    second = client.publish_workflow([{"payload": {}}], {"type": "checksum"})

    assert first.id != second.id
    assert str(uuid.UUID(first.id)) == first.id


def test_a_workflow_publish_whose_answer_was_lost_is_retried_and_lands_once(client: Client, fake: FakeApi) -> None:
    fake.fail_next = [503]

    workflow = client.publish_workflow([{"payload": {}}], {"type": "checksum"}, id="w-1")

    assert [seen.path for seen in fake.seen] == ["/workflows", "/workflows"]
    assert fake.seen[0].body == fake.seen[1].body  # the same id and body, so a repeat lands on the same workflow
    assert workflow.children == ["w-1/1"]
    assert list(fake.workflows) == ["w-1"]


def test_another_workflow_under_a_known_id_is_a_conflict(client: Client) -> None:
    client.publish_workflow([{"payload": {}}], {"type": "checksum"}, id="w-1")

    with pytest.raises(Conflict):
        client.publish_workflow([{"payload": {}}, {"payload": {}}], {"type": "checksum"}, id="w-1")
