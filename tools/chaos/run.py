"""`make chaos`: run the offline stack through duplicates, worker and API kills, AWS faults, poison and an
operator's retries and cancels, then check the invariants.

    python -m tools.chaos --tasks 300 --workers 2 --kills 3 --api-kills 3 --fault-rate 0.05 --operator-actions 80

The API is SIGKILLed (and started again) at the points its write paths are weakest: the
put after a publish's or a batch's send, an operator retry's write after its send, and
anywhere. A share of the tasks is published in batches. On a schedule clock running faster
(`--time-scale`), schedules fire and `runAt` tasks wait through timers and SQS's delay while
the workers, whose tickers fire them, die (tools/chaos/timed.py). Workflows of 20 to 100
children, chains, and completion callbacks to a receiver of the run's own go out beside the plan
(tools/chaos/compose.py, receiver.py), checked by tools/chaos/compose_invariants.py.

Prints one line of figures, e.g.
`tasks 300, duplicates 96, kills 3, api kills 3, faults 240, lost 0, double-run 0, overlaps 0, stuck 0, stranded 0,
firings checked 22, runAt tasks 10, timers used 6, missed ticks 26, workflows 4, then-not-once 0, chains 10,
steps-twice 0, steps-lost 0, callbacks 51, undelivered 0, callback-wrong 0, accepted-twice 0`,
then the operator's, the time and the composed work's figures and the other invariants, and exits 1 if any
of them broke (2 if the stack did not start).
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import boto3
import requests
from boto3.dynamodb.types import TypeDeserializer
from botocore.config import Config as BotoConfig

from tools.chaos.compose import WORKFLOW_SIZES, ComposeDriver, ComposeOptions, make_compose
from tools.chaos.compose_invariants import (
    ComposeFigures,
    check_callbacks,
    check_chains,
    check_workflows,
    compose_pending,
)
from tools.chaos.flow import PauseDriver, check_flow
from tools.chaos.flow_invariants import start_lag_ms
from tools.chaos.invariants import (
    TERMINAL,
    Expected,
    Findings,
    check_listings,
    check_operator_history,
    check_tasks,
    poison_recorded_by_id,
    runs,
    stranded_items,
)
from tools.chaos.operator_actions import ChaosOperator, OperatorOptions
from tools.chaos.plan import OVERRUN_MS, PlannedTask, Poison, make_plan
from tools.chaos.receiver import CallbackReceiver
from tools.chaos.stack import SCHEDULES_TABLE, TASKS_QUEUE, TASKS_TABLE, ApiKill, ChaosStack
from tools.chaos.time_invariants import ScaledClock
from tools.chaos.timed import TimeDriver, TimeFigures, TimeOptions
from tools.processes import DUMMY_CREDENTIALS, Piece, PieceError

HTTP_TIMEOUT_SECONDS = 10
PUBLISH_TRIES = 3  # a 503 says to try again
# A publish whose API was killed under it is tried again until a new API answers.
PUBLISH_PATIENCE_SECONDS = 30.0
RECONNECT_PAUSE_SECONDS = 0.2
BATCH_SIZE = 10
API_KILL_WAIT_SECONDS = 15.0
POLL_SECONDS = 0.5
PROGRESS_SECONDS = 5.0
MID_BATCH_WAIT_SECONDS = 15.0
ACQUIRE_POLL_SECONDS = 0.01
POISON_EVENT = '"message":"poison_recorded"'
# The driver's own AWS calls go straight to the endpoint and may retry generously.
DIRECT_CLIENT = BotoConfig(retries={"mode": "standard", "max_attempts": 5}, read_timeout=30)
# A handler's default timeout is the lease less a margin (chalicelib.registry); with this lease
# it is 0.95 s, so a simulation of OVERRUN_MS always overruns it while the lease still outlasts it.
OVERRUN_LEASE_SECONDS = 1.9
LISTED = ("FAILED", "RETRYING", "CANCELLED")
# The capped type is paused this long after the stack is up, for this long.
PAUSED_TYPE = "capped"
PAUSE_AFTER_SECONDS = 4.0
PAUSE_SECONDS = 12.0


@dataclass(frozen=True)
class ChaosOptions:
    tasks: int = 300
    workers: int = 2
    kills: int = 3
    api_kills: int = 3
    kill_every: float = 5.0
    batch_share: float = 0.3
    fault_rate: float = 0.05
    lost_answer_share: float = 0.0
    duplicate_share: float = 0.2
    requeue_share: float = 0.1
    poison_per_kind: int = 2
    max_attempts: int = 3
    concurrency: int = 8
    deadline: float = 240.0
    seed: int = 20261123
    lease_seconds: float = OVERRUN_LEASE_SECONDS
    operator_actions: int = 40
    operator_seconds: float = 60.0
    # Time (tools/chaos/timed.py): schedules and runAt tasks on a stage whose schedule clock runs
    # `time_scale` times faster, and whose runAt tasks more than `run_at_timer_seconds` ahead wait as timers.
    schedules: int = 3
    run_at_tasks: int = 10
    # A tick every 2 s: faster, and the two tickers' requests through the driver's fault proxies
    # slow the operator's own.
    time_scale: float = 30.0
    run_at_timer_seconds: int = 2
    schedules_seconds: float = 30.0
    # Composed work (tools/chaos/compose.py): workflows of 20 to 100 children, chains, and plan tasks
    # with a completion callback to the run's receiver, which answers `slow_callbacks` first deliveries late.
    workflows: int = 4
    workflow_sizes: tuple[int, ...] = WORKFLOW_SIZES  # in turn
    chains: int = 10
    callbacks: int = 40
    slow_callbacks: int = 2
    log_dir: Path | None = None
    verbose: bool = True


@dataclass
class ChaosReport:
    tasks: int = 0  # accepted by POST /publish
    duplicates: int = 0  # extra publishes and queue copies actually sent
    kills: int = 0
    api_kills: int = 0
    api_kill_points: Counter[str] = field(default_factory=Counter)  # where the API died, by ApiKill
    faults: int = 0
    rejected: int = 0  # first publishes not accepted (not an invariant: a 503 is allowed)
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    poison_sent: int = 0
    poison_recorded: int = 0
    expired_attempts: int = 0  # attempts whose worker died holding the lease
    elapsed_seconds: float = 0.0
    faults_by_kind: Counter[str] = field(default_factory=Counter)
    # Operator requests by kind and answer ("cancel 202"), and the entries they left by kind and
    # the status they met ("cancel from RETRYING", "retry from FAILED").
    operator_answers: Counter[str] = field(default_factory=Counter)
    operator_entries: Counter[str] = field(default_factory=Counter)
    bulk_retried: int = 0
    bulk_skipped: int = 0
    # How the runs whose cancel was requested mid-attempt ended: "COMPLETED" or "CANCELLED".
    cancel_requested_ends: Counter[str] = field(default_factory=Counter)
    permanent_failures: int = 0  # attempts failed permanently
    timed_out: int = 0  # attempts failed for overrunning their deadline
    long_completed: int = 0  # `steps` tasks COMPLETED, their progress checked
    heartbeat_cancels: int = 0  # attempts a cancel stopped through their heartbeat
    expired_unstarted: int = 0  # tasks that ended CANCELLED because they expired before they started
    unique_held: int = 0  # publishes a unique key held back (not accepted, not queued)
    flow_runs: int = 0  # runs the flow-controlled handlers logged
    flow_lag_ms: int | None = None  # the longest a flow handler began after its admission
    flow_deferred: int = 0  # deferrals of flow-controlled tasks the consumers logged
    pauses: int = 0  # pauses of the capped type that took effect and were lifted
    time: TimeFigures = field(default_factory=TimeFigures)
    compose: ComposeFigures = field(default_factory=ComposeFigures)
    findings: Findings = field(default_factory=Findings)

    @property
    def ok(self) -> bool:
        return not self.findings.broken()

    def line(self) -> str:
        f = self.findings
        return (
            f"tasks {self.tasks}, duplicates {self.duplicates}, kills {self.kills}, api kills {self.api_kills}, "
            f"faults {self.faults}, lost {len(f.lost)}, double-run {len(f.double_run)}, overlaps {len(f.overlaps)}, "
            f"stuck {len(f.stuck)}, stranded {len(f.stranded)}, firings checked {self.time.firings}, "
            f"runAt tasks {self.time.run_at_tasks}, timers used {self.time.timers}, "
            f"missed ticks {self.time.missed_ticks}, workflows {self.compose.workflows}, "
            f"then-not-once {len(f.then_not_once) + len(f.then_early) + len(f.not_cancelled)}, "
            f"chains {self.compose.chains}, steps-twice {len(f.step_twice) + len(f.step_after_end)}, "
            f"steps-lost {len(f.chain_lost)}, callbacks {self.compose.callbacks}, "
            f"undelivered {len(f.callback_missing)}, "
            f"callback-wrong {len(f.callback_wrong) + len(f.callback_unsigned)}, "
            f"accepted-twice {len(f.callback_repeated)}"
        )

    def compose_line(self) -> str:
        c = self.compose
        ends = ", ".join(f"{status} {count}" for status, count in c.workflow_ends.items()) or "none"
        return (
            f"compose: {c.workflows} workflows of {c.children} children (ended: {ends}; {c.thens} then ran, "
            f"{c.cancelled_children} children cancelled by a failure), {c.chains} chains ({c.steps_published} "
            f"steps published, {c.chains_ended_early} ended before their last step), {c.callbacks} callbacks "
            f"({c.delivered} delivered, {c.callbacks_failed} visibly FAILED, {c.callbacks_retried} retried; "
            f"receiver: {c.deliveries} requests, {c.refused} refused, {c.accepted_repeats} accepted repeats "
            f"deduplicated)"
        )

    def time_line(self) -> str:
        t = self.time
        late = sorted(t.lateness)
        lateness = f"{late[0]:.2f} to {late[-1]:.2f} s late, median {late[len(late) // 2]:.2f}" if late else "none"
        return (
            f"time: {t.schedules} schedules, {t.firings} firings checked ({t.skipped} skipped while the previous "
            f"ran, {t.missed} missed; {lateness}), {t.run_at_tasks} runAt tasks ({t.timers} through timers, "
            f"{t.cancelled_early} cancelled before their time), {t.ticks} ticks, {t.missed_ticks} missed"
        )

    def operator_line(self) -> str:
        answers = ", ".join(f"{kind} {count}" for kind, count in sorted(self.operator_answers.items()))
        entries = ", ".join(f"{kind} {count}" for kind, count in sorted(self.operator_entries.items()))
        ends = ", ".join(f"{status} {count}" for status, count in sorted(self.cancel_requested_ends.items()))
        return (
            f"operator: {sum(self.operator_answers.values())} requests ({answers or 'none'}); "
            f"bulk retries retried {self.bulk_retried}, skipped {self.bulk_skipped}; "
            f"history entries: {entries or 'none'}; cancel-requested runs ended {ends or 'none'}"
        )

    def details(self) -> str:
        f = self.findings
        kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(self.faults_by_kind.items()))
        checked = ", ".join(
            f"{name.replace('_', '-')} {len(ids)}"
            for name, ids in vars(f).items()
            if name not in {"lost", "double_run", "overlaps", "stuck", "stranded"}
        )
        return (
            f"completed {self.completed}, failed {self.failed}, cancelled {self.cancelled}, "
            f"rejected {self.rejected}, expired attempts {self.expired_attempts}, "
            f"permanent failures {self.permanent_failures}, timed-out attempts {self.timed_out}, "
            f"long tasks completed {self.long_completed}, heartbeat cancels {self.heartbeat_cancels}, "
            f"expired unstarted {self.expired_unstarted}, unique held back {self.unique_held}, "
            f"flow runs {self.flow_runs} (began at most {self.flow_lag_ms} ms after admission), "
            f"flow deferrals {self.flow_deferred}, pauses {self.pauses}, "
            f"poison {self.poison_recorded}/{self.poison_sent} recorded; {checked}; faults: {kinds or 'none'}; "
            f"{self.elapsed_seconds:.1f} s"
        )


class _ChaosStage(ChaosStack):
    """The chaos stack with its lease set, so that one simulation overruns its handler's deadline, and its
    schedule clock scaled, so that schedules fire every few seconds."""

    def __init__(
        self,
        *args: Any,
        lease_seconds: float,
        clock: ScaledClock,
        run_at_timer_seconds: int,
        callback_secret: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._timing = {
            "CALLBACK_SIGNING_SECRET": callback_secret,
            "LEASE_SECONDS": f"{lease_seconds:g}",
            "SCHEDULE_TIME_SCALE": f"{clock.scale:g}",
            "SCHEDULE_CLOCK_ORIGIN": repr(clock.origin),
            "RUN_AT_TIMER_SECONDS": str(run_at_timer_seconds),
        }

    def env(self, **overrides: str) -> Mapping[str, str]:
        return super().env(**{**self._timing, **overrides})


class ChaosRun:
    """One run: start the stack, send the plan while an operator acts and workers die, wait, check."""

    def __init__(self, options: ChaosOptions, log_dir: Path, say: Callable[[str], None]) -> None:
        self.options = options
        self.say = say
        self.rng = random.Random(options.seed)
        run_id = uuid.uuid4().hex[:8]
        # Schedule time runs `time_scale` times faster than the wall clock from now, in every piece.
        clock = ScaledClock(time.time(), options.time_scale)
        callback_secret = secrets.token_urlsafe(32)
        self.receiver = CallbackReceiver(callback_secret, slow=options.slow_callbacks)
        self.plan = make_plan(
            run_id,
            options.tasks,
            options.duplicate_share,
            options.requeue_share,
            options.poison_per_kind,
            self.rng,
        )
        if options.callbacks > 0:
            every = max(1, options.tasks // options.callbacks)
            self.plan.tasks = [
                # Every `every`-th, and the odd ids, whose callback task's id they are part of.
                replace(task, callback=self.receiver.url) if number % every == 1 % every or number % 40 == 7 else task
                for number, task in enumerate(self.plan.tasks)
            ]
        self.compose_plan = make_compose(
            run_id,
            ComposeOptions(workflows=options.workflows, sizes=options.workflow_sizes, chains=options.chains),
            self.receiver.url,
            random.Random(options.seed + 2),
        )
        self.stack = _ChaosStage(
            log_dir,
            options.workers,
            options.fault_rate,
            options.max_attempts,
            options.seed,
            options.lost_answer_share,
            lease_seconds=options.lease_seconds,
            clock=clock,
            run_at_timer_seconds=options.run_at_timer_seconds,
            callback_secret=callback_secret,
        )
        self.composer = ComposeDriver(self.stack.api_url, self.compose_plan, say)
        self._compose_thread = threading.Thread(target=self.composer.send, name="chaos-compose", daemon=True)
        self.report = ChaosReport(poison_sent=len(self.plan.poison))
        operator_options = OperatorOptions(actions=options.operator_actions, seconds=options.operator_seconds)
        # Flow tasks are left alone: each must end COMPLETED, so that a deferral that spent an
        # attempt or dead-lettered a task shows.
        self.operator = ChaosOperator(
            self.stack.api_url,
            [task for task in self.plan.tasks if not task.flow],
            operator_options,
            random.Random(options.seed + 1),
        )
        time_options = TimeOptions(
            schedules=options.schedules,
            run_at_tasks=options.run_at_tasks,
            pause_after_seconds=options.schedules_seconds,
        )
        self.timed = TimeDriver(
            self.stack.api_url,
            run_id,
            clock,
            time_options,
            self.publish,
            self.operator.cancel,
            say,
        )
        self.pauser = PauseDriver(
            self.stack.api_url, PAUSED_TYPE, after_seconds=PAUSE_AFTER_SECONDS, for_seconds=PAUSE_SECONDS
        )
        # The workflow items, which are no tasks, by workflow id.
        self.workflow_items: dict[str, dict[str, Any]] = {}
        # task id -> the holder a unique key's answer named when it held the publish back.
        self._held: dict[str, str] = {}
        self._operator_thread: threading.Thread | None = None
        self._pause_thread: threading.Thread | None = None
        self._done = threading.Event()
        self._local = threading.local()
        self._lock = threading.Lock()
        # task id -> payloads of the publishes answered `duplicate: false`.
        self._first_accepted: dict[str, list[dict[str, Any]]] = {}
        # task id -> the payload of a first publish answered `duplicate: true` (its own earlier try).
        self._first_tried: dict[str, dict[str, Any]] = {}

    # --- the driver's clients -------------------------------------------

    def _aws(self, service: str) -> Any:
        session = boto3.session.Session(
            region_name="us-east-1",
            aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=DUMMY_CREDENTIALS["AWS_SESSION_TOKEN"],
        )
        return session.client(service, endpoint_url=self.stack.aws_url, config=DIRECT_CLIENT)

    def _http(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    # --- sending ----------------------------------------------------------

    def publish(self, task: PlannedTask, copy: int) -> bool:
        """POST /publish the `copy`-th time; True when accepted, as new or as a duplicate.

        A 503 is tried again (PUBLISH_TRIES), and so is a request whose API died under it,
        until a new API answers: the same id makes the repeat safe.
        """
        body = task.publish_body(copy)
        deadline = time.monotonic() + PUBLISH_PATIENCE_SECONDS
        tries = 0
        while tries < PUBLISH_TRIES and time.monotonic() < deadline:
            try:
                response = self._http().post(f"{self.stack.api_url}/publish", json=body, timeout=HTTP_TIMEOUT_SECONDS)
            except requests.RequestException:
                time.sleep(RECONNECT_PAUSE_SECONDS)
                continue
            tries += 1
            if response.status_code == 201:
                answer = response.json()
                if self._held_back(task, answer):
                    return False
                self._answered(task, copy, body["payload"], bool(answer.get("duplicate")))
                return True
            if response.status_code != 503:
                return False
        return False

    def _held_back(self, task: PlannedTask, answer: dict[str, Any]) -> bool:
        """Whether the answer held the publish back for a unique key another task holds."""
        holder = answer.get("existingId")
        if holder is None or holder == task.task_id:
            return False
        with self._lock:
            self._held[task.task_id] = str(holder)
        return True

    def _answered(self, task: PlannedTask, copy: int, payload: dict[str, Any], duplicate: bool) -> None:
        """Note a publish the API accepted. A first publish answered as a duplicate found its own
        earlier try, whose API died before answering: its payload is still the first."""
        with self._lock:
            if not duplicate:
                self._first_accepted.setdefault(task.task_id, []).append(payload)
            elif copy == 1:
                self._first_tried.setdefault(task.task_id, payload)
        if copy == 1 and self.options.operator_actions > 0:
            self.operator.accepted(task.task_id)

    def publish_batch(self, tasks: list[PlannedTask]) -> list[bool]:
        """POST /publish/batch the first publish of each of `tasks`; an entry refused with a 503,
        or a batch whose API died under it, is published again one by one."""
        bodies = [task.publish_body(1) for task in tasks]
        results: list[dict[str, Any]] | None = None
        try:
            response = self._http().post(
                f"{self.stack.api_url}/publish/batch", json={"tasks": bodies}, timeout=HTTP_TIMEOUT_SECONDS
            )
            if response.status_code == 200:
                results = response.json()["results"]
        except requests.RequestException:
            results = None
        accepted = []
        for task, body, result in zip(tasks, bodies, results or [None] * len(tasks), strict=True):
            if result is not None and "status" in result and self._held_back(task, result):
                accepted.append(False)
            elif result is not None and "status" in result:
                self._answered(task, 1, body["payload"], bool(result["duplicate"]))
                accepted.append(True)
            else:
                accepted.append(self.publish(task, 1))
        return accepted

    def _send_all(self, jobs: Iterable[Callable[[], bool]]) -> list[bool]:
        with ThreadPoolExecutor(self.options.concurrency) as pool:
            return list(pool.map(lambda job: job(), jobs))

    def send_plan(self) -> list[PlannedTask]:
        """Every first publish, then the mischief (duplicates, queue copies, poison) in a random order.

        Copies go out only after their task's first publish was accepted, so that
        the first payload is the one that must win. The operator starts with the
        first publishes. Returns the accepted tasks.
        """
        tasks = self.plan.tasks
        self.start_operator()  # at once, so that it meets tasks PENDING, PROCESSING and RETRYING
        self._compose_thread.start()  # and the workflows and chains beside them, while the kills land
        batched = tasks[: int(len(tasks) * self.options.batch_share)]
        single = tasks[len(batched) :]
        groups = [batched[start : start + BATCH_SIZE] for start in range(0, len(batched), BATCH_SIZE)]
        jobs_first: list[Callable[[], list[bool]]] = [lambda g=group: self.publish_batch(g) for group in groups]
        jobs_first += [lambda t=task: [self.publish(t, 1)] for task in single]
        with ThreadPoolExecutor(self.options.concurrency) as pool:
            answered = [ok for oks in pool.map(lambda job: job(), jobs_first) for ok in oks]
        ordered = [*batched, *single]
        accepted = [task for task, ok in zip(ordered, answered, strict=True) if ok]
        self.report.tasks, self.report.unique_held = len(accepted), len(self._held)
        self.report.rejected = len(tasks) - len(accepted) - len(self._held)
        self.say(f"published {len(accepted)} tasks ({self.report.rejected} not accepted)")

        sqs = self._aws("sqs")
        queue_url = sqs.get_queue_url(QueueName=TASKS_QUEUE)["QueueUrl"]

        def straight_to_queue(body: str) -> bool:
            sqs.send_message(QueueUrl=queue_url, MessageBody=body)
            return True

        jobs: list[Callable[[], bool]] = []
        for task in accepted:
            copies = range(2, 2 + task.republish)
            jobs += [lambda t=task, n=copy: self.publish(t, n) for copy in copies]
            jobs += [lambda t=task: straight_to_queue(t.message()) for _ in range(task.requeue)]
        jobs += [lambda p=poison: straight_to_queue(p.body) for poison in self.plan.poison]
        self.rng.shuffle(jobs)
        sent = self._send_all(jobs)
        self.report.duplicates = sum(sent) - len(self.plan.poison)
        self.say(f"sent {self.report.duplicates} duplicates and {len(self.plan.poison)} poison messages")
        self._compose_thread.join()
        return accepted

    # --- operating ----------------------------------------------------------

    def start_pauser(self) -> None:
        """Pause the capped type a little after the start, and resume it a while later."""
        self._pause_thread = threading.Thread(
            target=self.pauser.run, args=(self._done,), name="chaos-pauser", daemon=True
        )
        self._pause_thread.start()

    def start_operator(self) -> None:
        """Start retrying and cancelling while the rest of the plan goes out and the workers run."""
        if self.options.operator_actions > 0:
            self._operator_thread = threading.Thread(
                target=self.operator.run, args=(self._done,), name="chaos-operator", daemon=True
            )
            self._operator_thread.start()

    def _operator_busy(self) -> bool:
        return self._operator_thread is not None and self._operator_thread.is_alive()

    # --- killing ------------------------------------------------------------

    def _mid_batch_worker(self) -> Piece | None:
        """The first live worker to take a task's lease from now on: killing it now kills a running attempt."""
        seen = {worker: self.stack.proxies[worker].acquires for worker in self.stack.live_workers()}
        deadline = time.monotonic() + MID_BATCH_WAIT_SECONDS
        while time.monotonic() < deadline and not self._done.is_set():
            for worker, acquires in seen.items():
                if self.stack.proxies[worker].acquires > acquires:
                    return worker
            time.sleep(ACQUIRE_POLL_SECONDS)
        return None

    def kill_api(self) -> None:
        """Every `kill_every` seconds, SIGKILL the API at one of its weak points and start it again."""
        points = list(ApiKill)
        for number in range(self.options.api_kills):
            if self._done.wait(self.options.kill_every):
                return
            point = points[number % len(points)]
            self.stack.arm_api_kill(point)
            if not self.stack.api_died.wait(API_KILL_WAIT_SECONDS):
                # Nothing reached that point in time (no retry in flight, say): kill it wherever it is.
                self.stack.arm_api_kill(ApiKill.ANYWHERE)
                if not self.stack.api_died.wait(API_KILL_WAIT_SECONDS):
                    self.stack.disarm_api_kill()
                    continue
            self.stack.restart_api()
            self.report.api_kills += 1
            self.say(f"killed the API at {point.value}; a new one answers")

    def kill_workers(self) -> None:
        """Every `kill_every` seconds, SIGKILL a worker mid-batch and start another, `kills` times."""
        for _ in range(self.options.kills):
            if self._done.wait(self.options.kill_every):
                return
            victim = self._mid_batch_worker()
            if victim is None:
                continue
            replacement = self.stack.kill_and_replace(victim)
            self.report.kills += 1
            self.say(f"killed {victim.piece} {victim.log_path.stem} mid-batch; {replacement.log_path.stem} took over")

    # --- waiting and checking ---------------------------------------------

    def scan(self) -> dict[str, dict[str, Any]]:
        """Every task item, deserialized, with its payload parsed; read consistently. The workflow items
        the table also holds go to `workflow_items`."""
        deserializer = TypeDeserializer()
        items: dict[str, dict[str, Any]] = {}
        for page in self._aws("dynamodb").get_paginator("scan").paginate(TableName=TASKS_TABLE, ConsistentRead=True):
            for raw in page["Items"]:
                item = {name: deserializer.deserialize(value) for name, value in raw.items()}
                if item.get("kind") == "workflow":
                    self.workflow_items[str(item.get("workflowId"))] = item
                    continue
                item["payload"] = json.loads(item["payload"]) if "payload" in item else None
                items[item["id"]] = item
        return items

    def scan_schedules(self) -> dict[str, dict[str, Any]]:
        """Every schedule item by schedule id, its `definition` and `state` parsed; read consistently."""
        deserializer = TypeDeserializer()
        schedules: dict[str, dict[str, Any]] = {}
        pages = self._aws("dynamodb").get_paginator("scan").paginate(TableName=SCHEDULES_TABLE, ConsistentRead=True)
        for page in pages:
            for raw in page["Items"]:
                item = {name: deserializer.deserialize(value) for name, value in raw.items()}
                if str(item["id"]).startswith("schedule#"):
                    item["definition"], item["state"] = json.loads(item["definition"]), json.loads(item["state"])
                    schedules[item["definition"]["id"]] = item
        return schedules

    def logged_poison_bodies(self) -> set[str]:
        """The raw bodies the dead-letter handler logged as poison, from every worker's log."""
        bodies: set[str] = set()
        for path in self.stack.worker_logs():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                if POISON_EVENT in line:
                    event = json.loads(line[line.index("{") :])
                    if "body" in event:
                        bodies.add(event["body"])
        return bodies

    def _logged_count(self, mark: str) -> int:
        """How many lines of every worker's log carry `mark`."""
        return sum(path.read_text(encoding="utf-8", errors="replace").count(mark) for path in self.stack.worker_logs())

    def unrecorded_poison(self, items: dict[str, dict[str, Any]]) -> list[Poison]:
        logged = self.logged_poison_bodies()
        return [
            poison
            for poison in self.plan.poison
            if not (poison_recorded_by_id(items.get(poison.task_id)) if poison.task_id else poison.body in logged)
        ]

    def wait_until_settled(self, accepted: list[PlannedTask]) -> dict[str, dict[str, Any]]:
        """Poll the table until every accepted task is terminal and every poison recorded, or the deadline."""
        deadline = time.monotonic() + self.options.deadline
        next_progress = time.monotonic() + PROGRESS_SECONDS
        while True:
            items = self.scan()
            open_tasks = [t for t in accepted if items.get(t.task_id, {}).get("status") not in TERMINAL]
            unrecorded = self.unrecorded_poison(items)
            pausing = self._pause_thread is not None and self._pause_thread.is_alive()
            composing = compose_pending(self.composer.workflows, self.composer.chains, items)
            settled = (
                not open_tasks
                and not composing
                and not unrecorded
                and not stranded_items(items)
                and not self._operator_busy()
                and not pausing
            )
            if settled or time.monotonic() > deadline:
                return items
            if time.monotonic() > next_progress:
                next_progress += PROGRESS_SECONDS
                self.say(
                    f"waiting: {len(accepted) - len(open_tasks)}/{len(accepted)} terminal, "
                    f"{len(self.plan.poison) - len(unrecorded)}/{len(self.plan.poison)} poison recorded, "
                    f"{len(composing)} workflows, chain steps or callbacks on their way"
                )
            time.sleep(POLL_SECONDS)

    def _expected(self, task: PlannedTask) -> Expected:
        first = (self._first_accepted.get(task.task_id) or [self._first_tried.get(task.task_id)])[0]
        return Expected(
            task.task_id,
            task.always_fails,
            first,
            permanent=task.permanent,
            overruns=task.overruns,
            result=task.expected_result(first) if first is not None else None,
            progress=task.expected_progress(first) if first is not None else None,
        )

    def check(self, accepted: list[PlannedTask], items: dict[str, dict[str, Any]]) -> None:
        expected = [self._expected(task) for task in [*accepted, *self.timed.run_at]] + self.timed.expected(items)
        expected += self.compose_plan.expected(items, self.composer.workflows, self.composer.chains)
        findings = check_tasks(items, expected, self.options.max_attempts)
        compose = self.report.compose
        check_workflows(self.composer.workflows, items, findings, compose)
        check_chains(self.composer.chains, items, findings, compose)
        accepted_ids = {workflow.id for workflow in self.composer.workflows}
        half_made = [workflow_id for workflow_id in self.workflow_items if workflow_id not in accepted_ids]
        check_callbacks(items, self.composer.workflows, self.receiver.snapshot(), findings, compose, half_made)
        findings.duplicate_accepted = sorted(i for i, firsts in self._first_accepted.items() if len(firsts) != 1)
        findings.poison_unrecorded = [p.body for p in self.unrecorded_poison(items)]
        findings.stranded = stranded_items(items)
        findings.api_disagrees = self._api_disagreements(accepted, items)
        if self.options.operator_actions > 0:
            check_operator_history(items, self.operator.answers, findings)
            listed = {status: self.operator.list_all(status) for status in LISTED}
            check_listings(items, self.operator.stats(), listed, findings)
            self.report.operator_answers = self.operator.figures()
            self.report.bulk_retried, self.report.bulk_skipped = self.operator.bulk_figures()
        if self.pauser.error:
            findings.ran_while_paused.append(self.pauser.error)
        flow_runs = check_flow(items, self.stack.worker_logs(), self.pauser.spans, self._held, findings)
        self.report.flow_runs, self.report.pauses = len(flow_runs), len(self.pauser.spans)
        self.report.flow_lag_ms = start_lag_ms(flow_runs)
        self.report.flow_deferred = self._logged_count('"message":"flow_deferred"')
        self.report.time = self.timed.check(items, self.scan_schedules(), self.stack.worker_logs(), findings)
        self.report.findings = findings
        statuses = Counter(items.get(t.task_id, {}).get("status") for t in accepted)
        self.report.completed, self.report.failed = statuses["COMPLETED"], statuses["FAILED"]
        self.report.cancelled = statuses["CANCELLED"]
        self.report.poison_recorded = self.report.poison_sent - len(findings.poison_unrecorded)
        entries = [entry for task in accepted for entry in items.get(task.task_id, {}).get("history") or []]
        self.report.expired_attempts = sum(1 for entry in entries if entry.get("outcome") == "expired")
        errors = [str(entry.get("error") or "") for entry in entries if entry.get("outcome") == "failed"]
        self.report.permanent_failures = sum(1 for error in errors if error.startswith("permanent failure:"))
        self.report.timed_out = sum(1 for error in errors if "timed out after" in error)
        self.report.heartbeat_cancels = sum(1 for entry in entries if entry.get("outcome") == "cancelled")
        self.report.expired_unstarted = sum(1 for entry in entries if entry.get("kind") == "expired")
        self.report.long_completed = sum(
            1 for t in accepted if t.task_type == "steps" and items.get(t.task_id, {}).get("status") == "COMPLETED"
        )
        self.report.operator_entries = Counter(
            f"{entry['kind']} from {entry.get('fromStatus', '-')}" for entry in entries if "at" in entry
        )
        self.report.cancel_requested_ends = Counter(
            str(run.end_status)
            for task in accepted
            for run in runs(items.get(task.task_id, {}).get("history") or [], items.get(task.task_id, {}).get("status"))
            if any(entry.get("kind") == "cancel_requested" for entry in run.entries)
        )

    def _keep_broken(self, items: dict[str, dict[str, Any]]) -> None:
        """Write the items of the tasks that broke an invariant next to the logs, to read afterwards."""
        broken = {task_id for ids in self.report.findings.broken().values() for task_id in ids if task_id in items}
        if broken and self.options.log_dir is not None:
            path = self.options.log_dir / "broken-tasks.json"
            path.write_text(json.dumps({i: items[i] for i in sorted(broken)}, indent=1, default=str), encoding="utf-8")
            self.say(f"the broken tasks' items are in {path}")

    def _api_disagreements(self, accepted: list[PlannedTask], items: dict[str, dict[str, Any]]) -> list[str]:
        """Read the odd ids, and a sample of the rest, over HTTP: the API must tell what the table holds."""
        odd = [t for t in accepted if not t.task_id.rsplit("-", 1)[-1].isdigit()]
        sample = odd + self.rng.sample(accepted, min(10, len(accepted)))
        disagree = []
        for task in sample:
            url = f"{self.stack.api_url}/tasks/{quote(task.task_id, safe='')}"
            response = self._http().get(url, timeout=HTTP_TIMEOUT_SECONDS)
            item = items.get(task.task_id, {})
            view = response.json() if response.status_code == 200 else {}
            if view.get("id") != task.task_id or view.get("status") != item.get("status"):
                disagree.append(task.task_id)
        return disagree

    # --- the whole run ------------------------------------------------------

    def run(self) -> ChaosReport:
        """Start, torment, settle, check, stop.

        Raises:
            PieceError: the stack did not start.
        """
        started = time.monotonic()
        killer = threading.Thread(target=self.kill_workers, name="chaos-killer", daemon=True)
        api_killer = threading.Thread(target=self.kill_api, name="chaos-api-killer", daemon=True)
        try:
            self.receiver.start()
            self.stack.start()
            self.say(f"stack up: API {self.stack.api_url}, AWS {self.stack.aws_url}, {self.options.workers} workers")
            killer.start()
            api_killer.start()
            self.start_pauser()
            self.timed.start()
            accepted = self.send_plan()
            self.timed.pause(self._done)
            items = self.wait_until_settled([*accepted, *self.timed.run_at])
            self._done.set()
            killer.join(MID_BATCH_WAIT_SECONDS + 60)
            api_killer.join(2 * API_KILL_WAIT_SECONDS + 60)
            if self._operator_thread is not None:
                self._operator_thread.join(60)
            self.check(accepted, items)
            self._keep_broken(items)
        finally:
            self._done.set()
            self.stack.stop()
            self.receiver.stop()
            self.report.api_kill_points = Counter(self.stack.api_kills)
            faults = self.stack.faults()
            self.report.faults = sum(faults.values())
            for (target, kind), count in faults.items():
                self.report.faults_by_kind[f"{target.split('.')[0].split('_')[0]} {kind}"] += count
        self.report.elapsed_seconds = time.monotonic() - started
        return self.report


