"""The scheduled functions: every `@app.schedule` handler of app.py, run on its rate as EventBridge would.

Chalice keeps a scheduled function on the app as a `ScheduledEventConfig` in `app.event_sources`,
its expression a `Rate` (or a `rate(...)` string). Offline each gets a thread that invokes it
once per period with an EventBridge "Scheduled Event" and a Lambda context, on a fixed grid
(a slow run does not push the next ones later). The period runs on the schedules' clock
(chalicelib/tick/clock.py): with SCHEDULE_TIME_SCALE=60 a one-minute rate runs every wall second, so
a test sees a minutely schedule fire in seconds. Cron expressions are not run offline.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from chalice.app import Rate, ScheduledEventConfig
from chalice.local import LambdaContext

logger = logging.getLogger(__name__)

RATE_UNIT_SECONDS = {Rate.MINUTES: 60, Rate.HOURS: 3600, Rate.DAYS: 86_400}
_RATE_TEXT = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
ACCOUNT = "000000000000"


def rate_seconds(expression: Any) -> int | None:
    """The period of a rate expression, in seconds; None for anything else (a cron)."""
    if isinstance(expression, Rate):
        return expression.value * RATE_UNIT_SECONDS[expression.unit]
    if isinstance(expression, str) and (match := _RATE_TEXT.match(expression.strip())):
        unit = match.group(2).rstrip("s").upper() + "S"
        return int(match.group(1)) * RATE_UNIT_SECONDS[unit]
    return None


@dataclass(frozen=True)
class ScheduledFunction:
    """One `@app.schedule` handler, its name as `chalice deploy` gives it, and its period."""

    function_name: str
    handler: Callable[[dict[str, Any], Any], Any]
    period_seconds: float
    timeout_seconds: int
    region: str

    def event(self) -> dict[str, Any]:
        """What EventBridge sends a scheduled function."""
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": ACCOUNT,
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": self.region,
            "resources": [f"arn:aws:events:{self.region}:{ACCOUNT}:rule/{self.function_name}"],
            "detail": {},
        }

    def invoke(self) -> None:
        context = LambdaContext(self.function_name, memory_size=128, max_runtime_ms=self.timeout_seconds * 1000)
        self.handler(self.event(), context)


def scheduled_functions(
    app_module: Any,
    prefix: str,
    wall_seconds_for: Callable[[float], float],
    timeout_of: Callable[[str], int],
    region: str,
) -> list[ScheduledFunction]:
    """The app's scheduled functions with a rate, each period made wall seconds by `wall_seconds_for`."""
    found = []
    for source in app_module.app.event_sources:
        if not isinstance(source, ScheduledEventConfig):
            continue
        period = rate_seconds(source.schedule_expression)
        if period is None:
            logger.warning("%s: only rate expressions run offline, not %r", source.name, source.schedule_expression)
            continue
        found.append(
            ScheduledFunction(
                f"{prefix}-{source.name}",
                getattr(app_module, source.name),
                wall_seconds_for(period),
                timeout_of(source.name),
                region,
            )
        )
    return found


class ScheduleRunner:
    """Invokes one scheduled function every period until `stop` is set; a failed run is logged, not fatal."""

    def __init__(self, function: ScheduledFunction, stop: threading.Event) -> None:
        self.function = function
        self._stop = stop
        self.runs = 0
        self._thread = threading.Thread(target=self._run, name=f"schedule-{function.function_name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> bool:
        """Wait for a run in progress after `stop` is set; True when the thread ended."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        period = self.function.period_seconds
        started = time.monotonic()
        # As a rate rule does: the first run one period after the function exists.
        while not self._stop.wait(max(0.0, started + (self.runs + 1) * period - time.monotonic())):
            try:
                self.function.invoke()
            except Exception:
                logger.exception("%s failed", self.function.function_name)
            self.runs += 1
            behind = int((time.monotonic() - started) / period) - self.runs
            if behind > 0:  # a run outlasted its periods: those are skipped, not run back to back
                self.runs += behind
