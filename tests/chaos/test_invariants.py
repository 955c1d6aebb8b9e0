"""The invariant checks themselves, on hand-made items: each catches what it names and nothing else."""

from __future__ import annotations

from typing import Any

from tools.invariants import Expected, attempts_overlap, check_tasks, poison_recorded_by_id


def _attempt(n: int, start: str, end: str | None, outcome: str, error: str | None = None) -> dict[str, Any]:
    return {"attempt": n, "startedAt": f"2026-01-01T00:00:{start}Z",
            "finishedAt": f"2026-01-01T00:00:{end}Z" if end else None, "outcome": outcome, "error": error}


def _item(status: str, history: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"status": status, "attempts": len(history), "maxAttempts": 3, "history": history,
            "payload": {"copy": 1}, **extra}


def test_a_task_that_failed_then_succeeded_breaks_nothing() -> None:
    item = _item("COMPLETED", [_attempt(1, "01.000", "01.500", "failed", "boom"), _attempt(2, "03.000", "03.400",
                                                                                             "succeeded")],
                 lastError="boom")
    findings = check_tasks({"t": item}, [Expected("t", payload={"copy": 1})], max_attempts=3)
    assert findings.broken() == {}


def test_each_broken_invariant_is_named_with_its_task() -> None:
    items = {
        "twice": _item("COMPLETED", [_attempt(1, "01.000", "02.000", "succeeded"),
                                     _attempt(2, "03.000", "04.000", "succeeded")]),
        "overlap": _item("FAILED", [_attempt(1, "01.000", "05.000", "expired", "lease"),
                                    _attempt(2, "04.000", "06.000", "failed", "x")], lastError="x"),
        "silent": _item("FAILED", [_attempt(1, "01.000", "02.000", "failed")], lastError=""),
        "open": _item("RETRYING", [_attempt(1, "01.000", "02.000", "failed", "x")], lastError="x"),
        "many": _item("FAILED", [_attempt(n, f"0{n}.000", f"0{n}.500", "failed", "x") for n in range(1, 5)],
                      lastError="x"),
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
