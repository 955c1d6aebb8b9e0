"""The ticker: once a minute, send the messages of the timers that are due, then run the other tick jobs.

One scheduled function (app.py's `tick`, `Rate(1, unit=Rate.MINUTES)`) does all the time-driven
work: it reads each shard of the schedules table's sparse index `by-due` for timers due before
the next ticks (one Query per shard, never a Scan, bounded pages), sends each one's message to
its class's queue with the rest of its wait as SQS's DelaySeconds, so the task starts on time
rather than up to a tick late, and then runs every job in TICK_JOBS: the code's schedules written
once per container, then the schedules' due firings (chalicelib/schedules/). Why a ticker rather
than EventBridge Scheduler, and what it costs: docs/architecture.md, "Time".

A timer walks three steps, each safe to repeat after a death between any two:

    send      the message, DelaySeconds = max(0, runAt - now)        (SendMessage)
    record    its MessageId as the task's lastMessageId, if the task  (UpdateItem, attribute_exists(id)
              is stored and has no message yet                        AND attribute_not_exists(lastMessageId))
    delete    the timer, if it is still this one                     (DeleteItem, dueAt = as read)

Before the send it reads the task: a task that has ended (cancelled before its time) or that
already has its message (a tick died after its record) gets its timer deleted and nothing sent.
A tick that died after its send sends again: the task then has two copies of its message, and
the consumer runs it once (the lease, and attempts counted on the item) and drops the other.
Two tickers in the same minute do the same. A task whose publish died before its put has no
item: its message is sent all the same, and the consumer's acquire stores the task from it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from chalicelib import metrics
from chalicelib.consume.terminal import after_terminal
from chalicelib.logs import log_event
from chalicelib.metrics import Metric
from chalicelib.runtime import Runtime
from chalicelib.schedules.declared import reconcile
from chalicelib.schedules.engine import fire_due
from chalicelib.tasks.record import iso_from_ms
from chalicelib.tick.timers import DUE_SHARDS, Timer

logger = logging.getLogger(__name__)

# A job of the tick: given the runtime and the schedules' time (chalicelib/tick/clock.py), it does its
# work and returns counts for the tick's log line.
TickJob = Callable[[Runtime, datetime], Mapping[str, int]]


def reconcile_declared(rt: Runtime, now: datetime) -> Mapping[str, int]:
    """The code's schedules (`@task_type(..., schedules=[...])`) written to the table once per container,
    so a deploy's new code brings its cron lines with it; one that fails is tried again next tick."""
    if rt.declared_schedules_reconciled:
        return {}
    counts = reconcile(rt, now)
    rt.declared_schedules_reconciled = True
    return counts


# Run after the timers, in order, every tick; one that raises is logged and the others still run.
# The declared schedules first, so a schedule a deploy just added fires on the tick that wrote it.
TICK_JOBS: list[TickJob] = [reconcile_declared, fire_due]

TICK_SECONDS = 60
# A timer is sent up to this many ticks before it is due, with the rest as its message's delay:
# one tick missed or late still leaves its message on time.
LOOKAHEAD_TICKS = 2
# Timers dispatched side by side: each takes a read, a send, a write and a delete.
MAX_WORKERS = 8

DISPATCHED = "timersDispatched"
SKIPPED = "timersSkipped"  # the task had ended: its timer was deleted unsent
SETTLED = "timersSettled"  # the task already had its message: only the timer was deleted
FAILED = "timersFailed"  # AWS failed: the timer stays for the next tick
JOBS_FAILED = "jobsFailed"


def lookahead_ms(rt: Runtime) -> int:
    """How far ahead of now a tick sends timers: LOOKAHEAD_TICKS of the tick's period on the wall clock
    (a minute each on AWS; offline, a minute of the scaled schedules' clock)."""
    return round(LOOKAHEAD_TICKS * rt.schedule_clock.wall_seconds_for(TICK_SECONDS) * 1000)


def tick(rt: Runtime, jobs: list[TickJob] | None = None) -> dict[str, int]:
    """Dispatch the due timers, then run `jobs` (TICK_JOBS by default); returns the counts it logged."""
    counts = dispatch_due(rt)
    now = rt.schedule_clock.now()
    for job in TICK_JOBS if jobs is None else jobs:
        try:
            for name, value in job(rt, now).items():
                counts[name] = counts.get(name, 0) + value
        except Exception:  # one job's failure must not stop the others
            logger.exception("tick job %s failed", getattr(job, "__name__", job))
            counts[JOBS_FAILED] = counts.get(JOBS_FAILED, 0) + 1
    log_event("tick", **counts)
    return counts


def dispatch_due(rt: Runtime) -> dict[str, int]:
    """Send the message of every timer due within the lookahead; counts by outcome."""
    now_ms = rt.store.now_ms()
    until_ms = now_ms + lookahead_ms(rt)
    counts = dict.fromkeys((DISPATCHED, SKIPPED, SETTLED, FAILED), 0)
    due: list[Timer] = []
    for shard in range(DUE_SHARDS):
        try:
            due.extend(rt.timers.due_in(shard, until_ms))
        except Exception:  # the other shards' timers still go
            logger.exception("timers of shard %d not read", shard)
            counts[FAILED] += 1
    if due:
        with ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(due))) as pool:
            for outcome in pool.map(lambda timer: _dispatch_safely(rt, timer), due):
                counts[outcome] += 1
    return counts


def _dispatch_safely(rt: Runtime, timer: Timer) -> str:
    try:
        return dispatch(rt, timer)
    except Exception:  # one timer's failure must not stop the others
        log_event("timer_failed", logging.ERROR, taskId=timer.task_id, runAt=iso_from_ms(timer.due_ms))
        logger.exception("timer of task %r not dispatched", timer.task_id)
        return FAILED


def dispatch(rt: Runtime, timer: Timer) -> str:
    """Send one timer's message, record it on its task, delete the timer; the outcome's count name.

    Raises:
        QueueError, StoreError: AWS failed; the timer stays, and the next tick takes it up again.
    """
    task = rt.store.get(timer.task_id)
    if task is not None and (task.is_terminal or task.last_message_id):
        if task.is_terminal:
            # Cancelled before its time, it has no message to come back: the timer is what repairs a
            # follow-up (its callback) whose publish died with the cancel, so it goes only after this.
            after_terminal(rt, task.task, task)
        rt.timers.delete(timer)
        outcome = SKIPPED if task.is_terminal else SETTLED
        log_event("timer_deleted", taskId=timer.task_id, status=task.status.value, outcome=outcome)
        return outcome
    delay = timer.delay_seconds(rt.store.now_ms())
    message_id = rt.queue_for(timer.priority).send(timer.body, dict(timer.attributes), delay_seconds=delay)
    if task is not None:
        rt.store.note_dispatched(timer.task_id, message_id)
    rt.timers.delete(timer)
    log_event(
        "timer_dispatched",
        taskId=timer.task_id,
        messageId=message_id,
        runAt=iso_from_ms(timer.due_ms),
        delaySeconds=delay,
        stored=task is not None,
    )
    metrics.count(Metric.TIMERS_DISPATCHED, timer.task_type)
    return DISPATCHED
