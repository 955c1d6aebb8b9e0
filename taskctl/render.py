r"""How taskctl shows the API's answers to a person: rich tables and one-line summaries.

Every value that comes from the API (ids, types, errors, payloads, principals, reasons)
is shown as plain text, never as rich markup and never as raw control characters: a task
id is whatever a client chose, and one such as `ESC]0;PWNED BEL` or `[link=...]docs[/link]`
must not retitle the operator's terminal or show something other than itself. `shown`
writes control, format and separator characters as Python writes them in a string
literal (`\x1b`, `\n`, `\u202e`) and a backslash as `\\`, so what is shown is unambiguous;
tables get `rich.text.Text` cells, which rich never parses as markup.

At any width (80 columns included) an id is printed whole on one line, never folded: it is
what a person copies into the next command. A listing whose ids fit beside the other columns
is a table; one whose ids do not puts each id on a line of its own with the task's facts
under it (the terminal, not taskctl, wraps an id wider than the screen). A listing cuts long
errors to fit, with `…`, and `taskctl show` prints them in full. Every time says its zone.
"""

from __future__ import annotations

import json
import unicodedata
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.measure import Measurement
from rich.segment import Segment
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


# Unicode categories a terminal may act on or draw invisibly: controls (C0, DEL, C1), format
# characters (bidirectional overrides, zero-width ones) and line or paragraph separators.
_UNSAFE_CATEGORIES = {"Cc", "Cf", "Zl", "Zp"}
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _unsafe(char: str) -> bool:
    return unicodedata.category(char) in _UNSAFE_CATEGORIES


def _escape(char: str) -> str:
    code = ord(char)
    if char in _NAMED:
        return _NAMED[char]
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def escape_controls(text: str) -> str:
    r"""`text` with its control, format and separator characters escaped (`\x1b`); backslashes kept."""
    return "".join(_escape(char) if _unsafe(char) else char for char in text)


def shown(value: Any) -> str:
    """A value of the API's as one unambiguous line of plain text: backslashes doubled, controls escaped."""
    return escape_controls(str(value).replace("\\", "\\\\"))


def plain(value: Any) -> Text:
    """A table cell for a value of the API's: `shown`, and never parsed as markup."""
    return Text(shown(value))


def _json_escape(char: str) -> str:
    code = ord(char)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000  # JSON writes a character beyond the BMP as a surrogate pair
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def json_text(value: Any, indent: int | None = None) -> str:
    r"""JSON of `value`: non-ASCII text kept readable, every character a terminal acts on a `\u` escape.

    `json.dumps` escapes the C0 controls only; DEL, the C1 controls (`\x9b` starts a
    sequence in some terminals) and bidirectional overrides would be written raw.
    """
    dumped = json.dumps(value, ensure_ascii=False, indent=indent)
    return "".join(_json_escape(char) if char != "\n" and _unsafe(char) else char for char in dumped)


def _time(value: str | None) -> str:
    """An ISO timestamp of the API's to the second, with its zone (`2026-11-25 12:00:00 UTC`), or a dash."""
    if not value:
        return "-"
    moment = parse_time(value)
    if moment is None or moment.utcoffset() is None:
        return shown(value)  # not a time this reader knows how to place: shown as sent
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def _status(value: str | None) -> Text:
    return Text(shown(value or "-"), style=STATUS_STYLES.get(str(value), ""))


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


# The narrowest a listing's last-error column may get before the ids go on lines of their own.
MIN_ERROR_WIDTH = 12
GAP = 2  # spaces between two columns
HEADERS = ("id", "type", "status", "attempts", "updated", "last error")


