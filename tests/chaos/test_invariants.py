"""The invariant checks themselves, on hand-made items: each catches what it names and nothing else."""

from __future__ import annotations

import json
from typing import Any

from tools.chaos.invariants import (
    Answer,
    Expected,
    Findings,
    attempts_overlap,
    check_listings,
    check_operator_history,
    check_tasks,
    poison_recorded_by_id,
    runs,
)

PERMANENT = "permanent failure: simulated failure (failureChance 1)"
RESULT = {"sleptMs": 0}


def _t(second: str) -> str:
    return f"2026-01-01T00:00:{second}Z"


def _ms(second: str) -> int:
    return 1767225600000 + int(float(second) * 1000)


def _attempt(n: int, start: str, end: str | None, outcome: str, error: str | None = None) -> dict[str, Any]:
    return {
        "kind": "attempt",
        "attempt": n,
        "startedAt": _t(start),
        "finishedAt": _t(end) if end else None,
        "outcome": outcome,
        "error": error,
    }


def _action(kind: str, at: str, from_status: str) -> dict[str, Any]:
    return {"kind": kind, "at": _t(at), "by": "anonymous", "fromStatus": from_status}


def _item(status: str, history: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    attempts = len([e for e in (runs(history, status)[-1].entries) if "attempt" in e])
    item = {"status": status, "attempts": attempts, "maxAttempts": 3, "history": history, "payload": {"copy": 1}}
    if status == "COMPLETED":
        item["result"] = json.dumps(RESULT)
    return {**item, **extra}


def _broken(item: dict[str, Any], **expected: Any) -> dict[str, list[str]]:
    return check_tasks({"t": item}, [Expected("t", **expected)], max_attempts=3).broken()


def test_a_task_that_failed_then_succeeded_breaks_nothing() -> None:
    item = _item(
        "COMPLETED",
        [_attempt(1, "01.000", "01.500", "failed", "boom"), _attempt(2, "03.000", "03.400", "succeeded")],
        lastError="boom",
    )
    assert _broken(item, payload={"copy": 1}, result=RESULT) == {}


def test_each_broken_invariant_is_named_with_its_task() -> None:
    items = {
        "twice": _item(
            "COMPLETED", [_attempt(1, "01.000", "02.000", "succeeded"), _attempt(2, "03.000", "04.000", "succeeded")]
        ),
        "overlap": _item(
            "FAILED",
            [_attempt(1, "01.000", "05.000", "expired", "lease"), _attempt(2, "04.000", "06.000", "failed", "x")],
            lastError="x",
        ),
        "silent": _item("FAILED", [_attempt(1, "01.000", "02.000", "failed")], lastError=""),
        "open": _item("RETRYING", [_attempt(1, "01.000", "02.000", "failed", "x")], lastError="x"),
        "many": _item(
            "FAILED", [_attempt(n, f"0{n}.000", f"0{n}.500", "failed", "x") for n in range(1, 5)], lastError="x"
        ),
        "doomed": _item("COMPLETED", [_attempt(1, "01.000", "02.000", "succeeded")]),
        "replaced": _item("COMPLETED", [_attempt(1, "01.000", "02.000", "succeeded")], payload={"copy": 2}),
    }
    expected = [Expected(task_id) for task_id in items if task_id not in {"doomed", "replaced"}]
    expected += [Expected("doomed", always_fails=True), Expected("replaced", payload={"copy": 1}), Expected("gone")]
    broken = check_tasks(items, expected, max_attempts=3).broken()
    assert broken == {
        "lost": ["gone"],
        "stuck": ["open"],
        "double-run": ["twice"],
        "overlaps": ["overlap"],
        "over-attempts": ["many"],
        "unexplained": ["silent"],
        "inconsistent": ["twice"],
        "wrong-success": ["doomed"],
        "payload-changed": ["replaced"],
    }


def test_an_attempt_without_an_end_overlaps_whatever_follows_it() -> None:
    assert attempts_overlap([_attempt(1, "01.000", None, "running"), _attempt(2, "09.000", "10.000", "failed")])
    assert not attempts_overlap([_attempt(2, "03.000", "04.000", "failed"), _attempt(1, "01.000", "03.000", "failed")])


def test_a_poison_message_with_an_id_counts_as_recorded_only_as_a_failed_poison_task() -> None:
    assert poison_recorded_by_id({"status": "FAILED", "lastError": "poison message: not a valid task"})
    assert not poison_recorded_by_id({"status": "FAILED", "lastError": "simulated failure"})
    assert not poison_recorded_by_id(None)


# --- task types -------------------------------------------------------------


def test_a_permanent_failure_is_one_failed_attempt_per_run() -> None:
    clean = _item(
        "FAILED",
        [
            _attempt(1, "01.000", "01.100", "failed", PERMANENT),
            _action("retry", "02.000", "FAILED"),
            _attempt(1, "03.000", "03.100", "failed", PERMANENT),
        ],
        lastError=PERMANENT,
    )
    assert _broken(clean, permanent=True, always_fails=True) == {}
    retried_after = _item(
        "FAILED",
        [_attempt(1, "01.000", "01.100", "failed", PERMANENT), _attempt(2, "03.000", "03.100", "failed", PERMANENT)],
        lastError=PERMANENT,
    )
    assert _broken(retried_after, permanent=True) == {"permanent-repeated": ["t"]}
    # Not marked permanent, yet the task was expected to be: two ordinary failures are one too many.
    twice = _item(
        "FAILED",
        [_attempt(1, "01.000", "01.100", "failed", "x"), _attempt(2, "03.000", "03.100", "failed", "x")],
        lastError="x",
    )
    assert _broken(twice, permanent=True) == {"permanent-repeated": ["t"]}
    assert _broken(twice) == {}


def test_a_completed_task_has_its_handlers_result_and_a_failed_one_none() -> None:
    done = [_attempt(1, "01.000", "01.100", "succeeded")]
    assert _broken(_item("COMPLETED", done), result=RESULT) == {}
    assert _broken(_item("COMPLETED", done, result=None)) == {"no-result": ["t"]}
    assert _broken(_item("COMPLETED", done, result='{"sleptMs": 5}'), result=RESULT) == {"wrong-result": ["t"]}
    kept = _item("FAILED", [_attempt(1, "01.000", "01.100", "failed", "x")], lastError="x", result='{"a": 1}')
    assert _broken(kept) == {"wrong-result": ["t"]}


def test_an_overrunning_attempt_must_fail_as_timed_out() -> None:
    timed_out = "timed out after 1001 ms (task type 'simulate' has 950 ms); its result was discarded"
    item = _item("FAILED", [_attempt(1, "01.000", "02.001", "failed", timed_out)], lastError=timed_out)
    assert _broken(item, overruns=True) == {}
    other = _item("FAILED", [_attempt(1, "01.000", "02.001", "failed", "boom")], lastError="boom")
    assert _broken(other, overruns=True) == {"overrun-unnoticed": ["t"]}


def test_the_attempt_limit_holds_per_run() -> None:
    three = [_attempt(n, f"0{n}.000", f"0{n}.500", "failed", "x") for n in range(1, 4)]
    again = [_attempt(n, f"1{n}.000", f"1{n}.500", "failed", "x") for n in range(1, 4)]
    item = _item("FAILED", [*three, _action("retry", "05.000", "FAILED"), *again], lastError="x")
    assert _broken(item) == {}
    four = [*again, _attempt(4, "19.000", "19.500", "failed", "x")]
    item = _item("FAILED", [*three, _action("retry", "05.000", "FAILED"), *four], lastError="x")
    assert _broken(item) == {"over-attempts": ["t"]}


# --- operator actions in the history ----------------------------------------


def test_no_attempt_starts_after_a_cancel() -> None:
    cancelled = _item(
        "CANCELLED",
        [_attempt(1, "01.000", "01.100", "failed", "x"), _action("cancel", "02.000", "RETRYING")],
        lastError="x",
    )
    assert _broken(cancelled) == {}
    ran = _item(
        "CANCELLED",
        [
            _attempt(1, "01.000", "01.100", "failed", "x"),
            _action("cancel", "02.000", "RETRYING"),
            _attempt(2, "03.000", "03.100", "failed", "x"),
        ],
        lastError="x",
    )
    assert _broken(ran) == {"ran-after-cancel": ["t"]}


def test_a_cancel_requested_mid_attempt_ends_completed_or_cancelled() -> None:
    requested = [_attempt(1, "01.000", "03.000", "failed", "x")]
    cancelled = _item("CANCELLED", [_action("cancel_requested", "02.000", "PROCESSING"), *requested], lastError="x")
    assert _broken(cancelled) == {}
    won = _item(
        "COMPLETED", [_action("cancel_requested", "02.000", "PROCESSING"), _attempt(1, "01.000", "03.000", "succeeded")]
    )
    assert _broken(won) == {}
    retried = _item(
        "COMPLETED",
        [_action("cancel_requested", "02.000", "PROCESSING"), *requested, _attempt(2, "05.000", "05.100", "succeeded")],
        lastError="x",
    )
    assert _broken(retried) == {"cancel-ignored": ["t"]}
    failed = _item("FAILED", [_action("cancel_requested", "02.000", "PROCESSING"), *requested], lastError="x")
    assert _broken(failed) == {"cancel-ignored": ["t"]}


def test_each_retry_starts_one_run_counted_from_one() -> None:
    failed = [_attempt(1, "01.000", "01.100", "failed", PERMANENT)]
    retried = _item(
        "COMPLETED",
        [*failed, _action("retry", "02.000", "FAILED"), _attempt(1, "03.000", "03.100", "succeeded")],
        lastError=PERMANENT,
    )
    assert _broken(retried) == {}
    never_ran = _item("FAILED", [*failed, _action("retry", "02.000", "FAILED")], lastError=PERMANENT)
    assert _broken(never_ran) == {"retry-runs": ["t"]}
    counted_on = _item(
        "COMPLETED",
        [*failed, _action("retry", "02.000", "FAILED"), _attempt(2, "03.000", "03.100", "succeeded")],
        lastError=PERMANENT,
        attempts=2,
    )
    assert _broken(counted_on) == {"missing-attempts": ["t"]}
    cancelled_first = _item(
        "CANCELLED",
        [*failed, _action("retry", "02.000", "FAILED"), _action("cancel", "02.500", "PENDING")],
        lastError=PERMANENT,
    )
    assert _broken(cancelled_first) == {}


def test_every_counted_attempt_is_in_the_history() -> None:
    # An attempt whose consumer died must be recorded as expired when its task is taken over.
    taken_over = _item("COMPLETED", [_attempt(2, "03.000", "03.100", "succeeded")], attempts=2)
    assert _broken(taken_over) == {"missing-attempts": ["t"]}
    recorded = _item(
        "COMPLETED", [_attempt(1, "01.000", "02.000", "expired", "lease"), _attempt(2, "03.000", "03.100", "succeeded")]
    )
    assert _broken(recorded) == {}
    uncounted = _item("FAILED", [_attempt(1, "01.000", "01.100", "failed", "x")], lastError="x", attempts=2)
    assert _broken(uncounted) == {"missing-attempts": ["t"]}


def test_history_entries_are_in_the_order_their_writes_had() -> None:
    attempt = _attempt(1, "01.000", "03.000", "failed", "x")
    # A cancel asked for while the attempt ran is listed before the attempt it waited for.
    assert (
        _broken(_item("CANCELLED", [_action("cancel_requested", "02.000", "PROCESSING"), attempt], lastError="x")) == {}
    )
    # An action written after an attempt cannot be older than the attempt's end.
    early = _item("CANCELLED", [attempt, _action("cancel", "02.000", "RETRYING")], lastError="x")
    assert _broken(early) == {"out-of-order": ["t"]}
    swapped = _item(
        "FAILED",
        [_attempt(2, "05.000", "05.100", "failed", "x"), _attempt(1, "01.000", "01.100", "failed", "x")],
        lastError="x",
        attempts=2,
    )
    assert "out-of-order" in _broken(swapped)
    before_retry = _item(
        "COMPLETED",
        [
            _attempt(1, "01.000", "01.100", "failed", PERMANENT),
            _action("retry", "04.000", "FAILED"),
            _attempt(1, "03.000", "03.100", "succeeded"),
        ],
        lastError=PERMANENT,
    )
    assert _broken(before_retry) == {"out-of-order": ["t"]}


def _operator_findings(history: list[dict[str, Any]], answers: list[Answer]) -> dict[str, list[str]]:
    findings = Findings()
    check_operator_history({"t": {"status": "CANCELLED", "history": history}}, answers, findings)
    return findings.broken()


def test_every_operator_entry_matches_one_answer_the_api_gave() -> None:
    history = [
        _attempt(1, "01.000", "01.100", "failed", "x"),
        _action("retry", "02.000", "FAILED"),
        _action("cancel", "03.000", "PENDING"),
    ]
    retry = Answer("retry", "t", _ms("01.900"), _ms("02.100"), 202)
    cancel = Answer("cancel", "t", _ms("02.900"), _ms("03.100"), 200)
    assert _operator_findings(history, [retry, cancel]) == {}
    refused = Answer("retry", "t", _ms("01.950"), _ms("02.050"), 409)
    assert _operator_findings(history, [retry, cancel, refused]) == {}
    bulk = Answer("bulk_retry", None, _ms("01.500"), _ms("02.500"), 200, retried=("t",))
    assert _operator_findings(history, [bulk, cancel]) == {}
    # Nobody was told about the retry; or the answer came from another moment.
    assert _operator_findings(history, [cancel]) == {"unanswered-actions": ["t"]}
    late = Answer("retry", "t", _ms("02.500"), _ms("02.600"), 202)
    assert _operator_findings(history, [late, cancel]) == {"unanswered-actions": ["t"], "unrecorded-answers": ["t"]}
    # A cancel answered 202 promises a cancel_requested entry, not a cancel.
    requested = Answer("cancel", "t", _ms("02.900"), _ms("03.100"), 202)
    assert _operator_findings(history, [retry, requested]) == {"unanswered-actions": ["t"], "unrecorded-answers": ["t"]}
    # Two accepted retries, one entry.
    twice = Answer("retry", "t", _ms("01.800"), _ms("02.200"), 202)
    assert _operator_findings(history, [retry, twice, cancel]) == {"unrecorded-answers": ["t"]}


def test_a_request_without_an_answer_accounts_for_one_entry_at_most() -> None:
    history = [_action("retry", "02.000", "FAILED"), _action("retry", "04.000", "FAILED")]
    lost = Answer("retry", "t", _ms("01.900"))
    assert _operator_findings(history[:1], [lost]) == {}
    assert _operator_findings(history, [lost]) == {"unanswered-actions": ["t"]}
    assert _operator_findings([], [lost]) == {}


def test_a_bulk_retry_without_an_answer_accounts_for_as_many_entries_as_its_limit() -> None:
    history = [_action("retry", "02.000", "FAILED"), _action("retry", "04.000", "FAILED")]
    lost = Answer("bulk_retry", None, _ms("01.900"), limit=2)
    assert _operator_findings(history, [lost]) == {}
    third = [*history, _action("retry", "06.000", "FAILED")]
    assert _operator_findings(third, [lost]) == {"unanswered-actions": ["t"]}


def test_counts_and_lists_agree_with_the_table() -> None:
    items = {
        "a": {"status": "FAILED"},
        "b": {"status": "FAILED"},
        "c": {"status": "CANCELLED"},
        "d": {"status": "COMPLETED"},
    }
    findings = Findings()
    check_listings(
        items,
        {"FAILED": 2, "CANCELLED": 1, "RETRYING": 0},
        {"FAILED": ["b", "a"], "CANCELLED": ["c"], "RETRYING": []},
        findings,
    )
    assert findings.broken() == {}
    check_listings(
        items,
        {"FAILED": 3, "CANCELLED": 1, "RETRYING": 0},
        {"FAILED": ["b", "b"], "CANCELLED": ["c", "d"], "RETRYING": []},
        findings,
    )
    assert findings.counts_disagree == ["FAILED: 3 counted, 2 in the table"]
    assert findings.lists_disagree == ["b", "a", "d"]


def test_no_first_attempt_starts_after_the_tasks_expiry() -> None:
    in_time = _item("COMPLETED", [_attempt(1, "01.000", "01.500", "succeeded")], startBy=_ms("02.000"))
    late = _item("COMPLETED", [_attempt(1, "03.000", "03.500", "succeeded")], startBy=_ms("02.000"))
    assert _broken(in_time, result=RESULT) == {}
    assert _broken(late, result=RESULT) == {"ran-after-expiry": ["t"]}


def test_a_task_that_expired_before_it_started_is_consistent_cancelled() -> None:
    expired = _item("CANCELLED", [{"kind": "expired", "at": _t("05.000")}], lastError="expired before it started")
    assert _broken(expired) == {}


def test_a_completed_long_task_shows_its_last_heartbeat() -> None:
    done = {"done": 3, "total": 3}
    last = _item("COMPLETED", [_attempt(1, "01.000", "02.000", "succeeded")], progress=json.dumps(done))
    stale = _item("COMPLETED", [_attempt(1, "01.000", "02.000", "succeeded")], progress=json.dumps({"done": 1}))
    assert _broken(last, result=RESULT, progress=done) == {}
    assert _broken(stale, result=RESULT, progress=done) == {"stale-progress": ["t"]}
