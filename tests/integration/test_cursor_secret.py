"""The cursor key: the stage's Secrets Manager secret on AWS, read once per container; never a guessable key there."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from chalice.test import Client

from chalicelib.operate.cursor import CursorKeys, derived_cursor_key, encode_cursor
from chalicelib.operate.listing import Filters
from tests.conftest import FakeClock
from tests.integration.harness import Harness

DOOMED = {"simulation": {"failureChance": 1, "permanentFailure": True}}
SECRET_NAME = "taskproc-test-cursor"
SECRET_VALUE = "s" * 24 + "0123456789abcdefghijklmnopqrstuvwxyz"


@dataclasses.dataclass
class Reads:
    count: int = 0


def _with_cursor_keys(runtime: Any, aws: boto3.session.Session, secret_id: str | None, on_lambda: bool) -> Reads:
    """Give the runtime cursor keys from `secret_id`, counting the GetSecretValue requests they make."""
    reads = Reads()
    client = aws.client("secretsmanager")

    def count(**_: Any) -> None:
        reads.count += 1

    client.meta.events.register("before-call.secrets-manager.GetSecretValue", count)
    runtime.cursor_keys = CursorKeys(secret_id, runtime.settings.TASKS_TABLE, lambda: client, on_lambda=on_lambda)
    return reads


@pytest.fixture
def h(client: Client, runtime: Any, clock: FakeClock) -> Iterator[Harness]:
    yield Harness(client, runtime, clock)


def _failed(h: Harness, count: int) -> None:
    for n in range(count):
        h.publish(f"c{n}", DOOMED)
    while h.depth(h.rt.tasks_queue.url):
        h.clock.advance(0.001)
        h.deliver()


def _get(h: Harness, path: str) -> tuple[int, Any]:
    response = h.client.http.get(path)
    return response.status_code, json.loads(response.body)


def test_a_deployed_stage_signs_with_its_secret_read_once_and_refuses_a_cursor_forged_with_the_derived_key(
    h: Harness, aws: boto3.session.Session
) -> None:
    aws.client("secretsmanager").create_secret(Name=SECRET_NAME, SecretString=SECRET_VALUE)
    reads = _with_cursor_keys(h.rt, aws, SECRET_NAME, on_lambda=True)
    _failed(h, 3)

    status, first = _get(h, "/tasks?status=FAILED&limit=1")
    assert status == 200 and first["nextCursor"]
    status, second = _get(h, f"/tasks?status=FAILED&limit=1&cursor={first['nextCursor']}")
    assert status == 200 and second["tasks"] != first["tasks"]
    assert _get(h, "/health")[0] == 200
    assert reads.count == 1, "the secret is read once per container"

    # What the derived key would let anyone who knows the table's name sign.
    scope = f"{h.rt.settings.TASKS_TABLE}|FAILED|{Filters().scope()}"
    forged = encode_cursor(derived_cursor_key(h.rt.settings.TASKS_TABLE), scope, "9999999999999#c0")
    status, answer = _get(h, f"/tasks?status=FAILED&limit=1&cursor={forged}")
    assert status == 400 and answer["error"]["details"][0]["field"] == "cursor"


@pytest.mark.parametrize("secret_id", [None, "taskproc-test-no-such-secret"])
def test_on_lambda_a_missing_secret_fails_health_and_listing_with_a_503_and_no_aws_text(
    h: Harness, aws: boto3.session.Session, secret_id: str | None
) -> None:
    _with_cursor_keys(h.rt, aws, secret_id, on_lambda=True)
    _failed(h, 2)

    health_status, health = _get(h, "/health")
    assert health_status == 503
    assert health["status"] == "unavailable"
    status, listed = _get(h, "/tasks?status=FAILED&limit=1")
    assert status == 503
    answers = json.dumps([health, listed])
    for aws_text in ("ResourceNotFound", "Secrets Manager", "no-such-secret", "arn:aws"):
        assert aws_text not in answers


def test_a_secret_too_short_to_be_the_stack_s_is_refused(h: Harness, aws: boto3.session.Session) -> None:
    aws.client("secretsmanager").create_secret(Name=SECRET_NAME, SecretString="short")
    _with_cursor_keys(h.rt, aws, SECRET_NAME, on_lambda=True)
    assert _get(h, "/health")[0] == 503


def test_a_failed_read_is_tried_again_once_the_secret_exists(h: Harness, aws: boto3.session.Session) -> None:
    reads = _with_cursor_keys(h.rt, aws, SECRET_NAME, on_lambda=True)
    assert _get(h, "/health")[0] == 503
    aws.client("secretsmanager").create_secret(Name=SECRET_NAME, SecretString=SECRET_VALUE)
    assert _get(h, "/health")[0] == 200
    assert _get(h, "/health")[0] == 200
    assert reads.count == 2


def test_offline_without_a_secret_the_key_derives_from_the_table_and_nothing_is_read(
    h: Harness, aws: boto3.session.Session
) -> None:
    reads = _with_cursor_keys(h.rt, aws, None, on_lambda=False)
    _failed(h, 2)
    status, page = _get(h, "/tasks?status=FAILED&limit=1")
    assert status == 200 and page["nextCursor"]
    assert h.rt.cursor_keys.key() == derived_cursor_key(h.rt.settings.TASKS_TABLE)
    assert reads.count == 0
