"""Fixtures for the deploy path: a copy of the project, `make package` run once, moto's server."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The environment running the tests is the Makefile's VENV: make uses its python, chalice and cfn-lint.
VENV = Path(sys.prefix)
PACKAGED_STAGES = ("dev", "prod")
# Variables the app reads at import time; Chalice sets them from the stage, so none may leak in.
APP_VARIABLES = (
    "TASKS_TABLE",
    "FLOW_TABLE",
    "SCHEDULES_TABLE",
    "TASKS_QUEUE",
    "DEAD_LETTER_QUEUE",
    "CONSUMER_MAX_CONCURRENCY",
    "API_KEY_REQUIRED",
)
NOT_COPIED = shutil.ignore_patterns(
    ".git", ".venv", "build", "deployments", "deployed", "__pycache__", ".pytest_cache", ".ruff_cache"
)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for make and chalice: no AWS settings or app variables from outside."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("AWS_") and name not in APP_VARIABLES and name != "REPORT_BATCH_ITEM_FAILURES"
    }
    env.update(
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
    )
    env.update(extra)
    return env


def make(project: Path, target: str, stage: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a Makefile target in the project copy with the test environment's venv, never reinstalling it."""
    return subprocess.run(
        ["make", "--no-print-directory", "-o", f"{VENV}/.installed", f"VENV={VENV}", target, f"STAGE={stage}"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Packaged:
    """The output of `make package STAGE=<stage>`."""

    stage: str
    template_path: Path
    template: dict[str, Any]
    zip_path: Path

    def resources_of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {name: r for name, r in self.template["Resources"].items() if r["Type"] == resource_type}

    def zip_names(self) -> list[str]:
        with zipfile.ZipFile(self.zip_path) as archive:
            return archive.namelist()


@pytest.fixture(scope="session")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole work tree (tests, local/, tools/ included), so that the zip test means something."""
    copy = tmp_path_factory.mktemp("deploy") / "taskproc"
    shutil.copytree(ROOT, copy, ignore=NOT_COPIED)
    return copy


@pytest.fixture(scope="session")
def packaged(project: Path) -> dict[str, Packaged]:
    """`make package` for each stage, once per session (it fetches Linux wheels for requirements.txt)."""
    results = {}
    for stage in PACKAGED_STAGES:
        result = make(project, "package", stage, clean_env())
        assert result.returncode == 0, f"make package STAGE={stage} failed:\n{result.stdout}\n{result.stderr}"
        out = project / "build" / stage / "package"
        template_path = out / "sam.json"
        results[stage] = Packaged(stage, template_path, json.loads(template_path.read_text()), out / "deployment.zip")
    return results


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """moto's server on a free loopback port, in this process, so tests can adjust its behaviour."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
