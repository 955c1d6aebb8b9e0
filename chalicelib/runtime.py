"""What the handlers work with: settings, the store and the queues, built once per container."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from chalicelib.callbacks.signing import SigningKeys
from chalicelib.callbacks.url import UrlPolicy
from chalicelib.consume.deadline import invocation_seconds
from chalicelib.flow.gate import Gate
from chalicelib.flow.pause import Pauses
from chalicelib.flow.table import FlowTable
from chalicelib.handlers import REGISTRY
from chalicelib.operate.cursor import CursorKeys
from chalicelib.operate.operator_store import OperatorStore
from chalicelib.publish.wait import WaitClock
from chalicelib.registry import Registry
from chalicelib.settings import Settings, load_settings
from chalicelib.tasks.priority import Priority
from chalicelib.tasks.queue import Queue, QueueAges
from chalicelib.tasks.store import TaskStore
from chalicelib.tick.clock import ScheduleClock
from chalicelib.tick.timers import TimerStore

if TYPE_CHECKING:
    from chalicelib.schedules.store import ScheduleStore


def aws_config(settings: Settings) -> Config:
    """The botocore client configuration of every AWS call, from the stage's settings.

    botocore's standard retry mode retries throttling, transient 5xx and connection
    errors with jittered exponential backoff under a retry quota. Few attempts with
    short timeouts keep a call, and so a request of the API or a consumer's batch,
    well inside its function's timeout (settings.aws_call_seconds); the defaults'
    30 s of connect and read per attempt would outlast the function several times.
    What survives them is an answer of 503 from the API, or a record whose message
    comes back.
    """
    return Config(
        retries={"mode": "standard", "total_max_attempts": settings.AWS_MAX_ATTEMPTS},
        connect_timeout=settings.AWS_CONNECT_TIMEOUT_SECONDS,
        read_timeout=settings.AWS_READ_TIMEOUT_SECONDS,
        # A batch runs its ten records at once; the offline worker runs several batches in
        # one process. Fewer connections than threads would open and drop one per call.
        max_pool_connections=50,
    )


@dataclass
class Runtime:
    settings: Settings
    store: TaskStore
    operator_store: OperatorStore
    tasks_queue: Queue  # the default class's queue
    dead_letters: Queue
    queue_ages: QueueAges
    cursor_keys: CursorKeys
    flow: FlowTable
    pauses: Pauses
    rng: random.Random = field(default_factory=random.Random)
    registry: Registry = field(default_factory=lambda: REGISTRY)
    # The high and low classes' queues; the default class's is `tasks_queue`.
    class_queues: dict[Priority, Queue] = field(default_factory=dict)
    # The stage's DynamoDB client, for stores built on first use (the schedules table's).
    dynamodb: Any = None
    # The schedules' time (chalicelib/tick/clock.py): the wall clock except on a scaled offline stack.
    schedule_clock: ScheduleClock = field(default_factory=ScheduleClock)
    # Whether this container's ticker has written the code's schedules to the table (chalicelib/tick/ticker.py).
    declared_schedules_reconciled: bool = False
    # The key that signs completion callbacks (chalicelib/callbacks/signing.py): only consumers read it.
    callback_keys: SigningKeys = field(default_factory=lambda: SigningKeys(None, None, lambda: None))
    # The long-poll's clock and sleep (chalicelib/publish/wait.py); tests move a fake one.
    wait_clock: WaitClock = field(default_factory=WaitClock)

    def queue_for(self, priority: Priority) -> Queue:
        """The queue of a priority class: every message of a task of that class goes there."""
        return self.tasks_queue if priority is Priority.DEFAULT else self.class_queues[priority]

    def priority_of_queue(self, queue_name: str | None) -> Priority | None:
        """The class whose queue is named `queue_name` (a Lambda record's `eventSourceARN` names it), else None."""
        return next((p for p in Priority if queue_name is not None and self.queue_for(p).name == queue_name), None)

    @cached_property
    def callback_urls(self) -> UrlPolicy:
        """The stage's rules for callback URLs (chalicelib/callbacks/url.py); tests may set their own."""
        deployed = self.settings.AWS_LAMBDA_FUNCTION_NAME is not None
        return UrlPolicy.of(deployed, self.settings.CALLBACK_ALLOWED_HOSTS)

    @cached_property
    def gate(self) -> Gate:
        """The flow policies asked before every attempt (chalicelib/flow/gate.py), built on first use."""
        return Gate.build(self.flow, self.pauses, self.settings.LEASE_SECONDS, self.rng)

    @cached_property
    def schedules(self) -> ScheduleStore:
        """The schedules table's schedules (chalicelib/schedules/store.py), built on first use.

        Imported here: only the schedule routes and the ticker use it, and its models are not
        a consumer's to build at a cold start (tests/unit/test_cold_start.py).
        """
        from chalicelib.schedules.store import ScheduleStore

        return ScheduleStore(self.dynamodb, self.settings.SCHEDULES_TABLE)

    @cached_property
    def timers(self) -> TimerStore:
        """The timers of tasks that run at a time (chalicelib/tick/timers.py), in the schedules table."""
        return TimerStore(self.dynamodb, self.settings.SCHEDULES_TABLE)


def build_runtime(
    settings: Settings, session: boto3.session.Session | None = None, clock: Callable[[], float] = time.time
) -> Runtime:
    REGISTRY.check(settings.MAX_ATTEMPTS, settings.LEASE_SECONDS, invocation_seconds(settings))
    session = session or boto3.session.Session()
    config = aws_config(settings)
    dynamodb = session.client("dynamodb", config=config)
    sqs = session.client("sqs", config=config)
    flow = FlowTable(dynamodb, settings.FLOW_TABLE, clock=clock)
    return Runtime(
        settings=settings,
        store=TaskStore(dynamodb, settings.TASKS_TABLE, retention_days=settings.RETENTION_DAYS, clock=clock),
        operator_store=OperatorStore(
            dynamodb, settings.TASKS_TABLE, retention_days=settings.RETENTION_DAYS, clock=clock
        ),
        tasks_queue=Queue(sqs, settings.TASKS_QUEUE),
        class_queues={
            Priority.HIGH: Queue(sqs, settings.HIGH_PRIORITY_QUEUE),
            Priority.LOW: Queue(sqs, settings.LOW_PRIORITY_QUEUE),
        },
        dead_letters=Queue(sqs, settings.DEAD_LETTER_QUEUE),
        # Only `GET /stats` reads CloudWatch: its client is made on first use, not at a cold start.
        queue_ages=QueueAges(
            lambda: session.client("cloudwatch", config=config),
            clock,
            settings.METRICS_CACHE_SECONDS,
            # Offline, the embedded endpoint answers from the stack's EMF lines (local/metrics_sink.py).
            "the offline metrics sink" if os.environ.get("AWS_ENDPOINT_URL") else "CloudWatch",
        ),
        # Only listing and /health need the key, so only the API function reads the secret.
        cursor_keys=CursorKeys(
            settings.CURSOR_SECRET_ID,
            settings.TASKS_TABLE,
            lambda: session.client("secretsmanager", config=config),
            on_lambda=settings.AWS_LAMBDA_FUNCTION_NAME is not None,
        ),
        flow=flow,
        pauses=Pauses(flow, clock=clock),
        dynamodb=dynamodb,
        schedule_clock=ScheduleClock(settings.SCHEDULE_TIME_SCALE, settings.SCHEDULE_CLOCK_ORIGIN, clock),
        callback_keys=SigningKeys(
            settings.CALLBACK_SECRET_ID,
            settings.CALLBACK_SIGNING_SECRET,
            lambda: session.client("secretsmanager", config=config),
        ),
    )


_runtime: Runtime | None = None


def get_runtime() -> Runtime:
    """The container's runtime, built on first use so a cold start pays only for what it uses.

    Raises:
        SettingsError: the environment is incomplete or invalid.
        RegistrationError: a task type's options contradict the settings.
    """
    global _runtime
    if _runtime is None:
        _runtime = build_runtime(load_settings())
    return _runtime


def set_runtime(runtime: Runtime | None) -> None:
    """Use `runtime` from now on (tests inject their own); None rebuilds it from the environment."""
    global _runtime
    load_settings.cache_clear()
    _runtime = runtime
