"""How taskctl shows the API's answers to a person: rich tables and one-line summaries."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

STATUS_STYLES = {
    "PENDING": "cyan",
    "PROCESSING": "blue",
    "RETRYING": "yellow",
    "COMPLETED": "green",
    "FAILED": "bold red",
    "CANCELLED": "magenta",
}


def _time(value: str | None) -> str:
    """An ISO timestamp to the second, in the API's own zone (UTC), or a dash."""
    if not value:
        return "-"
    return value.replace("T", " ")[:19]


def _status(value: str | None) -> Text:
    return Text(str(value or "-"), style=STATUS_STYLES.get(str(value), ""))


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def duration(started: str | None, finished: str | None) -> str:
    """How long an attempt ran, as `1.23 s`, or a dash while it runs or when a time is missing."""
    begin, end = parse_time(started), parse_time(finished)
    if begin is None or end is None:
        return "-"
    return f"{(end - begin).total_seconds():.2f} s"


def task_list(tasks: list[dict[str, Any]], status: str) -> Table:
    table = Table(title=f"{status} tasks, most recently updated first", title_justify="left")
    for column in ("id", "type", "status", "attempts", "updated", "last error"):
        table.add_column(column, overflow="fold", no_wrap=column == "updated")
    for task in tasks:
        table.add_row(
            str(task.get("id")),
            str(task.get("type") or "-"),
            _status(task.get("status")),
            f"{task.get('attempts', '-')}/{task.get('maxAttempts', '-')}",
            _time(task.get("updatedAt")),
            str(task.get("lastError") or "-"),
        )
    return table


def history(view: dict[str, Any]) -> Table:
    table = Table(title="history", title_justify="left")
    for column in ("when", "what", "outcome / by", "duration", "error / from"):
        table.add_column(column, overflow="fold", no_wrap=column == "when")
    for entry in view.get("history") or []:
        if entry.get("kind", "attempt") == "attempt":
            table.add_row(
                _time(entry.get("startedAt")),
                f"attempt {entry.get('attempt')}",
                str(entry.get("outcome")),
                duration(entry.get("startedAt"), entry.get("finishedAt")),
                str(entry.get("error") or ""),
            )
        else:
            table.add_row(
                _time(entry.get("at")),
                str(entry.get("kind")).replace("_", " "),
                str(entry.get("by") or "-"),
                "",
                f"was {entry.get('fromStatus')}",
            )
    return table


def task_detail(view: dict[str, Any]) -> RenderableType:
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column(overflow="fold")
    rows: list[tuple[str, str | Text]] = [
        ("id", str(view.get("id"))),
        ("type", str(view.get("type") or "-")),
        ("status", _status(view.get("status"))),
        ("attempts", f"{view.get('attempts')} of {view.get('maxAttempts')}"),
        ("created", _time(view.get("createdAt"))),
        ("updated", _time(view.get("updatedAt"))),
        ("finished", _time(view.get("finishedAt"))),
        ("next attempt", _time(view.get("nextAttemptAt"))),
        ("not before", _time(view.get("notBefore"))),
        ("cancel requested", "yes" if view.get("cancelRequested") else "no"),
        ("last error", str(view.get("lastError") or "-")),
        ("payload", json.dumps(view.get("payload"), ensure_ascii=False)),
        ("result", json.dumps(view.get("result"), ensure_ascii=False)),
    ]
    for name, value in rows:
        facts.add_row(name, value)
    return Group(facts, history(view))


def stats(answer: dict[str, Any]) -> RenderableType:
    sources = answer.get("sources") or {}
    counts = Table(title="tasks by status", title_justify="left")
    counts.add_column("status")
    counts.add_column("tasks", justify="right")
    counts.add_column("source", overflow="fold")
    for status, count in (answer.get("counts") or {}).items():
        source = sources.get(f"counts.{status}") or {}
        where = str(source.get("source") or "-") + ("" if source.get("exact", True) else " (approximate)")
        counts.add_row(_status(status), str(count), where)
    queues = Table(title="queues", title_justify="left")
    for column in ("queue", "visible", "in flight", "delayed", "oldest message"):
        queues.add_column(column, justify="left" if column == "queue" else "right")
    for name, depth in (answer.get("queues") or {}).items():
        age = depth.get("oldestAgeSeconds")
        queues.add_row(
            name,
            str(depth.get("visible", "-")),
            str(depth.get("inFlight", "-")),
            str(depth.get("delayed", "-")),
            "-" if age is None else f"{age} s",
        )
    return Group(counts, queues)


def bulk_retry(answer: dict[str, Any]) -> RenderableType:
    matched, retried = answer.get("matched") or [], answer.get("retried") or []
    skipped = answer.get("skipped") or []
    if answer.get("dryRun"):
        summary = f"dry run: {len(matched)} FAILED task(s) match; nothing was retried"
    else:
        summary = f"retried {len(retried)} of {len(matched)} matching task(s); skipped {len(skipped)}"
    table = Table(show_header=True)
    table.add_column("id", overflow="fold")
    table.add_column("outcome", overflow="fold")
    retried_ids = set(retried)
    reasons = {item.get("id"): item.get("reason") for item in skipped}
    for task_id in matched:
        if answer.get("dryRun"):
            outcome = "would be retried"
        elif task_id in retried_ids:
            outcome = "retried"
        else:
            outcome = f"skipped: {reasons.get(task_id, 'not retried')}"
        table.add_row(str(task_id), outcome)
    for task_id, reason in reasons.items():
        if task_id not in matched:
            table.add_row(str(task_id), f"skipped: {reason}")
    return Group(Text(summary), table) if matched or skipped else Text(summary)


def action_line(verb: str, task_id: str, status: int, view: dict[str, Any]) -> str:
    """One line for an accepted retry or cancel."""
    now = view.get("status")
    if verb == "cancel" and view.get("cancelRequested") and now == "PROCESSING":
        return f"{task_id}: cancel requested ({status}); the running attempt finishes first, a failure ends CANCELLED"
    done = {"retry": "retried", "cancel": "cancelled"}[verb]
    return f"{task_id}: {done} ({status}), now {now}"
