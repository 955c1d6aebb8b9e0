"""The offline stack's own pieces, for the tests of what they add to moto."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from local.launcher import Launched, clean_environment, free_port, launch


@pytest.fixture(scope="package")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The embedded endpoint (`python -m local aws`, as `make run` starts it) on a free port,
    with the stack of infra/resources.yaml on it."""
    port = free_port()
    log: Path = tmp_path_factory.mktemp("embedded-aws") / "aws.log"
    process: Launched = launch("aws", clean_environment({"AWS_PORT": str(port)}), log)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()
