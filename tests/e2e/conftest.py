"""Fixtures of the end-to-end tests: `make run`'s stack, shared by the tests that only talk HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.stack import Api, Stack, free_port, stack_environment, start


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`make run`'s entry point (`python -m local run`) on free ports, shared by the tests that only talk HTTP."""
    port, aws_port = free_port(), free_port()
    logs = tmp_path_factory.mktemp("stack")
    env = stack_environment(port, aws_port, METRICS_FILE=str(logs / "metrics.jsonl"))
    process = start("run", ["run"], env, logs)
    try:
        process.wait_for_line("taskproc is ready")
        yield Stack(Api(f"http://127.0.0.1:{port}"), aws_port, process, env)
    finally:
        process.stop()
