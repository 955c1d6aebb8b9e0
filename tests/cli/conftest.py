"""Fixtures of the CLI and console tests: a fake API on loopback and a known AWS identity."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.credentials import Credentials

from tests.cli.fake_api import FakeApi, serving

# The identity the tests sign with; the fake recomputes signatures from it.
TEST_CREDENTIALS = Credentials("AKIDTASKCTLTEST", "taskctl-test-secret", "taskctl-test-session-token")
REGION = "eu-west-1"


@pytest.fixture
def no_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AWS credentials anywhere boto3 looks; the instance metadata service is never asked."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "TASKPROC_URL",
        "TASKPROC_API_KEY",
        "AWS_REGION",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


@pytest.fixture
def aws_identity(no_aws: None, monkeypatch: pytest.MonkeyPatch) -> Credentials:
    """The operator's ordinary credentials, in the environment as an operator's shell has them."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", TEST_CREDENTIALS.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", TEST_CREDENTIALS.secret_key)
    monkeypatch.setenv("AWS_SESSION_TOKEN", TEST_CREDENTIALS.token)
    return TEST_CREDENTIALS


@pytest.fixture
def fake(no_aws: None) -> Iterator[FakeApi]:
    with serving(FakeApi()) as api:
        yield api


@pytest.fixture
def guarded_fake(no_aws: None) -> Iterator[FakeApi]:
    """A fake that checks SigV4 on the operator routes and an API key on the others, as a deployed stage does."""
    with serving(FakeApi(credentials=TEST_CREDENTIALS, region=REGION, api_key="stage-key")) as api:
        yield api
