"""The schedules' clock: wall time on AWS; on the offline stack, optionally a faster one.

A minutely schedule would take an hour to show sixty firings; offline, a test wants to see
them in a minute. `SCHEDULE_TIME_SCALE` runs the schedules' time that many times faster
than the wall clock from `SCHEDULE_CLOCK_ORIGIN` (epoch seconds, the same for every process
of one offline stack, which the launcher sets): schedule time = origin + (wall - origin) *
scale. Only schedules and their firing ids read this clock; task times (`runAt`, leases,
backoff) stay on the wall clock. Deployed stages refuse a scale other than 1 (settings).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime


@dataclass(frozen=True)
class ScheduleClock:
    scale: float = 1.0
    origin: float | None = None
    wall: Callable[[], float] = field(default=time.time)

    def seconds(self) -> float:
        """Schedule time, in epoch seconds."""
        now = self.wall()
        if self.origin is None or self.scale == 1.0:
            return now
        return self.origin + (now - self.origin) * self.scale

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.seconds(), UTC)

    def wall_seconds_for(self, schedule_seconds: float) -> float:
        """How many wall-clock seconds a span of schedule time takes (a tick's period offline)."""
        return schedule_seconds / self.scale
