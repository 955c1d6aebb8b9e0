"""`taskctl schedules ...`: list, show, create, pause, resume, trigger and delete recurring schedules.

The routes are issue 20's contract (`/schedules...`, IAM on a deployed stage); the calls go
through `taskproc_client` like every other command's, and the exit codes are taskctl's.
"""

from __future__ import annotations

import click

from taskctl import cli as base
from taskctl import render
from taskctl.cli import EXIT_REFUSED, Options, call, emit_json, fail, json_flag, json_object, pass_options

OVERLAPS = ("skip", "allow", "buffer_one")


@click.group()
def schedules() -> None:
    """Recurring schedules: each fires a task of its type on a cron line or a rate, in its timezone."""


@schedules.command(name="list")
@json_flag
@pass_options
def list_schedules(options: Options) -> None:
    """Every schedule (all pages), with its next firing in its timezone and in UTC, and its last firing."""
    found = call(options, "schedules list", options.client.schedules)
    if options.json:
        emit_json({"schedules": [schedule.raw for schedule in found]})
    else:
        base.screen(options, render.schedules_table([schedule.raw for schedule in found]), soft_wrap=True)


@schedules.command()
@click.argument("schedule_id")
@json_flag
@pass_options
def show(options: Options, schedule_id: str) -> None:
    """One schedule: its definition, its next five firings and its last one."""
    found = call(options, f"schedules show {render.shown(schedule_id)}", lambda: options.client.schedule(schedule_id))
    if options.json:
        emit_json(found.raw)
    else:
        base.screen(options, render.schedule_detail(found.raw))


@schedules.command()
@click.argument("schedule_id")
@click.option("--type", "task_type", required=True, help="The task type each firing publishes.")
@click.option("--payload", default="{}", show_default=True, help="The tasks' payload, a JSON object.")
@click.option("--cron", help='A cron line, e.g. "0 9 * * MON-FRI" (or --rate).')
@click.option("--rate", help='A rate, e.g. "15 minutes" (or --cron).')
@click.option("--timezone", help="The zone the cron line is read in, e.g. Europe/Berlin.")
@click.option(
    "--overlap", type=click.Choice(OVERLAPS), help="While the last firing's task runs: skip, allow, buffer_one."
)
@click.option("--catchup-window", type=click.IntRange(min=0), help="Seconds within which missed firings still fire.")
@click.option("--paused", is_flag=True, help="Create it paused.")
@json_flag
@pass_options
def create(
    options: Options,
    schedule_id: str,
    task_type: str,
    payload: str,
    cron: str | None,
    rate: str | None,
    timezone: str | None,
    overlap: str | None,
    catchup_window: int | None,
    paused: bool,
) -> None:
    """Create the schedule SCHEDULE_ID (POST /schedules); the API checks the payload against the type's model."""
    if (cron is None) == (rate is None):
        raise click.UsageError("give exactly one of --cron or --rate")
    document = json_object(payload)
    made = call(
        options,
        f"schedules create {render.shown(schedule_id)}",
        lambda: options.client.create_schedule(
            schedule_id,
            task_type,
            document,
            cron=cron,
            rate=rate,
            timezone=timezone,
            overlap=overlap,  # type: ignore[arg-type]  # click.Choice checked it
            catchup_window_seconds=catchup_window,
            paused=paused or None,
        ),
    )
    if options.json:
        emit_json(made.raw)
        return
    upcoming = made.raw.get("nextFirings") or []
    after = f"; next firing {render.shown(upcoming[0])}" if upcoming and not made.paused else ""
    click.echo(f"{render.shown(made.id)}: created{' (paused)' if made.paused else ''}{after}")


def _change(options: Options, verb: str, schedule_id: str) -> None:
    action = options.client.pause_schedule if verb == "pause" else options.client.resume_schedule
    changed = call(options, f"schedules {verb} {render.shown(schedule_id)}", lambda: action(schedule_id))
    if options.json:
        emit_json(changed.raw)
    else:
        click.echo(render.schedule_change_line(verb, changed.raw))


@schedules.command()
@click.argument("schedule_id")
@json_flag
@pass_options
def pause(options: Options, schedule_id: str) -> None:
    """Pause SCHEDULE_ID: it fires nothing until resumed."""
    _change(options, "pause", schedule_id)


@schedules.command()
@click.argument("schedule_id")
@json_flag
@pass_options
def resume(options: Options, schedule_id: str) -> None:
    """Resume SCHEDULE_ID; missed firings inside its catch-up window fire once each."""
    _change(options, "resume", schedule_id)


@schedules.command()
@click.argument("schedule_id")
@json_flag
@pass_options
def trigger(options: Options, schedule_id: str) -> None:
    """Fire SCHEDULE_ID once now (its task's id ends in `.manual`)."""
    task = call(
        options, f"schedules trigger {render.shown(schedule_id)}", lambda: options.client.trigger_schedule(schedule_id)
    )
    if options.json:
        emit_json(task.raw)
    else:
        click.echo(f"{render.shown(schedule_id)}: fired {render.shown(task.id)}, {render.shown(task.status)}")


@schedules.command()
@click.argument("schedule_id")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_options
def delete(options: Options, schedule_id: str, yes: bool) -> None:
    """Delete SCHEDULE_ID (asks first); the tasks it already fired stay."""
    what = f"schedules delete {render.shown(schedule_id)}"
    if not yes:
        question = f"Delete schedule {render.shown(schedule_id)}? It fires nothing more; the tasks it fired stay."
        if not click.confirm(question, default=False, err=True):
            fail(f"{what}: not confirmed; nothing was deleted (--yes skips the question)", EXIT_REFUSED)
    call(options, what, lambda: options.client.delete_schedule(schedule_id))
    click.echo(f"{render.shown(schedule_id)}: deleted; the tasks it fired stay")
