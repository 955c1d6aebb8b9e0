"""Environment -> one validated settings object.

Every value is read from an environment variable that `.chalice/config.json`
sets per stage, so the same code runs on AWS, offline and under test. A plain pydantic
model reads them: the variables are flat and named like the fields, so pydantic-settings'
sources (dotenv files, secrets directories, a command line) would add nothing but its import
to every cold start (about a fifth of the app's import cost beyond the floor, argparse and
asyncio among it). Nor is there `from __future__ import annotations`: pydantic would compile
each field's annotation from its string at every cold start.
"""

import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Self

from pydantic import ConfigDict, Field, ValidationError, model_validator

from chalicelib.deferred import Model
from chalicelib.errors import SettingsError

# SQS caps a message's visibility timeout at 12 hours.
MAX_VISIBILITY_SECONDS = 43_200


class Settings(Model):
    """Behaviour and resource names of one stage; built on first use, when a function first reads its settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    TASKS_TABLE: str = Field(min_length=3, max_length=255)
    # Flow control's items: concurrency slots, rate buckets, pauses, unique keys (chalicelib/flow/).
    FLOW_TABLE: str = Field(min_length=3, max_length=255)
    # Schedules and timers of tasks that run at a time (chalicelib/schedules/, chalicelib/tick/ticker.py).
    SCHEDULES_TABLE: str = Field(min_length=3, max_length=255)
    # The default class's queue; the high and low classes have their own (chalicelib/tasks/priority.py).
    # Left unset, a class's queue is the task queue's name with `-high` or `-low`, as the template names it.
    TASKS_QUEUE: str = Field(min_length=1, max_length=80)
    HIGH_PRIORITY_QUEUE: str = Field(default="", max_length=80)
    LOW_PRIORITY_QUEUE: str = Field(default="", max_length=80)
    DEAD_LETTER_QUEUE: str = Field(min_length=1, max_length=80)
    MAX_ATTEMPTS: int = Field(default=3, ge=1, le=100)
    BACKOFF_BASE_SECONDS: float = Field(default=60.0, gt=0, le=MAX_VISIBILITY_SECONDS)
    BACKOFF_MAX_SECONDS: float = Field(default=900.0, gt=0, le=MAX_VISIBILITY_SECONDS)
    LEASE_SECONDS: float = Field(default=120.0, gt=0, le=MAX_VISIBILITY_SECONDS)
    DEFAULT_FAILURE_CHANCE: float = Field(default=0.3, ge=0, le=1)
    RETENTION_DAYS: int = Field(default=30, ge=1, le=3650)
    REPORT_BATCH_ITEM_FAILURES: bool = False
    # Every AWS call's botocore client: attempts in all, and each attempt's connect and read
    # timeouts. A call can take up to `aws_call_seconds()`; the API's calls must fit inside
    # its function's timeout (tests/unit/test_timeouts.py checks each deployed stage).
    AWS_MAX_ATTEMPTS: int = Field(default=2, ge=1, le=10)
    AWS_CONNECT_TIMEOUT_SECONDS: float = Field(default=0.5, gt=0, le=60)
    AWS_READ_TIMEOUT_SECONDS: float = Field(default=1.5, gt=0, le=120)
    # The task consumer function's Lambda timeout (`lambda_functions.process_tasks.lambda_timeout`),
    # so that a type's timeout is checked against it when the runtime is built (infra/stack.py
    # refuses a stage where the two differ). Unset: only the invocation's remaining time bounds it.
    CONSUMER_TIMEOUT_SECONDS: int | None = Field(default=None, ge=1, le=900)
    # The Secrets Manager secret (name or ARN) whose value signs list cursors (chalicelib/operate/cursor.py).
    # Every deployed stage names its stack's secret; only offline and in tests may it be unset.
    CURSOR_SECRET_ID: str | None = Field(default=None, min_length=1, max_length=2048)
    # Completion callbacks (chalicelib/callbacks/): the key that signs them, as the Secrets Manager
    # secret that holds it (every deployed stage names its stack's) or, offline, as the value; and
    # the hosts a deployed stage may call back, comma-separated (`api.example.com`, `*.example.com`):
    # empty, callbacks are refused there.
    CALLBACK_SECRET_ID: str | None = Field(default=None, min_length=1, max_length=2048)
    CALLBACK_SIGNING_SECRET: str | None = Field(default=None, min_length=32, max_length=4096)
    CALLBACK_ALLOWED_HOSTS: str = Field(default="", max_length=4096)
    # The schedules' clock (chalicelib/tick/clock.py): faster than the wall clock on the offline
    # stack only, from an origin every process of that stack shares.
    SCHEDULE_TIME_SCALE: float = Field(default=1.0, ge=1, le=3600)
    SCHEDULE_CLOCK_ORIGIN: float | None = Field(default=None, ge=0)
    # A `runAt` further ahead than this gets a timer (chalicelib/tick/timers.py) rather than SQS's delay,
    # whose ceiling it is by default; the offline end-to-end tests lower it to see timers in seconds.
    RUN_AT_TIMER_SECONDS: int = Field(default=900, ge=0, le=900)
    # Set by Lambda itself in every function's environment: present means a deployed stage.
    # How long `GET /stats` keeps one GetMetricData answer: CloudWatch's figures have one-minute
    # resolution; the offline sink is a local file, so the local stage asks more often.
    METRICS_CACHE_SECONDS: float = Field(default=60.0, ge=0, le=3600)
    # The task queues' visibility timeout (infra/resources.yaml's QueueVisibilityTimeout): a PENDING task
    # whose first receive died reappears after it; `GET /stuck` counts it in the dispatch bound.
    QUEUE_VISIBILITY_TIMEOUT: int = Field(default=180, ge=0, le=43_200)
    AWS_LAMBDA_FUNCTION_NAME: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _class_queues_named_after_the_task_queue(cls, values: Any) -> Any:
        if isinstance(values, dict) and values.get("TASKS_QUEUE"):
            for name, suffix in (("HIGH_PRIORITY_QUEUE", "high"), ("LOW_PRIORITY_QUEUE", "low")):
                if not values.get(name):
                    values = {**values, name: f"{values['TASKS_QUEUE']}-{suffix}"}
        return values

    @model_validator(mode="after")
    def _backoff_cap_not_below_base(self) -> Self:
        if self.BACKOFF_MAX_SECONDS < self.BACKOFF_BASE_SECONDS:
            raise ValueError("BACKOFF_MAX_SECONDS must not be below BACKOFF_BASE_SECONDS")
        return self

    @model_validator(mode="after")
    def _schedules_keep_wall_time_when_deployed(self) -> Self:
        if self.AWS_LAMBDA_FUNCTION_NAME and self.SCHEDULE_TIME_SCALE != 1:
            raise ValueError("SCHEDULE_TIME_SCALE must be 1 on a deployed stage")
        return self


# botocore's standard retry mode waits rand(0, 1) * min(2 ** i, 20) s before retry i + 1 after
# throttling (less after other errors); the worst case takes the whole of it.
MAX_BACKOFF_SECONDS = 20


def aws_call_seconds(settings: Settings) -> float:
    """The longest one AWS call can take: every attempt timing out, and the longest backoffs between."""
    attempts = settings.AWS_MAX_ATTEMPTS
    per_attempt = settings.AWS_CONNECT_TIMEOUT_SECONDS + settings.AWS_READ_TIMEOUT_SECONDS
    backoffs = sum(min(2**retry, MAX_BACKOFF_SECONDS) for retry in range(attempts - 1))
    return attempts * per_attempt + backoffs


@lru_cache(maxsize=1)
def load_settings() -> Settings:
    """Read and validate the settings once per process.

    Raises:
        SettingsError: a variable is missing or invalid; the message names it.
    """
    try:
        # Names are case-sensitive; the text of each is parsed by its field's type (lax mode).
        environ = {name: value for name, value in os.environ.items() if name in Settings.model_fields}
        return Settings.model_validate(environ)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'settings'}: {error['msg']}" for error in exc.errors()
        )
        raise SettingsError(f"invalid settings: {problems}") from exc


@dataclass(frozen=True)
class Wiring:
    """What app.py's decorators need when it is imported: event sources and route protection."""

    tasks_queue: str
    dead_letter_queue: str
    max_concurrency: int | None
    api_key_required: bool
    # Lambda's MaximumBatchingWindowInSeconds for the task consumers: 0 (invoke at once) to 300.
    batching_window_seconds: int = 0
    # The high and low classes' queues and their consumers' maximum concurrency (chalicelib/tasks/priority.py).
    high_priority_queue: str = "taskproc-dev-tasks-high"
    low_priority_queue: str = "taskproc-dev-tasks-low"
    high_max_concurrency: int | None = None
    low_max_concurrency: int | None = None