def run_chaos(options: ChaosOptions, say: Callable[[str], None] = print) -> ChaosReport:
    """Run one chaos round; logs go to `options.log_dir`, or a temporary directory removed afterwards.

    Raises:
        PieceError: the stack did not start.
    """
    quiet: Callable[[str], None] = (lambda _text: None) if not options.verbose else say
    if options.log_dir is not None:
        options.log_dir.mkdir(parents=True, exist_ok=True)
        return ChaosRun(options, options.log_dir, quiet).run()
    with tempfile.TemporaryDirectory(prefix="taskproc-chaos-") as log_dir:
        return ChaosRun(options, Path(log_dir), quiet).run()


def parse_options(argv: list[str] | None = None) -> ChaosOptions:
    defaults = ChaosOptions()
    parser = argparse.ArgumentParser(prog="python -m tools.chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=defaults.tasks, help="tasks to publish")
    parser.add_argument("--workers", type=int, default=defaults.workers, help="worker processes at any time (>= 2)")
    parser.add_argument("--kills", type=int, default=defaults.kills, help="workers to SIGKILL mid-batch")
    parser.add_argument("--api-kills", type=int, default=defaults.api_kills, help="times to SIGKILL the API")
    parser.add_argument(
        "--batch-share", type=float, default=defaults.batch_share, help="share of tasks published in batches"
    )
    parser.add_argument("--kill-every", type=float, default=defaults.kill_every, help="seconds between kills")
    parser.add_argument(
        "--fault-rate",
        type=float,
        default=defaults.fault_rate,
        help="share of the workers' AWS calls answered with a transient fault",
    )
    parser.add_argument(
        "--lost-answer-share",
        type=float,
        default=defaults.lost_answer_share,
        help="share of those faults that reach AWS and lose only the answer",
    )
    parser.add_argument(
        "--duplicate-share",
        type=float,
        default=defaults.duplicate_share,
        help="share of tasks published two or three times",
    )
    parser.add_argument(
        "--requeue-share",
        type=float,
        default=defaults.requeue_share,
        help="share of tasks whose message is sent to the queue twice",
    )
    parser.add_argument("--poison", type=int, default=defaults.poison_per_kind, help="poison messages of each kind")
    parser.add_argument("--max-attempts", type=int, default=defaults.max_attempts, help="MAX_ATTEMPTS of the stack")
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency, help="concurrent publishes")
    parser.add_argument(
        "--deadline", type=float, default=defaults.deadline, help="seconds to wait for every task to finish"
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of the plan and the faults")
    parser.add_argument(
        "--lease-seconds",
        type=float,
        default=defaults.lease_seconds,
        help=f"LEASE_SECONDS of the stack (below 2, a {OVERRUN_MS} ms simulation overruns its timeout)",
    )
    parser.add_argument(
        "--operator-actions",
        type=int,
        default=defaults.operator_actions,
        help="operator retries, cancels and bulk retries to send (0: none)",
    )
    parser.add_argument(
        "--operator-seconds",
        type=float,
        default=defaults.operator_seconds,
        help="stop sending operator requests after this many seconds",
    )
    parser.add_argument("--schedules", type=int, default=defaults.schedules, help="rate schedules to create (0 to 3)")
    parser.add_argument("--run-at-tasks", type=int, default=defaults.run_at_tasks, help="tasks to publish with runAt")
    parser.add_argument(
        "--time-scale", type=float, default=defaults.time_scale, help="SCHEDULE_TIME_SCALE of the stack"
    )
    parser.add_argument(
        "--run-at-timer-seconds",
        type=int,
        default=defaults.run_at_timer_seconds,
        help="RUN_AT_TIMER_SECONDS of the stack: a runAt further ahead waits as a timer",
    )
    parser.add_argument(
        "--schedules-seconds",
        type=float,
        default=defaults.schedules_seconds,
        help="wall seconds the schedules fire before they are paused",
    )
    parser.add_argument("--workflows", type=int, default=defaults.workflows, help="workflows to publish")
    parser.add_argument(
        "--workflow-sizes",
        type=lambda text: tuple(int(size) for size in text.split(",")),
        default=defaults.workflow_sizes,
        help="children of each workflow in turn, comma-separated (1 to 1000 each)",
    )
    parser.add_argument("--chains", type=int, default=defaults.chains, help="tasks with a chain of 2 or 3 steps")
    parser.add_argument(
        "--callbacks", type=int, default=defaults.callbacks, help="plan tasks published with a completion callback"
    )
    parser.add_argument(
        "--slow-callbacks",
        type=int,
        default=defaults.slow_callbacks,
        help="first deliveries the receiver answers after the sender's 10 s",
    )
    parser.add_argument("--log-dir", type=Path, default=None, help="keep the pieces' logs here")
    parser.add_argument("--quiet", action="store_true", help="print only the figures")
    args = parser.parse_args(argv)
    if args.workers < 2:
        parser.error("--workers must be at least 2")
    if not 0 <= args.fault_rate < 1:
        parser.error("--fault-rate must be in [0, 1)")
    if not 0 <= args.lost_answer_share <= 1:
        parser.error("--lost-answer-share must be in [0, 1]")
    return ChaosOptions(
        tasks=args.tasks,
        workers=args.workers,
        kills=args.kills,
        api_kills=args.api_kills,
        batch_share=args.batch_share,
        kill_every=args.kill_every,
        fault_rate=args.fault_rate,
        lost_answer_share=args.lost_answer_share,
        duplicate_share=args.duplicate_share,
        requeue_share=args.requeue_share,
        poison_per_kind=args.poison,
        max_attempts=args.max_attempts,
        concurrency=args.concurrency,
        deadline=args.deadline,
        seed=args.seed,
        lease_seconds=args.lease_seconds,
        operator_actions=args.operator_actions,
        operator_seconds=args.operator_seconds,
        schedules=args.schedules,
        run_at_tasks=args.run_at_tasks,
        time_scale=args.time_scale,
        run_at_timer_seconds=args.run_at_timer_seconds,
        schedules_seconds=args.schedules_seconds,
        workflows=args.workflows,
        workflow_sizes=args.workflow_sizes,
        chains=args.chains,
        callbacks=args.callbacks,
        slow_callbacks=args.slow_callbacks,
        log_dir=args.log_dir,
        verbose=not args.quiet,
    )


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    try:
        report = run_chaos(options)
    except PieceError as exc:
        print(f"the stack did not start: {exc}", file=sys.stderr)
        return 2
    print(report.line())
    print(report.operator_line())
    print(report.time_line())
    print(report.compose_line())
    print(report.details())
    for name, ids in report.findings.broken().items():
        print(f"BROKEN {name}: {len(ids)}, e.g. {ids[:5]}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
