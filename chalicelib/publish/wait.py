"""The long-poll of `GET /tasks/{id}?waitSeconds=N`: strongly consistent reads on a schedule until the task ends.

DynamoDB has no read that blocks until an item changes, and a stream would need something
to hold the waiting request and be told; the item is one `GetItem` away, so the wait reads
it again and again. The pauses between reads start short, because most tasks a client waits
for end within a second or two of their publish, and grow to a cap that bounds how late an
end is seen: with the default schedule (0.1 s, doubling, at most 0.25 s) an end is seen at
most 0.25 s plus one read after it happens, and a wait of 20 s makes at most 82 reads, 4 a
second once the pauses reach their cap (`PollSchedule.max_reads`). Each read costs one read
unit per 4 KB of the item, as every strongly consistent `GetItem` does.

The loop is small and here rather than a retry library's because the Lambda package has
none, and because its clock and its sleep are the runtime's (`WaitClock`): the tests move
a fake one and run a consumer in the pauses, so that a wait is proved without waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

# API Gateway ends an integration at 29 s; the API function's timeout leaves the last read
# of a full wait its worst case inside it (tests/unit/test_timeouts.py).
MAX_WAIT_SECONDS = 20

Current = TypeVar("Current")


@dataclass(frozen=True)
class WaitClock:
    """The long-poll's time: a monotonic clock and a sleep. Tests give a fake pair that moves without waiting."""

    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


@dataclass(frozen=True)
class PollSchedule:
    """The pauses between a wait's reads: `first_pause` seconds, doubling up to `max_pause`."""

    first_pause: float = 0.1
    max_pause: float = 0.25

    def pauses(self) -> Iterator[float]:
        pause = self.first_pause
        while True:
            yield pause
            pause = min(pause * 2, self.max_pause)

    def max_reads(self, seconds: float) -> int:
        """The most reads a wait of `seconds` makes: the first, one after each pause, the last at the deadline."""
        reads, waited = 1, 0.0
        for pause in self.pauses():
            if waited >= seconds:
                return reads
            waited += pause
            reads += 1
        raise AssertionError("pauses() never ends")


DEFAULT_SCHEDULE = PollSchedule()


def wait_for(
    read: Callable[[], Current],
    done: Callable[[Current], bool],
    first: Current,
    seconds: float,
    clock: WaitClock,
    schedule: PollSchedule = DEFAULT_SCHEDULE,
) -> Current:
    """`first` (what a read just returned) if `done`, else what `read` returns once it is `done`, or
    after `seconds` what the last read returned. The last read is made at the deadline, and no wait
    makes more than `schedule.max_reads(seconds)` reads, whatever the clock says.

    Raises what `read` raises.
    """
    deadline = clock.now() + seconds
    current, reads, most = first, 1, schedule.max_reads(seconds)
    for pause in schedule.pauses():
        left = deadline - clock.now()
        if done(current) or left <= 0 or reads >= most:
            return current
        clock.sleep(min(pause, left))
        current, reads = read(), reads + 1
    raise AssertionError("pauses() never ends")