def wiring() -> Wiring:
    """Read the decorators' values from the environment when app.py is imported.

    Chalice imports app.py with the stage's environment variables set when it
    deploys or packages, so per-stage queue names and route protection have to be
    read at import time; the defaults are the `dev` stage's.
    """
    tasks_queue = os.environ.get("TASKS_QUEUE", "taskproc-dev-tasks")
    return Wiring(
        tasks_queue=tasks_queue,
        dead_letter_queue=os.environ.get("DEAD_LETTER_QUEUE", "taskproc-dev-dead-letters"),
        max_concurrency=_whole_or_none("CONSUMER_MAX_CONCURRENCY"),
        api_key_required=os.environ.get("API_KEY_REQUIRED", "false").strip().lower() in {"1", "true", "yes", "on"},
        batching_window_seconds=int(os.environ.get("CONSUMER_MAX_BATCHING_WINDOW_SECONDS") or 0),
        high_priority_queue=os.environ.get("HIGH_PRIORITY_QUEUE") or f"{tasks_queue}-high",
        low_priority_queue=os.environ.get("LOW_PRIORITY_QUEUE") or f"{tasks_queue}-low",
        high_max_concurrency=_whole_or_none("HIGH_PRIORITY_MAX_CONCURRENCY"),
        low_max_concurrency=_whole_or_none("LOW_PRIORITY_MAX_CONCURRENCY"),
    )


def _whole_or_none(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None
