"""What flow control must hold after chaos, checked on the handlers' own records of their runs.

A flow-controlled handler logs when it starts and when it ends (its own clock, not the
table's), so these checks do not trust the code they check: caps are counted from the
overlap of runs, rates from the starts in every window, pauses from starts between a
pause's effect and its resume. A run whose worker was killed has no end; it is taken to
have lasted until its deadline, which its slot outlives (chalicelib/flow/concurrency.py),
so a run started in that slot before then is a real breach, not a false one.

Pure functions over plain values, tested without a stack.
"""

from __future__ import annotations

import bisect
import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# A rate counts a start, and a pause is judged, when the gate admits it; the handler begins after
# the task's acquire, a write that faults and botocore's backoff can stretch by seconds. So rates
# and pauses are checked on the times the consumer logged with the attempt's `started` line
# (`countedMs`, `admittedMs`), each tied to a run the handler logged itself: a run with no such
# time was never admitted, which is itself a breach. How far the handlers' starts trail is a figure.


@dataclass(frozen=True)
class HandlerRun:
    """One run of a flow-controlled handler, as the handler logged it (epoch ms)."""

    task_id: str
    type: str
    key: str | None
    started_ms: int
    deadline_ms: int
    ended_ms: int | None = None  # None: its worker died during the run
    admitted_ms: int | None = None  # the consumer's `started` line: when the gate admitted it
    counted_ms: int | None = None  # ... and when a rate counted it (None: no rate, or not admitted)

    @property
    def until_ms(self) -> int:
        return self.ended_ms if self.ended_ms is not None else max(self.deadline_ms, self.started_ms)


@dataclass(frozen=True)
class Rate:
    """A rate limit as a handler type declares it: `count` starts per `window_ms`, plus `burst`."""

    count: int
    window_ms: int
    burst: int = 0

    @property
    def allowed(self) -> int:
        return self.count + self.burst


@dataclass(frozen=True)
class PauseSpan:
    """A type paused from `effective_ms` (the pause's answer said by when) until `resumed_ms` (sent)."""

    type: str
    effective_ms: int
    resumed_ms: int | None = None


def most_at_once(runs: Iterable[HandlerRun]) -> int:
    """The largest number of runs in progress at one instant (a run ending as another starts is not both)."""
    events = sorted(
        [(run.started_ms, 1) for run in runs] + [(run.until_ms, -1) for run in runs],
        key=lambda event: (event[0], event[1]),  # ends first at the same instant
    )
    running = peak = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    return peak


def over_cap(runs: Iterable[HandlerRun], caps: Mapping[str, int], key_caps: Mapping[str, int]) -> list[str]:
    """Each type (`type`) or key (`type#key`) whose runs overlapped more than its cap allows."""
    by_type: dict[str, list[HandlerRun]] = defaultdict(list)
    by_key: dict[str, list[HandlerRun]] = defaultdict(list)
    for run in runs:
        by_type[run.type].append(run)
        if run.key is not None:
            by_key[f"{run.type}#{run.key}"].append(run)
    broken = [
        f"{name} ran {most_at_once(group)} at once, cap {caps[name]}"
        for name, group in by_type.items()
        if name in caps and most_at_once(group) > caps[name]
    ]
    for name, group in by_key.items():
        cap = key_caps.get(name.split("#", 1)[0])
        if cap is not None and most_at_once(group) > cap:
            broken.append(f"{name} ran {most_at_once(group)} at once, cap {cap}")
    return broken


def most_in_window(starts: Sequence[int], window_ms: int) -> int:
    """The most starts in any half-open window [t, t + window_ms)."""
    ordered = sorted(starts)
    return max((bisect.bisect_left(ordered, start + window_ms) - i for i, start in enumerate(ordered)), default=0)


