"""The consumers: every `@app.on_sqs_message` handler of app.py, each behind its own local event source mapping;
and every `@app.schedule` handler, run on its rate (local/scheduled.py)."""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable
from typing import Any

from botocore.config import Config as BotoConfig
from chalice.app import SQSEventConfig
from chalice.local import Clock, LambdaContext

from local.aws import client
from local.config import LocalConfig, apply_environment
from local.poller import EventSourceMapping, Handler, SqsPoller
from local.scheduled import ScheduleRunner, scheduled_functions

logger = logging.getLogger(__name__)

# How long a stopping worker waits for its in-flight batches before it gives up on them;
# a batch cut short is left to its visibility timeout, never half-settled.
DRAIN_SECONDS = 30.0
# Every poller thread holds a connection during its long poll; the default pool has ten.
POLLER_CLIENT = BotoConfig(retries={"mode": "standard", "max_attempts": 3}, max_pool_connections=50, read_timeout=30)


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def event_source_mappings(app_module: Any, config: LocalConfig) -> list[tuple[EventSourceMapping, Handler]]:
    """The SQS event sources that app.py declares, configured as `chalice deploy` would configure them."""
    report = _bool(config.app_environment.get("REPORT_BATCH_ITEM_FAILURES", "false"))
    found: list[tuple[EventSourceMapping, Handler]] = []
    for source in app_module.app.event_sources:
        if not isinstance(source, SQSEventConfig) or source.queue is None:
            continue
        cap = source.maximum_concurrency or config.worker_concurrency
        mapping = EventSourceMapping(
            function_name=f"{config.app_name}-{config.stage}-{source.name}",
            queue_name=source.queue,
            batch_size=source.batch_size,
            concurrency=min(cap, config.worker_concurrency),
            timeout_seconds=config.lambda_timeout(source.name),
            poll_wait_seconds=config.poll_wait_seconds,
            report_batch_item_failures=report,
            batching_window_seconds=source.maximum_batching_window_in_seconds,
        )
        found.append((mapping, getattr(app_module, source.name)))
    return found


def invocation_contexts(mapping: EventSourceMapping, time_source: Clock | None = None) -> Callable[[], LambdaContext]:
    """A new Lambda context per invocation, its remaining time counting down from the function's timeout.

    The poller makes one as it invokes a batch, so the clock starts then, as Lambda's does
    (chalicelib/consume/deadline.py reads it for the attempts' deadlines).
    """

    def context() -> LambdaContext:
        timeout_ms = mapping.timeout_seconds * 1000
        return LambdaContext(mapping.function_name, memory_size=128, max_runtime_ms=timeout_ms, time_source=time_source)

    return context


class Worker:
    """Polls every event source of the app until stopped."""

    def __init__(self, config: LocalConfig, stop: threading.Event) -> None:
        self._config = config
        self._stop = stop
        self.pollers: list[SqsPoller] = []
        self.schedules: list[ScheduleRunner] = []

    def start(self) -> bool:
        """Import the app, find its queues and start polling; False when stopped before the queues existed.

        Raises:
            SettingsError: the app's settings are invalid (raised by the app's own settings module).
        """
        apply_environment(self._config)
        app_module = importlib.import_module("app")
        from chalicelib.runtime import get_runtime
        from chalicelib.settings import load_settings

        settings = load_settings()  # fail now, with the setting's name, rather than inside the first batch
        sqs = client("sqs", self._config, POLLER_CLIENT)
        for mapping, handler in event_source_mappings(app_module, self._config):
            poller = SqsPoller(sqs, mapping, handler, invocation_contexts(mapping), self._config.region, self._stop)
            if not poller.resolve_queue():
                return False
            self.pollers.append(poller)
        clock = get_runtime().schedule_clock
        if settings.SCHEDULE_TIME_SCALE != 1 and settings.SCHEDULE_CLOCK_ORIGIN is None:
            logger.warning("SCHEDULE_TIME_SCALE without SCHEDULE_CLOCK_ORIGIN (`make run` sets both): wall time")
        prefix = f"{self._config.app_name}-{self._config.stage}"
        for function in scheduled_functions(
            app_module, prefix, clock.wall_seconds_for, self._config.lambda_timeout, self._config.region
        ):
            self.schedules.append(ScheduleRunner(function, self._stop))
        for poller in self.pollers:
            poller.start()
            mapping = poller.mapping
            logger.info(
                "%s <- %s (batch %d, window %d s, %d concurrent batches, partial batch responses %s)",
                mapping.function_name,
                mapping.queue_name,
                mapping.batch_size,
                mapping.batching_window_seconds,
                mapping.concurrency,
                "on" if mapping.report_batch_item_failures else "off",
            )
        for runner in self.schedules:
            runner.start()
            logger.info("%s every %.3g s", runner.function.function_name, runner.function.period_seconds)
        return True

    def drain(self, timeout: float = DRAIN_SECONDS) -> bool:
        """Wait for in-flight batches after `stop` is set; True when every one finished."""
        return all([*(poller.join(timeout) for poller in self.pollers), *(r.join(timeout) for r in self.schedules)])
