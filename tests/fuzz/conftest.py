"""The API under fuzzing: the embedded AWS endpoint and the HTTP API (no workers), on free ports."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator

import pytest

from tools.processes import LOOPBACK, free_port, piece_environment, start_piece

# Per operation; `make fuzz` raises it with FUZZ_EXAMPLES.
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
# What every request answered, over the whole session: printed at the end.
STATUSES: Counter[str] = Counter()


@pytest.fixture(scope="session")
def api_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    aws_port, port = free_port(), free_port()
    aws_url = f"http://{LOOPBACK}:{aws_port}"
    env = piece_environment({"AWS_PORT": str(aws_port)})
    log_dir = tmp_path_factory.mktemp("fuzz-stack")
    aws = start_piece("aws", "aws", env, log_dir)
    try:
        api = start_piece("api", "api", {**env, "PORT": str(port), "AWS_ENDPOINT_URL": aws_url}, log_dir)
        try:
            yield f"http://{LOOPBACK}:{port}"
        finally:
            api.stop()
    finally:
        aws.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not STATUSES:
        return
    by_status: Counter[str] = Counter()
    for label, count in STATUSES.items():
        by_status[label.rsplit(" ", 1)[1]] += count
    statuses = ", ".join(f"{status} x{count}" for status, count in sorted(by_status.items()))
    operations = len({label.rsplit(" ", 1)[0] for label in STATUSES})
    terminalreporter.write_line(
        f"fuzz: {sum(STATUSES.values())} requests over {operations} method-path pairs; statuses {statuses}"
    )