def over_rate(runs: Iterable[HandlerRun], rates: Mapping[str, Rate], key_rates: Mapping[str, Rate]) -> list[str]:
    """Each type or key whose counted starts in some window exceed rate plus burst, or (with no
    burst) came closer than the rate's interval; and each run a rate never counted."""
    starts: dict[str, list[int]] = defaultdict(list)
    broken = []
    for run in runs:
        if run.type not in rates and run.type not in key_rates:
            continue
        if run.counted_ms is None:
            broken.append(f"{run.task_id} ran without a counted start")
            continue
        starts[run.type].append(run.counted_ms)
        if run.key is not None:
            starts[f"{run.type}#{run.key}"].append(run.counted_ms)
    for name, group in starts.items():
        rate = rates.get(name) if "#" not in name else key_rates.get(name.split("#", 1)[0])
        if rate is None:
            continue
        most = most_in_window(group, rate.window_ms)
        if most > rate.allowed:
            broken.append(f"{name} started {most} in one window of {rate.window_ms} ms, allowed {rate.allowed}")
        # Without a burst the starts are spaced by the emission interval, which a short run with
        # fewer starts than the rate's n can still break.
        spacing = rate.window_ms // rate.count
        ordered = sorted(group)
        close = [later - earlier for earlier, later in itertools.pairwise(ordered) if later - earlier < spacing]
        if rate.burst == 0 and close:
            broken.append(f"{name} started twice {min(close)} ms apart, spaced at least {spacing} ms")
    return broken


def started_while_paused(runs: Iterable[HandlerRun], pauses: Iterable[PauseSpan]) -> list[str]:
    """The tasks of a paused type whose run was admitted between the pause's effect and its
    resume, or was never admitted at all."""
    spans = list(pauses)
    broken: set[str] = set()
    for run in runs:
        for span in spans:
            if run.type != span.type:
                continue
            admitted = run.admitted_ms
            if admitted is None or (
                span.effective_ms <= admitted and (span.resumed_ms is None or admitted < span.resumed_ms)
            ):
                broken.add(run.task_id)
    return sorted(broken)


def start_lag_ms(runs: Iterable[HandlerRun]) -> int | None:
    """The longest any handler began after the gate admitted it (None: no admitted run)."""
    lags = [run.started_ms - run.admitted_ms for run in runs if run.admitted_ms is not None]
    return max(lags, default=None)


def attempts_spent_waiting(
    items: Mapping[str, Mapping[str, Any]], runs: Iterable[HandlerRun], flow_types: Iterable[str]
) -> list[str]:
    """Flow-controlled tasks that did not complete, or whose item counts an attempt no handler run
    explains: a deferral that spent an attempt, or a task dead-lettered for waiting.

    An attempt its consumer died holding (outcome `expired`) may have no run: the kill can land
    between the lease and the handler's first line. Every flow task of the chaos plan succeeds
    when it runs, so it must end COMPLETED.
    """
    started: dict[str, int] = defaultdict(int)
    for run in runs:
        started[run.task_id] += 1
    types = set(flow_types)
    broken = []
    for task_id, item in items.items():
        if item.get("type") not in types:
            continue
        history = item.get("history") or []
        expired = sum(1 for entry in history if entry.get("kind") == "attempt" and entry.get("outcome") == "expired")
        attempts = int(str(item.get("attempts") or 0))
        if item.get("status") != "COMPLETED" or attempts - expired > started[task_id]:
            broken.append(task_id)
    return sorted(broken)


@dataclass(frozen=True)
class UniqueHold:
    """A stored task that holds a unique key: from its creation until its window ends, or until it
    ended (`ends_ms`; None while it has not, for "terminal")."""

    key: str
    task_id: str
    created_ms: int
    ends_ms: int | None


def unique_admitted_twice(holds: Iterable[UniqueHold]) -> list[str]:
    """Unique keys held by two stored tasks at once: the later one was created before the
    earlier one's hold ended."""
    by_key: dict[str, list[UniqueHold]] = defaultdict(list)
    for hold in holds:
        by_key[hold.key].append(hold)
    broken = []
    for key, group in by_key.items():
        group.sort(key=lambda hold: hold.created_ms)
        for earlier, later in itertools.pairwise(group):
            if earlier.ends_ms is None or later.created_ms < earlier.ends_ms:
                broken.append(f"{key}: {later.task_id} admitted while {earlier.task_id} held it")
                break
    return sorted(broken)
