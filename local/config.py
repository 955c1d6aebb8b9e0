"""The offline stack's settings: the Chalice stage's values, then the environment's overrides.

`chalice local` writes `.chalice/config.json`'s environment variables over the
process environment, so `MAX_ATTEMPTS=2 chalice local` would still run with the
stage's value. The offline stack resolves the values itself, in this order:
the stage's values (as Chalice merges them), then any variable of the same name
set in the environment (except the resource names, which the stack derives from
the stage), then the endpoint and credentials of the embedded AWS.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chalice.config import Config

PROJECT_DIR = Path(__file__).resolve().parent.parent
CHALICE_CONFIG = PROJECT_DIR / ".chalice" / "config.json"
TEMPLATE = PROJECT_DIR / "infra" / "resources.yaml"

LOOPBACK = "127.0.0.1"
DEFAULT_STAGE = "local"
DEFAULT_PORT = 8000
DEFAULT_AWS_PORT = 4566
DEFAULT_CONSOLE_PORT = 8001
DEFAULT_REGION = "us-east-1"
# Lambda starts five concurrent pollers per SQS event source; the same here, so
# several batches are in flight unless the event source caps its concurrency.
DEFAULT_WORKER_CONCURRENCY = 5
# Lambda long-polls for up to 20 s; a shorter wait lets Ctrl-C stop a worker quickly.
DEFAULT_POLL_WAIT_SECONDS = 2
# The template's default, used when the stage names none.
DEFAULT_QUEUE_VISIBILITY_TIMEOUT = 180
# The embedded endpoint accepts any credentials; these keep real ones from ever being sent.
EMBEDDED_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}
# The stack names its resources after the stage; the app must use those names, so
# the environment cannot override them.
RESOURCE_NAMES = frozenset(
    {
        "TASKS_TABLE",
        "FLOW_TABLE",
        "SCHEDULES_TABLE",
        "TASKS_QUEUE",
        "HIGH_PRIORITY_QUEUE",
        "LOW_PRIORITY_QUEUE",
        "DEAD_LETTER_QUEUE",
    }
)
# Chalice's default function timeout when the stage sets none.
DEFAULT_LAMBDA_TIMEOUT = 60


class ConfigError(Exception):
    """A value of the offline stack's configuration is missing or invalid; the message names it."""


@dataclass(frozen=True)
class LocalConfig:
    """Everything one piece of the offline stack needs to start."""

    stage: str
    app_name: str
    port: int
    aws_port: int
    endpoint_url: str
    embedded_endpoint: bool
    region: str
    queue_visibility_timeout: int
    max_attempts: int
    worker_concurrency: int
    poll_wait_seconds: int
    # The app's environment: the stage's variables with the overrides applied.
    app_environment: dict[str, str] = field(default_factory=dict)
    console_port: int = DEFAULT_CONSOLE_PORT

    @property
    def api_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def stack_name(self) -> str:
        return f"{self.app_name}-{self.stage}"

    def process_environment(self) -> dict[str, str]:
        """The variables a piece sets in its own process before it imports the app."""
        env = dict(self.app_environment)
        env["AWS_ENDPOINT_URL"] = self.endpoint_url
        env["AWS_DEFAULT_REGION"] = self.region
        env["AWS_REGION"] = self.region
        return env

    def lambda_timeout(self, function_name: str) -> int:
        """The stage's timeout of one Lambda function, in seconds."""
        scoped = chalice_config(self.stage).scope(self.stage, function_name)
        return int(scoped.lambda_timeout or DEFAULT_LAMBDA_TIMEOUT)


def chalice_config(stage: str, app: Any = None) -> Config:
    """Chalice's view of `.chalice/config.json` for one stage; `app`, when given, is the app it serves.

    Raises:
        ConfigError: the file is missing, not JSON, or has no such stage.
    """
    try:
        from_disk = json.loads(CHALICE_CONFIG.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {CHALICE_CONFIG.relative_to(PROJECT_DIR)}: {exc}") from exc
    if stage not in from_disk.get("stages", {}):
        raise ConfigError(f"stage {stage!r} is not in .chalice/config.json")
    # Given explicitly, the app is not imported again by Chalice (which would set the
    # stage's unresolved environment first).
    user_params = {"chalice_app": app} if app is not None else {}
    return Config(
        chalice_stage=stage,
        user_provided_params=user_params,
        config_from_disk=from_disk,
        default_params={"project_dir": str(PROJECT_DIR)},
    )


def _int(environ: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, not {raw!r}") from exc
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, not {value}")
    return value


def load_config(environ: Mapping[str, str] | None = None, stage: str | None = None) -> LocalConfig:
    """Resolve the offline stack's configuration.

    Raises:
        ConfigError: a value is missing or invalid.
    """
    environ = os.environ if environ is None else environ
    stage = stage or environ.get("STAGE") or DEFAULT_STAGE
    config = chalice_config(stage)
    stage_values = {name: str(value) for name, value in config.environment_variables.items()}
    app_environment = {
        name: value if name in RESOURCE_NAMES else environ.get(name, value) for name, value in stage_values.items()
    }

    aws_port = _int(environ, "AWS_PORT", DEFAULT_AWS_PORT, 1, 65535)
    embedded_url = f"http://{LOOPBACK}:{aws_port}"
    endpoint_url = environ.get("AWS_ENDPOINT_URL") or embedded_url
    embedded = endpoint_url.rstrip("/") == embedded_url
    if embedded:
        # Never hand real credentials to the embedded endpoint: it accepts any.
        app_environment.update(EMBEDDED_CREDENTIALS)

    visibility = _int(
        {**stage_values, **environ}, "QUEUE_VISIBILITY_TIMEOUT", DEFAULT_QUEUE_VISIBILITY_TIMEOUT, 1, 43_200
    )
    max_attempts = _int(app_environment, "MAX_ATTEMPTS", 3, 1, 100)
    event_cap = _int(app_environment, "CONSUMER_MAX_CONCURRENCY", 1000, 2, 1000)
    concurrency = min(event_cap, _int(environ, "WORKER_CONCURRENCY", DEFAULT_WORKER_CONCURRENCY, 1, 100))
    return LocalConfig(
        stage=stage,
        app_name=str(config.app_name),
        port=_int(environ, "PORT", DEFAULT_PORT, 1, 65535),
        aws_port=aws_port,
        endpoint_url=endpoint_url,
        embedded_endpoint=embedded,
        region=environ.get("AWS_DEFAULT_REGION") or environ.get("AWS_REGION") or DEFAULT_REGION,
        queue_visibility_timeout=visibility,
        max_attempts=max_attempts,
        worker_concurrency=concurrency,
        poll_wait_seconds=_int(environ, "POLL_WAIT_SECONDS", DEFAULT_POLL_WAIT_SECONDS, 0, 20),
        app_environment=app_environment,
        console_port=_int(environ, "CONSOLE_PORT", DEFAULT_CONSOLE_PORT, 1, 65535),
    )


def apply_environment(config: LocalConfig) -> None:
    """Set the app's environment in this process, and make the project importable.

    Must run before `app` is imported: app.py reads its queue names at import time.
    """
    os.environ.update(config.process_environment())
    if str(PROJECT_DIR) not in sys.path:
        sys.path.insert(0, str(PROJECT_DIR))