class TaskList:
    """A page of `GET /tasks` laid out for the width it is printed at (the module docstring says how).

    Print it with `soft_wrap=True`: an id wider than the screen is then one line the terminal wraps,
    not one rich folds or crops.
    """

    def __init__(self, tasks: list[dict[str, Any]], status: str) -> None:
        self.tasks = tasks
        self.status = status

    def _cells(self, task: dict[str, Any]) -> list[Text]:
        return [
            plain(task.get("type") or "-"),
            _status(task.get("status")),
            plain(f"{task.get('attempts', '-')}/{task.get('maxAttempts', '-')}"),
            Text(_time(task.get("updatedAt"))),
            Text(shown(task.get("lastError") or "-"), no_wrap=True, overflow="ellipsis"),
        ]

    def _widths(self) -> list[int]:
        """The widths of the id, type, status, attempts and updated columns: their longest cells."""
        cells = [[shown(task.get("id")), *(cell.plain for cell in self._cells(task)[:-1])] for task in self.tasks]
        # Terminal cells, not characters: an id in CJK takes two a character.
        return [max(len(header), *(cell_len(row[n]) for row in cells)) for n, header in enumerate(HEADERS[:-1])]

    def _fits(self, width: int) -> bool:
        """Whether every id fits whole in a table beside the other columns, the error column kept readable."""
        return sum(self._widths()) + GAP * (len(HEADERS) - 1) + MIN_ERROR_WIDTH <= width

    def _table(self, width: int, with_ids: bool) -> Table:
        """The table at `width`: every column as wide as its longest cell, the last error given the rest."""
        widths = self._widths()
        if not with_ids:  # the facts under each id, indented by the gap before the type
            widths[0] = 0
        table = Table(box=None, padding=(0, GAP // 2), pad_edge=False, show_header=with_ids, header_style="bold")
        for header, column_width in zip(HEADERS, widths, strict=False):
            table.add_column(header, width=column_width, no_wrap=True)
        rest = width - sum(widths) - GAP * (len(HEADERS) - 1)
        table.add_column(HEADERS[-1], width=max(rest, MIN_ERROR_WIDTH), no_wrap=True, overflow="ellipsis")
        for task in self.tasks:
            table.add_row(plain(task.get("id")) if with_ids else Text(""), *self._cells(task))
        return table

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield Text(f"{shown(self.status)} tasks, most recently updated first")
        if not self.tasks:
            yield Text("none")
            return
        with_ids = self._fits(options.max_width)
        table = self._table(options.max_width, with_ids)
        lines = console.render_lines(table, options.update(height=None), pad=False)
        if with_ids:
            yield table
        else:
            # One id to a line, its facts indented under it; the facts align across the tasks.
            for task, line in zip(self.tasks, lines, strict=False):
                yield Text(shown(task.get("id")), style="bold")
                yield from line
                yield Segment.line()
        if _cut(lines):
            yield Text("(an error that ends in … is cut to fit: `taskctl show ID` prints it whole)", style="dim")


def _cut(lines: list[list[Segment]]) -> bool:
    """Whether rich cut a cell of these lines short (it ends the cell with `…`)."""
    return any(segment.text.rstrip().endswith("…") for line in lines for segment in line)


def task_list(tasks: list[dict[str, Any]], status: str) -> TaskList:
    return TaskList(tasks, status)


def history(view: dict[str, Any]) -> Table:
    # No side borders, so that an error keeps room to wrap at its words at 80 columns.
    table = Table(title="history", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for column in ("when", "what", "outcome / by", "duration", "error / from"):
        table.add_column(column, overflow="fold", no_wrap=column in ("when", "what", "duration"))
    for entry in view.get("history") or []:
        if entry.get("kind", "attempt") == "attempt":
            table.add_row(
                plain(_time(entry.get("startedAt"))),
                plain(f"attempt {entry.get('attempt')}"),
                plain(entry.get("outcome")),
                plain(duration(entry.get("startedAt"), entry.get("finishedAt"))),
                plain(entry.get("error") or ""),
            )
        else:
            table.add_row(
                plain(_time(entry.get("at"))),
                plain(str(entry.get("kind")).replace("_", " ")),
                plain(entry.get("by") or "-"),
                "",
                plain(f"was {entry['fromStatus']}" if entry.get("fromStatus") else ""),
            )
    return table


def _progress(progress: Any) -> Text:
    """A heartbeat's progress: `done/total (pct%)` for `{"done", "total"}`, else its JSON, else a dash."""
    if progress is None:
        return Text("-")
    done, total = (progress.get("done"), progress.get("total")) if isinstance(progress, dict) else (None, None)
    numbers = all(isinstance(n, int | float) and not isinstance(n, bool) for n in (done, total))
    if numbers and total:
        return plain(f"{done}/{total} ({100 * done / total:.0f}%)")
    return Text(json_text(progress))


def _then(steps: Any) -> Text:
    """A chain's steps, one a line: `<id> <type> <state>`; a dash for a task without one."""
    if not isinstance(steps, list) or not steps:
        return Text("-")
    return Text("\n").join(
        plain(f"{step.get('id')}  {step.get('type')}  {step.get('state')}") for step in steps if isinstance(step, dict)
    )


def _callback(view: dict[str, Any]) -> Text:
    callback = view.get("callback")
    if not isinstance(callback, dict):
        return Text("-")
    return plain(f"{callback.get('url')} (delivered by the task {view.get('callbackTask') or '-'})")


def task_detail(view: dict[str, Any]) -> RenderableType:
    """Everything about one task. Print it with `soft_wrap=True`: its id is one line, however long."""
    rows: list[tuple[str, Text]] = [
        ("type", plain(view.get("type") or "-")),
        ("tags", plain(" ".join(view.get("tags") or []) or "-")),
        ("status", _status(view.get("status"))),
        ("attempts", plain(f"{view.get('attempts')} of {view.get('maxAttempts')}")),
        ("created", plain(_time(view.get("createdAt")))),
        ("updated", plain(_time(view.get("updatedAt")))),
        ("finished", plain(_time(view.get("finishedAt")))),
        ("next attempt", plain(_time(view.get("nextAttemptAt")))),
        ("not before", plain(_time(view.get("notBefore")))),
        ("start by", plain(_time(view.get("startBy")))),
        ("cancel requested", Text("yes" if view.get("cancelRequested") else "no")),
        ("progress", _progress(view.get("progress"))),
        ("last error", plain(view.get("lastError") or "-")),
        ("payload", Text(json_text(view.get("payload")))),
        ("result", Text(json_text(view.get("result")))),
    ]
    if view.get("then"):
        rows.append(("then", _then(view.get("then"))))
    if view.get("callback"):
        rows.append(("callback", _callback(view)))
    label = max(len(name) for name, _ in rows)
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold", width=label)
    facts.add_column(overflow="fold")
    for name, value in rows:
        facts.add_row(name, value)
    # The id outside the grid, so that no column folds it.
    heading = Text.assemble(("id".ljust(label + 2), "bold"), plain(view.get("id")))
    return Group(heading, facts, history(view))


WORKFLOW_STYLES = {"RUNNING": "blue", "WAITING": "cyan", "NOT_RUN": "magenta"}


def workflow_detail(view: dict[str, Any]) -> RenderableType:
    """A workflow: its status, its children's counts, its then task, and every child's id, one a line (whole).
    Print it with `soft_wrap=True`."""
    then = view.get("then") if isinstance(view.get("then"), dict) else {}
    status = str(view.get("status"))
    then_status = str(then.get("status"))
    counts = view.get("counts") or {}
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column(overflow="fold")
    facts.add_row("status", Text(shown(status), style=STATUS_STYLES.get(status) or WORKFLOW_STYLES.get(status, "")))
    facts.add_row("children", plain(", ".join(f"{count} {name}" for name, count in counts.items()) or "-"))
    style = STATUS_STYLES.get(then_status) or WORKFLOW_STYLES.get(then_status, "")
    facts.add_row("then", Text.assemble(plain(then.get("id") or "-"), "  ", (shown(then_status), style)))
    children = [Text(shown(child)) for child in view.get("children") or []]
    heading = Text.assemble(("id".ljust(len("children") + 2), "bold"), plain(view.get("id")))
    return Group(heading, facts, Text(f"children, in order ({len(children)}):"), *children)


def stats(answer: dict[str, Any]) -> RenderableType:
    sources = answer.get("sources") or {}
    counts = Table(title="tasks by status", title_justify="left")
    counts.add_column("status")
    counts.add_column("tasks", justify="right")
    counts.add_column("source", overflow="fold")
    for status, count in (answer.get("counts") or {}).items():
        source = sources.get(f"counts.{status}") or {}
        where = shown(source.get("source") or "-") + ("" if source.get("exact", True) else " (approximate)")
        counts.add_row(_status(status), plain("-" if count is None else count), Text(where))
    queues = Table(title="queues", title_justify="left")
    for column in ("queue", "visible", "in flight", "delayed", "oldest message"):
        queues.add_column(column, justify="left" if column == "queue" else "right")
    for name, depth in (answer.get("queues") or {}).items():
        age = depth.get("oldestAgeSeconds")
        queues.add_row(
            plain(name),
            plain(depth.get("visible", "-")),
            plain(depth.get("inFlight", "-")),
            plain(depth.get("delayed", "-")),
            plain("-" if age is None else f"{age} s"),
        )
    repairs = Table(title="repairs, last 24 hours", title_justify="left")
    for column in ("repair", "tasks", "source"):
        repairs.add_column(column, justify="right" if column == "tasks" else "left", overflow="fold")
    for name, value in (answer.get("repairs") or {}).items():
        source = (sources.get(f"repairs.{name}") or {}).get("source") or "-"
        repairs.add_row(plain(REPAIR_NAMES.get(name, name)), plain("-" if value is None else value), plain(source))
    parts = [counts, queues]
    if answer.get("repairs"):
        parts.append(repairs)
    if answer.get("throughput"):
        parts.append(_last_hour(answer["throughput"]))
    return Group(*parts)


def _last_hour(throughput: dict[str, Any]) -> Table:
    """Per type and in total: the last hour's completed, failed, retried and accepted, and p95 latencies."""
    table = Table(title="last hour", title_justify="left")
    for column in ("type", "completed", "failed", "retried", "accepted", "p95 attempt", "p95 end to end"):
        table.add_column(column, justify="left" if column == "type" else "right")
    series = (throughput.get("perMinute") or {}).get("series") or {}
    latency = throughput.get("latency") or {}
    for name in sorted(series, key=lambda n: (n == "total", n)):
        sums = [_whole(sum(series[name].get(key) or [])) for key in ("completed", "failed", "retried", "accepted")]
        p95 = [_ms(((latency.get(name) or {}).get(key) or {}).get("p95")) for key in ("attemptMs", "endToEndMs")]
        table.add_row(plain("all types" if name == "total" else name), *sums, *p95)
    return table


def _whole(value: float) -> Text:
    return plain(int(value) if float(value).is_integer() else round(value, 1))


def _ms(value: Any) -> Text:
    return plain("-" if value is None else f"{value:.0f} ms")


def stuck(page: dict[str, Any]) -> RenderableType:
    """`GET /stuck`'s page: each stuck task with why and since when, or a line saying none were found."""
    tasks = page.get("tasks") or []
    if not tasks:
        scanned = page.get("scanned", 0)
        more = "; more of the table is left to read (--cursor)" if page.get("next") else ""
        return plain(f"no stuck tasks among {scanned} read{more}")
    table = Table(title="stuck tasks", title_justify="left")
    for column in ("id", "type", "status", "why", "since"):
        table.add_column(column, overflow="fold" if column == "why" else "ellipsis", no_wrap=column == "id")
    for task in tasks:
        table.add_row(
            plain(task.get("id")),
            plain(task.get("type")),
            _status(task.get("status")),
            plain(task.get("reason")),
            Text(_time(task.get("since"))),
        )
    return table


# `GET /stats`' repairs as the table names them (docs/operations.md says what each means).
REPAIR_NAMES = {"adopted": "adopted", "redispatched": "redispatched", "retriesAwaited": "retries awaited"}


def bulk_retry(answer: dict[str, Any]) -> RenderableType:
    matched, retried = answer.get("matched") or [], answer.get("retried") or []
    skipped = answer.get("skipped") or []
    if answer.get("dryRun"):
        summary = f"dry run: {len(matched)} FAILED task(s) match; nothing was retried"
    else:
        summary = f"retried {len(retried)} of {len(matched)} matching task(s); skipped {len(skipped)}"
    lines: list[Text] = []  # one `id: outcome` line a task, so that no column folds an id
    retried_ids = set(retried)
    reasons = {item.get("id"): item.get("reason") for item in skipped}
    for task_id in matched:
        if answer.get("dryRun"):
            outcome = "would be retried"
        elif task_id in retried_ids:
            outcome = "retried"
        else:
            outcome = f"skipped: {shown(reasons.get(task_id, 'not retried'))}"
        lines.append(Text.assemble(plain(task_id), f": {outcome}"))
    for task_id, reason in reasons.items():
        if task_id not in matched:
            lines.append(Text.assemble(plain(task_id), f": skipped: {shown(reason)}"))
    return Group(Text(summary), *lines)


def action_line(verb: str, task_id: str, status: int, view: dict[str, Any]) -> str:
    """One line of plain text for an accepted retry or cancel."""
    now = view.get("status")
    if verb == "cancel" and view.get("cancelRequested") and now == "PROCESSING":
        return (
            f"{shown(task_id)}: cancel requested ({status}); the running attempt finishes first, "
            "a failure ends CANCELLED"
        )
    done = {"retry": "retried", "cancel": "cancelled"}[verb]
    return f"{shown(task_id)}: {done} ({status}), now {shown(now)}"


def _options(options: dict[str, Any]) -> Text:
    """A type's options as `name=value` pairs, nested ones as JSON; a dash when it has none."""
    if not options:
        return Text("-")
    pairs = [
        f"{shown(name)}={json_text(value) if isinstance(value, dict | list) else shown(value)}"
        for name, value in options.items()
    ]
    return Text(" ".join(pairs))


def _running(entry: dict[str, Any]) -> Text:
    """`running/cap` for a type under a concurrency cap, else a dash."""
    cap = (entry.get("options") or {}).get("concurrency")
    if entry.get("running") is None or cap is None:
        return Text("-")
    return plain(f"{entry['running']}/{cap}")


def _pause_state(entry: dict[str, Any]) -> Text:
    if not entry.get("paused"):
        return Text("no", style="green")
    return Text(
        f"paused by {shown(entry.get('pausedBy') or '-')} at {_time(entry.get('pausedAt'))}"
        f" (in effect by {_time(entry.get('effectiveBy'))})",
        style="bold yellow",
    )


def types_table(types: list[dict[str, Any]]) -> Table:
    table = Table(title="task types", title_justify="left")
    for column in ("type", "paused", "running/cap", "options"):
        table.add_column(column, overflow="fold")
    for entry in types:
        table.add_row(
            plain(entry.get("name")), _pause_state(entry), _running(entry), _options(entry.get("options") or {})
        )
    return table


def type_detail(entry: dict[str, Any]) -> RenderableType:
    changes = Table(title="pauses and resumes, oldest first", title_justify="left")
    for column in ("when", "what", "by", "changed"):
        changes.add_column(column, overflow="fold", no_wrap=column == "when")
    for change in entry.get("history") or []:
        changes.add_row(
            plain(_time(change.get("at"))),
            plain(change.get("action")),
            plain(change.get("by") or "-"),
            Text("yes" if change.get("changed", True) else "no (it already was)"),
        )
    return Group(types_table([entry]), changes)


def type_change_line(verb: str, answer: dict[str, Any]) -> str:
    """One line of plain text for an accepted pause or resume, saying whether anything changed."""
    name = shown(answer.get("name"))
    if verb == "pause":
        by, at = shown(answer.get("pausedBy") or "-"), _time(answer.get("pausedAt"))
        if not answer.get("changed"):
            return f"{name}: already paused by {by} at {at}; nothing changed"
        return (
            f"{name}: paused; consumers see it within 5 s (by {_time(answer.get('effectiveBy'))}): no attempt"
            " starts after that, attempts already started finish, and publishing still accepts its tasks"
        )
    if answer.get("paused"):
        return f"{name}: resumed, then paused again by {shown(answer.get('pausedBy') or '-')}"
    if not answer.get("changed"):
        return f"{name}: was not paused; nothing changed"
    return f"{name}: resumed; consumers see it within 5 s, and its held-back tasks start again"


def _zoned(value: Any, zone: str | None) -> str:
    """A UTC time of the API's in the schedule's timezone (`2026-11-25 10:00 CET`), or a dash."""
    moment = parse_time(value) if isinstance(value, str) else None
    if moment is None or not zone:
        return "-"
    try:
        local = moment.astimezone(ZoneInfo(zone))
    except (ZoneInfoNotFoundError, ValueError):
        return "-"
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()}"


def _cadence(schedule: dict[str, Any]) -> str:
    if schedule.get("cron"):
        return f"cron {shown(schedule['cron'])}"
    if schedule.get("rate"):
        return f"every {shown(schedule['rate'])}"
    return "-"


def _last_firing(schedule: dict[str, Any]) -> str:
    """A full view's last firing (time, task, status), or a summary's (its time)."""
    last = schedule.get("lastFiring")
    if isinstance(last, str):
        return f"{_time(last)}"
    if not isinstance(last, dict):
        return "never"
    return f"{_time(last.get('at'))}: {shown(last.get('taskId') or '-')} {shown(last.get('status') or '-')}"


def _paused(schedule: dict[str, Any]) -> Text:
    return Text("paused", style="bold yellow") if schedule.get("paused") else Text("no", style="green")


def _counts(schedule: dict[str, Any]) -> Text:
    counts = schedule.get("counts") or {}
    names = {"fired": "fired", "skipped": "skipped", "missed": "missed", "refused": "refused", "caughtUp": "caught up"}
    return plain(", ".join(f"{counts.get(key, 0)} {name}" for key, name in names.items()))


class SchedulesList:
    """Every schedule (as `GET /schedules` lists them) with its next firing in its own timezone and in
    UTC, and its last firing: a table where it fits unfolded, else each id on a line of its own with
    its facts under it. Print it with `soft_wrap=True`."""

    COLUMNS = ("id", "type", "when", "timezone", "next firing", "next (UTC)", "paused", "last firing", "firings")

    def __init__(self, schedules: list[dict[str, Any]]) -> None:
        self.schedules = schedules

    def _row(self, schedule: dict[str, Any]) -> list[Text]:
        upcoming = schedule.get("nextFiring")
        zone = schedule.get("timezone") or "UTC"
        return [
            plain(schedule.get("id")),
            plain(schedule.get("type") or "-"),
            Text(_cadence(schedule)),
            plain(zone),
            Text(_zoned(upcoming, zone)),
            plain(_time(upcoming)),
            _paused(schedule),
            Text(_last_firing(schedule)),
            _counts(schedule),
        ]

    def table(self) -> Table:
        table = Table(title="schedules", title_justify="left")
        for column in self.COLUMNS:
            table.add_column(column, overflow="fold")
        for schedule in self.schedules:
            table.add_row(*self._row(schedule))
        return table

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        table = self.table()
        if Measurement.get(console, options.update(max_width=10_000), table).maximum <= options.max_width:
            yield table
            return
        yield Text("schedules")
        for schedule in self.schedules:
            _id, kind, when, zone, upcoming, upcoming_utc, paused, last, counts = self._row(schedule)
            yield Text(shown(schedule.get("id")), style="bold")  # whole: the terminal wraps it, if anything
            facts = Table.grid(padding=(0, 0, 0, 2), pad_edge=True)  # indented under the id, wrapped at words
            facts.add_column(overflow="fold")
            facts.add_row(Text.assemble(kind, ", ", when, " in ", zone, ", paused: ", paused))
            facts.add_row(Text.assemble("next ", upcoming, " (", upcoming_utc, ")"))
            facts.add_row(Text.assemble("last ", last, "; ", counts))
            yield facts


def schedules_table(schedules: list[dict[str, Any]]) -> SchedulesList:
    return SchedulesList(schedules)


def schedule_detail(schedule: dict[str, Any]) -> RenderableType:
    zone = schedule.get("timezone") or "UTC"
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column(overflow="fold")
    catchup = schedule.get("catchupWindowSeconds")
    refused = schedule.get("lastError") if isinstance(schedule.get("lastError"), dict) else None
    skip = schedule.get("lastSkip") if isinstance(schedule.get("lastSkip"), dict) else None
    rows: list[tuple[str, Text]] = [
        ("id", plain(schedule.get("id"))),
        ("type", plain(schedule.get("type") or "-")),
        ("when", Text(_cadence(schedule))),
        ("timezone", plain(zone)),
        ("overlap", plain(schedule.get("overlap") or "-")),
        ("catch-up window", plain("-" if catchup is None else f"{catchup} s")),
        ("paused", _paused(schedule)),
        ("declared by", plain(schedule.get("source") or "-")),
        ("last firing", Text(_last_firing(schedule))),
        ("firings", _counts(schedule)),
        ("last skip", plain(f"{_time(skip.get('at'))}, waiting on {skip.get('waitingOn')}" if skip else "-")),
        ("last refusal", plain(f"{_time(refused.get('at'))}: {refused.get('message')}" if refused else "-")),
        ("payload", Text(json_text(schedule.get("payload")))),
    ]
    for name, value in rows:
        facts.add_row(name, value)
    firings = Table(title="next firings", title_justify="left")
    firings.add_column("in its timezone")
    firings.add_column("UTC")
    for moment in schedule.get("nextFirings") or []:
        firings.add_row(Text(_zoned(moment, zone)), plain(_time(moment)))
    return Group(facts, firings)


def schedule_change_line(verb: str, schedule: dict[str, Any]) -> str:
    """One line of plain text for a pause or resume of a schedule."""
    name = shown(schedule.get("id"))
    if verb == "pause":
        return f"{name}: paused; it fires nothing until it is resumed"
    upcoming = (schedule.get("nextFirings") or [None])[0]
    zone = schedule.get("timezone") or "UTC"
    after = f"; next firing {_time(upcoming)} ({_zoned(upcoming, zone)})" if upcoming else ""
    return f"{name}: resumed{after}"
