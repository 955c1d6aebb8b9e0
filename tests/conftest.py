"""Shared fixtures: moto underneath, the real resource template on top, the app's own test client."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "infra" / "resources.yaml"
FAKE_AWS_ENV = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


class FakeClock:
    """The store's clock, moved by hand so leases and backoffs expire without waiting."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# Chalice's own default function timeout, when a stage sets none.
CHALICE_DEFAULT_TIMEOUT = 60


@pytest.fixture(autouse=True, scope="session")
def lambda_contexts_count_down_from_the_function_timeout() -> Iterator[None]:
    """chalice.test's `lambda_.invoke` gives every call a context of 3 s (LambdaContext's default),
    whatever the function's timeout; Lambda gives the stage's `lambda_timeout`, and so does this
    (for the whole session: module fixtures invoke functions too)."""
    import chalice.test
    from chalice.local import LambdaContext

    def invoke(self: chalice.test.TestLambdaClient, function_name: str, payload: object = None):  # type: ignore[no-untyped-def]
        scoped = self._config.scope(self._config.chalice_stage, function_name)
        timeout = scoped.lambda_timeout or CHALICE_DEFAULT_TIMEOUT
        context = LambdaContext(function_name, memory_size=scoped.lambda_memory_size, max_runtime_ms=timeout * 1000)
        if function_name not in self._app.handler_map:
            raise chalice.test.FunctionNotFoundError(function_name)
        with self._patched_env_vars(scoped.environment_variables):
            response = self._app.handler_map[function_name]({} if payload is None else payload, context)
        return chalice.test.InvokeResponse(payload=response)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(chalice.test.TestLambdaClient, "invoke", invoke)
        yield


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in FAKE_AWS_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def aws(aws_env: None) -> Iterator[boto3.session.Session]:
    """An in-memory AWS with the queue, dead-letter queue and table made from infra/resources.yaml."""
    from moto import mock_aws

    from local.atomic_dynamodb import make_writes_atomic
    from local.aws_limits import install as enforce_aws_limits

    make_writes_atomic()  # conditional writes are atomic in DynamoDB; the operator tests race them
    enforce_aws_limits()  # what AWS refuses, moto refuses too (local/aws_limits.py)
    with mock_aws():
        session = boto3.session.Session()
        session.client("cloudformation").create_stack(
            StackName="taskproc-test",
            TemplateBody=TEMPLATE.read_text(),
            Parameters=[
                {"ParameterKey": "Stage", "ParameterValue": "test"},
                {"ParameterKey": "MaxAttempts", "ParameterValue": "3"},
                {"ParameterKey": "QueueVisibilityTimeout", "ParameterValue": "180"},
            ],
        )
        yield session


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# Settings an in-process worker of another test may have left in the environment (its stage's,
# through local.config.apply_environment); the tests' settings are the defaults unless they say.
STAGE_ONLY_SETTINGS = (
    "AWS_MAX_ATTEMPTS",
    "AWS_CONNECT_TIMEOUT_SECONDS",
    "AWS_READ_TIMEOUT_SECONDS",
    "CONSUMER_TIMEOUT_SECONDS",
    "HIGH_PRIORITY_QUEUE",
    "LOW_PRIORITY_QUEUE",
    "METRICS_CACHE_SECONDS",
    "QUEUE_VISIBILITY_TIMEOUT",
)


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from chalicelib.settings import Settings

    for name in STAGE_ONLY_SETTINGS:
        monkeypatch.delenv(name, raising=False)

    return Settings(
        TASKS_TABLE="taskproc-test-tasks",
        FLOW_TABLE="taskproc-test-flow",
        SCHEDULES_TABLE="taskproc-test-schedules",
        TASKS_QUEUE="taskproc-test-tasks",
        DEAD_LETTER_QUEUE="taskproc-test-dead-letters",
        MAX_ATTEMPTS=3,
        BACKOFF_BASE_SECONDS=60,
        BACKOFF_MAX_SECONDS=900,
        LEASE_SECONDS=60,
        DEFAULT_FAILURE_CHANCE=0.3,
    )


@pytest.fixture
def runtime(aws: boto3.session.Session, settings, clock: FakeClock):  # type: ignore[no-untyped-def]
    from chalicelib.runtime import build_runtime, set_runtime

    rt = build_runtime(settings, session=aws, clock=clock)
    rt.rng = random.Random(20261123)
    set_runtime(rt)
    yield rt
    set_runtime(None)


@pytest.fixture
def client(runtime):  # type: ignore[no-untyped-def]
    from chalice.test import Client

    import app

    with Client(app.app, stage_name="local") as test_client:
        yield test_client
