"""`make run`'s stack, driven over HTTP as a client would drive it."""

from __future__ import annotations

import itertools
import math
import os
import re
import subprocess
import uuid
from datetime import datetime

import pytest

from tests.e2e.stack import E2E_SETTINGS, ROOT, Stack

pytestmark = pytest.mark.e2e

README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
DOCUMENTED_API = "http://127.0.0.1:8000"


def _seconds(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def _local_curl_blocks(markdown: str) -> list[str]:
    """The shell blocks that call the API on this machine; those aimed at a deployed stage are left alone."""
    blocks = re.findall(r"```(?:bash|sh|shell)\n(.*?)```", markdown, flags=re.DOTALL)
    return [
        block
        for block in blocks
        if DOCUMENTED_API in block and re.search(r"^\s*(\S+=\$\()?curl ", block, flags=re.MULTILINE)
    ]


def _run_as_shown(script: str, api: str) -> subprocess.CompletedProcess[str]:
    # Only the documented address changes, and TASKPROC_URL is set as `make run` says to set it
    # (the README's commands read it). `curl` fails on an HTTP error status here, so a command
    # that "works" has to get a 2xx answer. The README's retry loop may take a minute or more.
    prelude = 'curl() { command curl --fail-with-body --max-time 20 "$@"; }\n'
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", prelude + script.replace(DOCUMENTED_API, api)],
        capture_output=True,
        text=True,
        timeout=150,
        cwd=ROOT,
        env={**os.environ, "TASKPROC_URL": api},
    )


def test_every_curl_command_in_the_readme_and_the_docs_works_as_shown(stack: Stack) -> None:
    blocks = _local_curl_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 4, "the README should show its walk-through as bash blocks of curl commands"
    blocks += [block for doc in DOCS for block in _local_curl_blocks(doc.read_text(encoding="utf-8"))]
    for block in blocks:
        result = _run_as_shown(block, stack.api.base_url)
        assert result.returncode == 0, f"{block}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    # The walk-through's tasks all end, and as the README says they do.
    assert stack.api.wait_terminal("task-001")["status"] in {"COMPLETED", "FAILED"}
    assert stack.api.wait_terminal("task-002")["status"] in {"COMPLETED", "FAILED"}


def test_the_commands_printed_at_start_work(stack: Stack) -> None:
    lines = [line.strip() for line in stack.process.output().splitlines()]
    assert f"export TASKPROC_URL={stack.api.base_url}" in lines
    printed = [line for line in lines if line.startswith("curl ")]
    assert len(printed) >= 2
    for command in printed:
        result = _run_as_shown(command.replace(stack.api.base_url, DOCUMENTED_API), stack.api.base_url)
        assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"


def test_health_answers_ok(stack: Stack) -> None:
    assert stack.api.call("GET", "/health") == (200, {"status": "ok", "reason": None, "correlationId": None})


def test_task_with_failure_chance_0_completes_in_one_attempt(stack: Stack) -> None:
    task_id = f"sure-{uuid.uuid4()}"
    stack.api.publish(task_id, {"simulation": {"failureChance": 0, "executionTime": 50}})

    view = stack.api.wait_terminal(task_id)

    assert view["status"] == "COMPLETED"
    assert view["attempts"] == 1
    assert [entry["outcome"] for entry in view["history"]] == ["succeeded"]


def test_task_with_failure_chance_1_fails_after_max_attempts_with_backoff_between_attempts(stack: Stack) -> None:
    max_attempts = int(E2E_SETTINGS["MAX_ATTEMPTS"])
    base, cap = float(E2E_SETTINGS["BACKOFF_BASE_SECONDS"]), float(E2E_SETTINGS["BACKOFF_MAX_SECONDS"])
    task_id = f"doomed-{uuid.uuid4()}"
    stack.api.publish(task_id, {"simulation": {"failureChance": 1}})

    view = stack.api.wait_terminal(task_id, timeout=40)

    assert view["status"] == "FAILED"
    assert view["attempts"] == max_attempts
    history = view["history"]
    assert [entry["outcome"] for entry in history] == ["failed"] * max_attempts
    for earlier, later in itertools.pairwise(history):
        gap = _seconds(later["startedAt"]) - _seconds(earlier["finishedAt"])
        ceiling = min(cap, base * 2 ** (earlier["attempt"] - 1))
        # Equal jitter keeps at least half the ceiling, in whole seconds as SQS takes it.
        shortest = max(1, math.ceil(ceiling / 2))
        assert gap >= shortest - 0.1, f"attempt {later['attempt']} started {gap:.2f} s after the failure"
    assert "failureChance 1" in view["lastError"]


def test_error_message_task_fails(stack: Stack) -> None:
    task_id = stack.api.create({"message": "ERROR"})

    view = stack.api.wait_terminal(task_id, timeout=40)

    assert view["status"] == "FAILED"
    assert view["attempts"] == int(E2E_SETTINGS["MAX_ATTEMPTS"])
    assert "ERROR" in view["lastError"]


def test_success_message_task_completes(stack: Stack) -> None:
    task_id = stack.api.create({"message": "SUCCESS", "simulation": {"failureChance": 0}})

    assert stack.api.wait_terminal(task_id)["status"] == "COMPLETED"


def test_duplicate_publish_runs_once(stack: Stack) -> None:
    task_id = f"twice-{uuid.uuid4()}"
    payload = {"simulation": {"failureChance": 0, "executionTime": 200}}

    first = stack.api.publish(task_id, payload)
    second = stack.api.publish(task_id, payload)
    view = stack.api.wait_terminal(task_id)

    assert (first["duplicate"], second["duplicate"]) == (False, True)
    assert view["status"] == "COMPLETED"
    assert view["attempts"] == 1
    assert len(view["history"]) == 1


def test_readme_opens_with_the_two_commands_and_the_docs_describe_the_offline_stack() -> None:
    first_screen = "\n".join(README.read_text(encoding="utf-8").splitlines()[:8])
    assert "make run" in first_screen and "make test" in first_screen
    text = (ROOT / "docs" / "offline.md").read_text(encoding="utf-8")
    for target in ("make run", "make aws", "make api", "make worker"):
        assert target in text
    assert "in memory" in text


def test_every_link_into_docs_resolves() -> None:
    for document in [README, *DOCS]:
        for target in re.findall(r"\]\(((?:docs/)?[\w.-]+\.(?:md|png))\)", document.read_text(encoding="utf-8")):
            base = ROOT if document == README else document.parent
            assert (base / target).exists(), f"{document.name} links to {target}, which does not exist"
