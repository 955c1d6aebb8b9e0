"""Fixtures of the client's tests: the fake API of tests/cli on loopback, and a client with quick retries."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from taskproc_client import Client, RetryPolicy

from tests.cli.conftest import aws_identity, guarded_fake, no_aws
from tests.cli.fake_api import FakeApi, serving

__all__ = ["aws_identity", "guarded_fake", "no_aws"]

# The same number of tries as the default, with pauses short enough for a test.
QUICK = RetryPolicy(attempts=4, base_seconds=0.01, cap_seconds=0.05)


@pytest.fixture
def fake(no_aws: None) -> Iterator[FakeApi]:
    with serving(FakeApi()) as api:
        yield api


@pytest.fixture
def client(fake: FakeApi) -> Iterator[Client]:
    with Client(fake.url, retries=QUICK) as made:
        yield made
