"""What must hold after any amount of chaos, checked on the task items as the table holds them.

Pure functions over plain dicts (the items deserialized) and the operator's
answers, so they are tested without a stack and read the same against any table.

A task's history is cut into runs by its `retry` entries: the first run starts
at publish, each operator retry starts another with a fresh attempt budget.
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED"}
POISON_ERROR_PREFIX = "poison message:"
PERMANENT_ERROR_PREFIX = "permanent failure:"
TIMEOUT_ERROR_MARK = "timed out after"
ACTIONS = ("retry", "cancel", "cancel_requested")
# A failed workflow cancels its unfinished children as `workflow <id>`: no operator's answer accounts for those.
WORKFLOW_ACTOR = "workflow "

Entry = Mapping[str, Any]


@dataclass(frozen=True)
class Expected:
    """What the chaos run knows about one accepted task."""

    task_id: str
    # True when no attempt can succeed (failureChance 1, payload.message "ERROR", or an overrun).
    always_fails: bool = False
    # The payload of the first publish, which must be the one stored.
    payload: Mapping[str, Any] | None = None
    # Every failure is permanent: a run holds at most one failed attempt, and nothing after it.
    permanent: bool = False
    # Every attempt outlives its deadline: each failure must say it timed out.
    overruns: bool = False
    # The result a successful attempt must store; None when not known.
    result: Any = None
    # The progress a COMPLETED task must show (its last run's last heartbeat); None: not checked.
    progress: Any = None


@dataclass(frozen=True)
class Answer:
    """What the API answered to one operator request (times in epoch ms, on the driver's clock)."""

    kind: str  # "retry", "cancel" or "bulk_retry"
    task_id: str | None
    sent_ms: int
    answered_ms: int | None = None
    status_code: int | None = None  # None: no answer arrived (the request may or may not have acted)
    retried: tuple[str, ...] = ()  # a bulk retry's `retried` ids
    skipped: tuple[str, ...] = ()  # a bulk retry's `skipped` ids (another request took them first)
    limit: int = 1  # the most tasks the request could act on (a bulk retry's `limit`)


@dataclass
class Findings:
    """Each invariant's offending task ids (or statuses, for the counts); every list must be empty."""

    lost: list[str] = field(default_factory=list)  # accepted, but no item
    stuck: list[str] = field(default_factory=list)  # not COMPLETED, FAILED or CANCELLED
    # Any item in the table, accepted or not (a publish killed after its send, a 503 whose
    # message went out), that is not terminal: a task stored without a message that runs it.
    stranded: list[str] = field(default_factory=list)
    double_run: list[str] = field(default_factory=list)  # more than one succeeded attempt
    overlaps: list[str] = field(default_factory=list)  # two attempts overlapped in time
    over_attempts: list[str] = field(default_factory=list)  # more attempts in one run than the type allows
    unexplained: list[str] = field(default_factory=list)  # FAILED without a lastError
    inconsistent: list[str] = field(default_factory=list)  # status disagrees with the history
    wrong_success: list[str] = field(default_factory=list)  # a task that always fails COMPLETED
    payload_changed: list[str] = field(default_factory=list)  # a duplicate's payload replaced the first
    poison_unrecorded: list[str] = field(default_factory=list)  # a poison message nobody recorded
    duplicate_accepted: list[str] = field(default_factory=list)  # more than one publish answered as new
    api_disagrees: list[str] = field(default_factory=list)  # GET /tasks/{id} differs from the table
    permanent_repeated: list[str] = field(default_factory=list)  # an attempt after a permanent failure in its run
    no_result: list[str] = field(default_factory=list)  # COMPLETED without a result
    wrong_result: list[str] = field(default_factory=list)  # a result other than the handler's, or one kept on failure
    overrun_unnoticed: list[str] = field(default_factory=list)  # an overrunning attempt not failed as timed out
    ran_after_cancel: list[str] = field(default_factory=list)  # an attempt started after the task was CANCELLED
    cancel_ignored: list[str] = field(default_factory=list)  # a cancel-requested run that retried or ended FAILED
    retry_runs: list[str] = field(default_factory=list)  # a retry that started no run
    missing_attempts: list[str] = field(default_factory=list)  # a run's attempts not numbered 1..n, or uncounted
    out_of_order: list[str] = field(default_factory=list)  # history entries not in time order
    unanswered_actions: list[str] = field(default_factory=list)  # an operator action no API answer accounts for
    unrecorded_answers: list[str] = field(default_factory=list)  # an accepted operator answer with no entry
    counts_disagree: list[str] = field(default_factory=list)  # GET /stats counts differ from the table
    lists_disagree: list[str] = field(default_factory=list)  # GET /tasks?status= lists differ from the table
    stale_progress: list[str] = field(default_factory=list)  # a COMPLETED task showing another attempt's progress
    ran_after_expiry: list[str] = field(default_factory=list)  # a first attempt started after its startBy
    # Flow control (tools/chaos/flow_invariants.py), from the handlers' own records of their runs:
    over_cap: list[str] = field(default_factory=list)  # a type or key ran more at once than its cap
    over_rate: list[str] = field(default_factory=list)  # a type started more in a window than its rate allows
    ran_while_paused: list[str] = field(default_factory=list)  # a run started after a pause took effect
    spent_waiting: list[str] = field(default_factory=list)  # a flow task spent an attempt waiting, or never ran
    # a flow task's message reached the DLQ after a deferral spent one of its receives
    flow_dead_lettered: list[str] = field(default_factory=list)
    unique_twice: list[str] = field(default_factory=list)  # a unique key admitted two tasks at once
    unique_leaked: list[str] = field(default_factory=list)  # a publish held back by a key, stored anyway
    # Time (tools/chaos/time_invariants.py), from the schedule items, the tasks and the ticks' log lines:
    unfired: list[str] = field(default_factory=list)  # a firing due inside its catch-up window without its task
    fired_off_grid: list[str] = field(default_factory=list)  # a firing's task for an instant that was not due
    skip_overlapped: list[str] = field(default_factory=list)  # `skip` fired while the previous task still ran
    started_early: list[str] = field(default_factory=list)  # a `runAt` task's attempt started before its time
    ran_after_early_cancel: list[str] = field(default_factory=list)  # cancelled before its time, and it ran
    cursor_behind: list[str] = field(default_factory=list)  # a schedule's cursor short of its pause, after settling
    # Workflows, chains and callbacks (tools/chaos/compose_invariants.py), from the table and the receiver:
    then_not_once: list[str] = field(default_factory=list)  # a workflow's `then` not run once, or run against `fail`
    then_early: list[str] = field(default_factory=list)  # `then` given other children, or ones not yet ended
    not_cancelled: list[str] = field(default_factory=list)  # a failed workflow's child ran on, unasked to stop
    step_twice: list[str] = field(default_factory=list)  # a chain step published twice, early, or past its chain
    step_after_end: list[str] = field(default_factory=list)  # a step after a task that did not complete
    chain_lost: list[str] = field(default_factory=list)  # a completed task's next step never published
    callback_missing: list[str] = field(default_factory=list)  # terminal, its callback neither delivered nor FAILED
    callback_wrong: list[str] = field(default_factory=list)  # a delivery with another status, body or id
    callback_unsigned: list[str] = field(default_factory=list)  # a delivery whose signature did not verify
    callback_repeated: list[str] = field(default_factory=list)  # more deliveries of an id than attempts explain

    def broken(self) -> dict[str, list[str]]:
        """The invariants that broke, by name, with their offending ids."""
        return {name.replace("_", "-"): ids for name, ids in vars(self).items() if ids}


def started_after_expiry(item: Mapping[str, Any], run_list: Sequence[Run]) -> bool:
    """Whether the run the item's `startBy` belongs to (the last) started its first attempt after it."""
    start_by = item.get("startBy")
    attempts = run_list[-1].attempts if run_list else []
    if start_by is None or not attempts:
        return False
    return _instant(attempts[0]["startedAt"]).timestamp() * 1000 > int(start_by)


def stranded_items(items: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Every item of the table that is not terminal, whether or not the run counted it accepted."""
    return sorted(task_id for task_id, item in items.items() if item.get("status") not in TERMINAL)


@dataclass(frozen=True)
class Run:
    """The entries of one run, and the retry that started it (None for the first run)."""

    entries: list[Entry]
    retry: Entry | None
    end_status: str | None  # the status it ended in: the next retry's fromStatus, or the task's status

    @property
    def attempts(self) -> list[Entry]:
        return [entry for entry in self.entries if is_attempt(entry)]


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def is_attempt(entry: Entry) -> bool:
    return "attempt" in entry


def attempts_overlap(history: Sequence[Entry]) -> bool:
    """Whether any attempt started before the one before it had finished (or had no end)."""
    spans = sorted(
        (_instant(entry["startedAt"]), _instant(entry["finishedAt"]) if entry.get("finishedAt") else None)
        for entry in history
        if is_attempt(entry)
    )
    for (_, previous_end), (start, _) in itertools.pairwise(spans):
        if previous_end is None or start < previous_end:
            return True
    return False


def runs(history: Sequence[Entry], status: str | None) -> list[Run]:
    """`history` cut at its retry entries; each run knows the status it ended in."""
    cuts = [index for index, entry in enumerate(history) if entry.get("kind") == "retry"]
    bounds = [0, *cuts, len(history)]
    result = []
    for number, (start, end) in enumerate(itertools.pairwise(bounds)):
        retry = history[start] if number > 0 else None
        entries = list(history[start + 1 if retry else start : end])
        end_status = history[end]["fromStatus"] if end < len(history) else status
        result.append(Run(entries, retry, end_status))
    return result


def out_of_order(history: Sequence[Entry]) -> bool:
    """Whether the entries break the order their writes must have had.

    Attempts are listed by their start, actions by their time; an action is written
    after every attempt listed before it has finished, and an attempt listed after a
    retry started after it. (An attempt's finish may precede an action listed before
    it: a cancel asked for while it ran, or a lease that ran out before a takeover
    noted it.)
    """
    attempts = [_instant(entry["startedAt"]) for entry in history if is_attempt(entry)]
    actions = [_instant(entry["at"]) for entry in history if not is_attempt(entry)]
    if attempts != sorted(attempts) or actions != sorted(actions):
        return True
    for index, entry in enumerate(history):
        if is_attempt(entry):
            continue
        at = _instant(entry["at"])
        for earlier in history[:index]:
            if is_attempt(earlier) and _instant(earlier.get("finishedAt") or earlier["startedAt"]) > at:
                return True
        later = history[index + 1 :]
        if entry.get("kind") == "retry" and any(is_attempt(e) and _instant(e["startedAt"]) < at for e in later):
            return True
    return False


def _cancelled_at(run: Run) -> datetime | None:
    """When the run's task became CANCELLED, if it did."""
    for entry in run.entries:
        if entry.get("kind") == "cancel":
            return _instant(entry["at"])
    if run.end_status == "CANCELLED" and run.attempts:
        last = run.attempts[-1]
        return _instant(last.get("finishedAt") or last["startedAt"])
    return None


def ran_after_cancel(run: Run) -> bool:
    """Whether an attempt is listed after, or started after, the moment the run became CANCELLED."""
    cancel_index = next((i for i, entry in enumerate(run.entries) if entry.get("kind") == "cancel"), None)
    if cancel_index is not None and any(is_attempt(entry) for entry in run.entries[cancel_index + 1 :]):
        return True
    cancelled = _cancelled_at(run)
    return cancelled is not None and any(_instant(entry["startedAt"]) > cancelled for entry in run.attempts)


def cancel_ignored(run: Run) -> bool:
    """Whether a run whose cancel was requested mid-attempt retried, or ended other than COMPLETED or CANCELLED."""
    requested = [_instant(entry["at"]) for entry in run.entries if entry.get("kind") == "cancel_requested"]
    if not requested:
        return False
    if run.end_status not in {"COMPLETED", "CANCELLED"}:
        return True
    return any(_instant(entry["startedAt"]) > requested[0] for entry in run.attempts)


def permanent_repeated(run: Run, expected_permanent: bool) -> bool:
    """Whether a permanent failure was followed by another attempt (or its run did not end there).

    For a task whose every failure is permanent, a run holds at most one failed
    attempt, and one that ended FAILED holds exactly one (unless its consumers all died).
    """
    attempts = run.attempts
    for index, entry in enumerate(attempts):
        is_permanent = entry.get("outcome") == "failed" and str(entry.get("error") or "").startswith(
            PERMANENT_ERROR_PREFIX
        )
        if is_permanent and (index != len(attempts) - 1 or run.end_status not in {"FAILED", "CANCELLED"}):
            return True
    failed = [entry for entry in attempts if entry.get("outcome") == "failed"]
    # A run whose every attempt's consumer died ends FAILED with no failed attempt at all.
    only_expired = bool(attempts) and all(entry.get("outcome") == "expired" for entry in attempts)
    return expected_permanent and (len(failed) > 1 or (run.end_status == "FAILED" and not failed and not only_expired))


def retry_runs_broken(run_list: Sequence[Run]) -> bool:
    """Whether a retry started no run (and the task was not cancelled before it could)."""
    return any(run.retry is not None and not run.attempts and run.end_status != "CANCELLED" for run in run_list)


def attempts_missing(run_list: Sequence[Run], attempts: int, terminal: bool) -> bool:
    """Whether a run's attempts are not numbered 1, 2, ... or a finished task counts attempts its history lacks."""
    for run in run_list:
        numbers = [int(entry["attempt"]) for entry in run.attempts]
        if numbers != list(range(1, len(numbers) + 1)):
            return True
    return terminal and attempts != len(run_list[-1].attempts)


def _parsed_result(item: Mapping[str, Any]) -> Any:
    return _parsed(item, "result")


def _parsed(item: Mapping[str, Any], name: str) -> Any:
    """An attribute the table keeps as JSON text, parsed."""
    raw = item.get(name)
    if raw is None:
        return None
    try:
        return json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return {"unparsable": raw}


def check_task(item: Mapping[str, Any], expected: Expected, max_attempts: int, findings: Findings) -> None:
    """Add `item`'s broken invariants to `findings`."""
    task_id, status = expected.task_id, item.get("status")
    history: list[Entry] = list(item.get("history") or [])
    attempts = [entry for entry in history if is_attempt(entry)]
    succeeded = sum(1 for entry in attempts if entry.get("outcome") == "succeeded")
    run_list = runs(history, status)
    if status not in TERMINAL or "leaseOwner" in item:
        findings.stuck.append(task_id)
    if succeeded > 1:
        findings.double_run.append(task_id)
    if attempts_overlap(history):
        findings.overlaps.append(task_id)
    task_max = min(int(item.get("maxAttempts", 0)), max_attempts)
    if (
        int(item.get("attempts", 0)) > task_max
        or int(item.get("maxAttempts", 0)) > max_attempts
        or any(len(run.attempts) > task_max for run in run_list)
    ):
        findings.over_attempts.append(task_id)
    if status == "FAILED" and not str(item.get("lastError") or "").strip():
        findings.unexplained.append(task_id)
    last_run_actions = {entry.get("kind") for entry in run_list[-1].entries}
    if status in TERMINAL and (
        (status == "COMPLETED") != (succeeded == 1)
        or (status == "CANCELLED" and not last_run_actions & {"cancel", "cancel_requested", "expired"})
    ):
        findings.inconsistent.append(task_id)
    if status == "COMPLETED" and expected.always_fails:
        findings.wrong_success.append(task_id)
    if expected.payload is not None and item.get("payload") is not None and item["payload"] != expected.payload:
        findings.payload_changed.append(task_id)
    result = _parsed_result(item)
    if status == "COMPLETED" and result is None:
        findings.no_result.append(task_id)
    elif (status == "COMPLETED" and expected.result is not None and result != expected.result) or (
        status != "COMPLETED" and result is not None
    ):
        findings.wrong_result.append(task_id)
    if status == "COMPLETED" and expected.progress is not None and _parsed(item, "progress") != expected.progress:
        findings.stale_progress.append(task_id)
    if started_after_expiry(item, run_list):
        findings.ran_after_expiry.append(task_id)
    if expected.overruns and any(
        entry.get("outcome") == "failed" and TIMEOUT_ERROR_MARK not in str(entry.get("error") or "")
        for entry in attempts
    ):
        findings.overrun_unnoticed.append(task_id)
    if any(permanent_repeated(run, expected.permanent) for run in run_list):
        findings.permanent_repeated.append(task_id)
    if any(ran_after_cancel(run) for run in run_list):
        findings.ran_after_cancel.append(task_id)
    if any(cancel_ignored(run) for run in run_list):
        findings.cancel_ignored.append(task_id)
    if retry_runs_broken(run_list):
        findings.retry_runs.append(task_id)
    if attempts_missing(run_list, int(item.get("attempts", 0)), status in TERMINAL):
        findings.missing_attempts.append(task_id)
    if out_of_order(history):
        findings.out_of_order.append(task_id)


def check_tasks(items: Mapping[str, Mapping[str, Any]], expected: Iterable[Expected], max_attempts: int) -> Findings:
    """Check every accepted task against the items the table holds, keyed by id.

    Items' `payload` must already be parsed from its stored JSON string.
    """
    findings = Findings()
    for task in expected:
        item = items.get(task.task_id)
        if item is None:
            findings.lost.append(task.task_id)
            continue
        check_task(item, task, max_attempts, findings)
    return findings


@dataclass(frozen=True)
class _Claim:
    """An answer that accounts for one history entry of `kind` made between `sent_ms` and `answered_ms`."""

    kinds: frozenset[str]
    sent_ms: int
    answered_ms: int | None  # None: no answer came; it may account for one entry made after it was sent
    certain: bool


def _claims(answers: Iterable[Answer]) -> dict[str | None, list[_Claim]]:
    """The history entries the answers promise, by task id (None: any task, from an unanswered bulk retry)."""
    claims: dict[str | None, list[_Claim]] = defaultdict(list)
    for answer in answers:
        code, sent, answered = answer.status_code, answer.sent_ms, answer.answered_ms
        # A 503 on a write may have acted (the table's answer was lost): like no answer, it may
        # account for an entry but promises none. So may a bulk retry's skipped task.
        if answer.kind == "bulk_retry":
            if code is None:  # it may have retried up to its limit, of any tasks
                claims[None] += [_Claim(frozenset({"retry"}), sent, None, certain=False)] * answer.limit
            for task_id in answer.retried if code == 200 else ():
                claims[task_id].append(_Claim(frozenset({"retry"}), sent, answered, certain=True))
            for task_id in answer.skipped if code == 200 else ():
                claims[task_id].append(_Claim(frozenset({"retry"}), sent, answered, certain=False))
        elif answer.kind == "retry" and code in (202, 503, None):
            claims[answer.task_id].append(_Claim(frozenset({"retry"}), sent, answered, certain=code == 202))
        elif answer.kind == "cancel" and code in (200, 202, 503, None):
            kinds = {200: {"cancel"}, 202: {"cancel_requested"}}.get(code or 0, {"cancel", "cancel_requested"})
            claims[answer.task_id].append(_Claim(frozenset(kinds), sent, answered, certain=code in (200, 202)))
    return claims


def _covers(claim: _Claim, kind: str, at_ms: int) -> bool:
    # History times are whole milliseconds, cut down from the writer's clock.
    before_answer = claim.answered_ms is None or at_ms <= claim.answered_ms
    return kind in claim.kinds and claim.sent_ms - 1 <= at_ms and before_answer


def check_operator_history(
    items: Mapping[str, Mapping[str, Any]], answers: Iterable[Answer], findings: Findings
) -> None:
    """Match every operator entry in the histories with an answer the API gave, one to one.

    An entry no answer accounts for is `unanswered-actions`; an accepted answer (202
    retry, a bulk retry's `retried` id, 200 or 202 cancel) with no entry is
    `unrecorded-answers`. A request that got no answer may account for at most one entry (a bulk
    retry, for as many as its limit).
    """
    claims = _claims(answers)
    spare = list(claims.get(None, []))
    for task_id in sorted({*items, *(key for key in claims if key is not None)}):
        item = items.get(task_id) or {}
        entries = sorted(
            (int(_instant(entry["at"]).timestamp() * 1000), entry["kind"])
            for entry in item.get("history") or []
            if entry.get("kind") in ACTIONS and not str(entry.get("by") or "").startswith(WORKFLOW_ACTOR)
        )
        open_claims = list(claims.get(task_id, []))
        for at_ms, kind in entries:
            fitting = [claim for claim in open_claims if _covers(claim, kind, at_ms)]
            # The certain answer that closes first, so that later entries keep the later answers.
            fitting.sort(key=lambda claim: (not claim.certain, claim.answered_ms or 2**62))
            if fitting:
                open_claims.remove(fitting[0])
                continue
            loose = next((claim for claim in spare if _covers(claim, kind, at_ms)), None)
            if loose is not None:
                spare.remove(loose)
                continue
            findings.unanswered_actions.append(task_id)
        if any(claim.certain for claim in open_claims):
            findings.unrecorded_answers.append(task_id)
    findings.unanswered_actions = sorted(set(findings.unanswered_actions))


def check_listings(
    items: Mapping[str, Mapping[str, Any]],
    counts: Mapping[str, int],
    listed: Mapping[str, Sequence[str]],
    findings: Findings,
) -> None:
    """`GET /stats` counts and `GET /tasks?status=` lists (all pages) must agree with the table, status by status."""
    by_status: dict[str, set[str]] = defaultdict(set)
    for task_id, item in items.items():
        by_status[str(item.get("status"))].add(task_id)
    for status, count in counts.items():
        if count != len(by_status[status]):
            findings.counts_disagree.append(f"{status}: {count} counted, {len(by_status[status])} in the table")
    for status, ids in listed.items():
        if len(ids) != len(set(ids)):
            findings.lists_disagree += sorted({i for i in ids if list(ids).count(i) > 1})
        findings.lists_disagree += sorted(set(ids) ^ by_status[status])


def poison_recorded_by_id(item: Mapping[str, Any] | None) -> bool:
    """Whether the DLQ handler recorded a poison message that carried this id as a FAILED task."""
    return (
        item is not None
        and item.get("status") == "FAILED"
        and str(item.get("lastError") or "").startswith(POISON_ERROR_PREFIX)
    )
