"""`taskctl`: publish (with chains and callbacks), inspect, list, count, retry and cancel taskproc tasks, read
workflows, and pause task types, from a shell.

Exit codes (scripts may rely on them):
  0  everything asked for was done
  1  the API refused a request (a 4xx such as 400, 404 or 409) for at least one of the ids, or a
     confirmation was declined
  2  usage: a bad option, argument or --payload
  3  the API cannot be reached, or answered 5xx
  4  access: no AWS credentials for a route that needs them, or the API answered 401/403
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console
from taskproc_client import NoCredentials, NoRegion, Status, TaskprocError, TaskView, Unreachable

from taskctl import render
from taskctl.client import ApiClient, default_url

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_ACCESS = 0, 1, 2, 3, 4
LISTED_STATUSES = ("FAILED", "RETRYING", "CANCELLED")
BULK_LIMIT = 1000  # the most POST /retries takes in one call
# Which failure wins when several ids fail differently: the one a script most needs to see.
_SEVERITY = {EXIT_OK: 0, EXIT_REFUSED: 1, EXIT_ACCESS: 2, EXIT_UNAVAILABLE: 3}
T = TypeVar("T")

stdout = Console(soft_wrap=False)
stderr = Console(stderr=True)


@dataclass
class Options:
    client: ApiClient
    json: bool = False
    width: int | None = None  # None: rich's own (the terminal's, else COLUMNS, else 80)


def exit_code_for(status: int) -> int:
    if status in (401, 403):
        return EXIT_ACCESS
    if 400 <= status < 500:
        return EXIT_REFUSED
    return EXIT_UNAVAILABLE if status >= 500 else EXIT_OK


def error(message: str) -> None:
    """One line on stderr, whatever the message holds; values of the API's in it are `render.shown` first."""
    click.echo(f"taskctl: error: {render.escape_controls(' '.join(message.split()))}", err=True)


def fail(message: str, code: int) -> NoReturn:
    error(message)
    sys.exit(code)


def screen(options: Options, renderable: Any, *, soft_wrap: bool = False) -> None:
    """Print a table or a view on stdout, at `--width` if given. `soft_wrap`: lines wider than the screen
    are left for the terminal to wrap (render.task_list and render.task_detail ask for it, for long ids)."""
    console = stdout
    if options.width is not None:  # print(width=) only narrows; a wider layout needs a console of its own
        console = Console(
            file=stdout.file,
            width=options.width,
            soft_wrap=False,
            force_terminal=stdout.is_terminal,
            color_system=stdout.color_system,  # type: ignore[arg-type]
        )
    console.print(renderable, soft_wrap=soft_wrap)


def emit_json(value: Any) -> None:
    click.echo(render.json_text(value, indent=2))


def refusal_code(exc: TaskprocError) -> int:
    """The exit code of a failed call: no answer, no credentials, or the API's status."""
    if isinstance(exc, Unreachable):
        return EXIT_UNAVAILABLE
    if isinstance(exc, NoCredentials | NoRegion) or not exc.status:
        return EXIT_ACCESS
    return exit_code_for(exc.status)


def call(options: Options, what: str, action: Callable[[], T]) -> T:
    """One call of the client; a failure is said in one line (the API's JSON answer first with --json)
    and ends the command with its exit code."""
    try:
        return action()
    except Unreachable as exc:
        fail(str(exc), EXIT_UNAVAILABLE)
    except (NoCredentials, NoRegion) as exc:
        fail(str(exc), EXIT_ACCESS)
    except TaskprocError as exc:
        if options.json and exc.body is not None:
            emit_json(exc.body)
        fail(f"{what}: {exc.status} {render.shown(str(exc))}", refusal_code(exc))


def json_object(text: str, hint: str = "--payload") -> dict[str, Any]:
    """The JSON object an option gives; anything else is a usage error naming the option."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint=hint) from exc
    if not isinstance(document, dict):
        raise click.BadParameter("must be a JSON object", param_hint=hint)
    return document


pass_options = click.make_pass_decorator(Options)

# `--then TYPE[:JSON]`: the type ends at the first colon that opens a JSON object (`:{`), its payload after it.
_PAYLOAD_COLON = re.compile(r":(?=\s*\{)")


def chain_step(text: str) -> dict[str, Any]:
    """One `--then` step as the API takes it: `{"type"}` or `{"type", "payload"}`."""
    colon = _PAYLOAD_COLON.search(text)
    step_type = text[: colon.start()] if colon else text
    if not step_type.strip():
        raise click.BadParameter(f"{text!r} names no type: give TYPE or TYPE:JSON", param_hint="--then")
    step: dict[str, Any] = {"type": step_type}
    if colon:
        step["payload"] = json_object(text[colon.end() :], hint="--then")
    return step


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--url",
    help="The API's base URL, e.g. https://abc.execute-api.eu-west-1.amazonaws.com/api. Default: env TASKPROC_URL,"
    " else http://127.0.0.1:$PORT (the offline stack's port), else http://127.0.0.1:8000.",
)
@click.option("--api-key", envvar="TASKPROC_API_KEY", help="Sent as x-api-key (env TASKPROC_API_KEY).")
@click.option("--profile", envvar="AWS_PROFILE", help="The AWS profile whose credentials sign requests.")
@click.option(
    "--sign/--no-sign", default=None, help="Sign requests with SigV4. Default: sign unless the URL is on this machine."
)
@click.option("--timeout", type=click.FloatRange(min=0.1), default=30.0, show_default=True, help="Seconds per request.")
@click.option("--json", "json_output", is_flag=True, help="Print the API's JSON answer instead of tables.")
@click.option(
    "--width",
    type=click.IntRange(min=40),
    help="Lay tables out for this many columns. Default: the terminal's width (env COLUMNS), else 80.",
)
@click.pass_context
def cli(
    ctx: click.Context,
    url: str | None,
    api_key: str | None,
    profile: str | None,
    sign: bool | None,
    timeout: float,
    json_output: bool,
    width: int | None,
) -> None:
    """Operate taskproc: publish, show, list, count, retry and cancel tasks; read workflows; pause and resume task
    types; manage schedules; serve the console.

    Exit codes: 0 done; 1 the API refused a request (4xx) for at least one id, or a confirmation was declined; 2 usage;
    3 the API cannot be reached or answered 5xx; 4 no AWS credentials, or 401/403.
    """
    if url is None:
        try:
            url = default_url()
        except ValueError as exc:
            raise click.UsageError(str(exc)) from exc
    client = ApiClient(url, api_key=api_key, sign=sign, profile=profile, timeout=timeout)
    ctx.obj = Options(client, json=json_output, width=width)


def _after_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        options = ctx.find_object(Options)
        if options is not None:
            options.json = True


def json_flag(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--json",
        "json_output",
        is_flag=True,
        expose_value=False,
        callback=_after_json,
        is_eager=True,
        help="Print the API's JSON answer instead of tables.",
    )(command)


@cli.command()
@click.argument("task_id")
@click.option("--type", "task_type", help='The task type (the API\'s default is "simulate").')
@click.option("--payload", default="{}", show_default=True, help="The payload, a JSON object.")
@click.option("--delay", type=click.IntRange(0, 900), help="Seconds before the first attempt, 0 to 900.")
@click.option("--tag", "tags", multiple=True, help="A tag to find the task by (repeat for more, at most 10).")
@click.option(
    "--then",
    "then",
    multiple=True,
    metavar="TYPE[:JSON]",
    help='A chain step published once the task before it completes, e.g. \'upload:{"bucket": "out"}\''
    " (repeat for more, in order, at most 10; the step's payload gets `previous`, that task's result).",
)
@click.option("--callback", metavar="URL", help="POST the task's outcome, signed, to URL once it has ended.")
@json_flag
@pass_options
def publish(
    options: Options,
    task_id: str,
    task_type: str | None,
    payload: str,
    delay: int | None,
    tags: tuple[str, ...],
    then: tuple[str, ...],
    callback: str | None,
) -> None:
    """Publish the task TASK_ID (POST /publish), with a chain of steps after it and a callback if asked."""
    document = json_object(payload)
    steps = [chain_step(step) for step in then] or None
    ref = call(
        options,
        f"publish {render.shown(task_id)}",
        lambda: options.client.publish(
            task_type or "simulate", document, id=task_id, delay=delay, tags=tags, then=steps, callback=callback
        ),
    )
    if options.json:
        answer: dict[str, Any] = {"id": ref.id, "status": ref.status, "duplicate": ref.duplicate}
        emit_json(answer | ({"existingId": ref.existing_id} if ref.existing_id else {}))
    elif ref.duplicate:
        click.echo(f"{render.shown(ref.id)}: already published ({render.shown(ref.status)}); not queued again")
    else:
        click.echo(f"{render.shown(ref.id)}: published, {render.shown(ref.status)}")
        if steps:
            first = render.shown(f"{ref.id}/then/1")
            click.echo(f"  then {len(steps)} step(s), one after another; the first is published as {first}")
        if callback:
            click.echo(f"  its outcome is POSTed to {render.shown(callback)} once it ends")


@cli.command()
@click.argument("task_id")
@json_flag
@pass_options
def show(options: Options, task_id: str) -> None:
    """Show one task: its state, payload, result and history."""
    view = call(options, f"show {render.shown(task_id)}", lambda: options.client.get(task_id))
    if options.json:
        emit_json(view.raw)
    else:
        screen(options, render.task_detail(view.raw), soft_wrap=True)


@cli.command(name="list")
@click.option(
    "--status",
    type=click.Choice(LISTED_STATUSES, case_sensitive=False),
    default="FAILED",
    show_default=True,
    help="Which tasks to list.",
)
@click.option("--limit", type=click.IntRange(1, 100), default=50, show_default=True, help="Tasks per page.")
@click.option("--cursor", help="Start at this page (a nextCursor of an earlier answer).")
@click.option("--all", "all_pages", is_flag=True, help="Follow nextCursor through every page.")
@click.option("--tag", help="Only tasks published with this tag.")
@click.option("--type", "task_type", help="Only tasks of this type.")
@json_flag
@pass_options
def list_tasks(
    options: Options,
    status: Any,
    limit: int,
    cursor: str | None,
    all_pages: bool,
    tag: str | None,
    task_type: str | None,
) -> None:
    """List the FAILED, RETRYING or CANCELLED tasks, most recently updated first."""
    status = status.upper()
    tasks: list[dict[str, Any]] = []
    spinner = stderr.status(f"listing {status} tasks") if all_pages and stderr.is_terminal else nullcontext()
    with spinner:
        while True:
            page = call(
                options,
                f"list {status}",
                partial(options.client.list, status, type=task_type, tag=tag, limit=limit, cursor=cursor),
            )
            tasks.extend(summary.raw for summary in page.tasks)
            cursor = page.next_cursor
            if not (all_pages and cursor):
                break
    if options.json:
        emit_json({"tasks": tasks, "nextCursor": cursor})
        return
    screen(options, render.task_list(tasks, status), soft_wrap=True)
    if cursor:
        click.echo(f"more: taskctl list --status {status} --limit {limit} --cursor {render.shown(cursor)}", err=True)


@cli.command()
@json_flag
@pass_options
def stats(options: Options) -> None:
    """Counts per status and the queues' depths (GET /stats)."""
    answer = call(options, "stats", options.client.stats).raw
    if options.json:
        emit_json(answer)
    else:
        screen(options, render.stats(answer))


@cli.command()
@click.option("--cursor", help="Go on from this page (the `next` of an earlier answer).")
@json_flag
@pass_options
def stuck(options: Options, cursor: str | None) -> None:
    """PENDING tasks past their dispatch bound and PROCESSING ones past their lease (GET /stuck)."""
    answer = call(options, "stuck", lambda: options.client.stuck(cursor=cursor)).raw
    if options.json:
        emit_json(answer)
        return
    screen(options, render.stuck(answer))
    if answer.get("next"):
        click.echo(f"more: taskctl stuck --cursor {render.shown(answer['next'])}", err=True)


def _each(options: Options, verb: str, task_ids: Iterable[str]) -> None:
    """POST /tasks/{id}/{verb} for every id; every answer is reported, the worst decides the exit code."""
    ids = list(task_ids)
    worst = EXIT_OK
    results: list[dict[str, Any]] = []
    steps = ids
    if len(ids) > 1 and stderr.is_terminal and not options.json:
        from rich.progress import track

        steps = track(ids, description=f"{verb} {len(ids)} tasks", console=stderr, transient=True)
    act = options.client.retry if verb == "retry" else options.client.cancel
    for task_id in steps:
        try:
            view = act(task_id)
        except TaskprocError as exc:
            if isinstance(exc, Unreachable | NoCredentials | NoRegion):
                fail(str(exc), refusal_code(exc))
            results.append({"id": task_id, "httpStatus": exc.status, "answer": exc.body})
            error(f"{verb} {render.shown(task_id)}: {exc.status} {render.shown(str(exc))}")
            code = refusal_code(exc)
            worst = code if _SEVERITY[code] > _SEVERITY[worst] else worst
            continue
        status = _answered_status(verb, view)
        results.append({"id": task_id, "httpStatus": status, "answer": view.raw})
        if not options.json:
            click.echo(render.action_line(verb, task_id, status, view.raw))
    if options.json:
        emit_json({"results": results})
    sys.exit(worst)


def _answered_status(verb: str, view: TaskView) -> int:
    """The status the API answered an accepted action with: 202 for a retry (queued) and a cancel that
    waits for the running attempt, 200 for a cancel done at once (the contract of docs/api.md)."""
    if verb == "cancel" and view.status is not Status.PROCESSING:
        return 200
    return 202


@cli.command()
@click.argument("task_ids", nargs=-1)
@click.option("--all-failed", is_flag=True, help="Retry FAILED tasks in bulk (POST /retries).")
@click.option("--dry-run", is_flag=True, help="With --all-failed: only say which tasks would be retried.")
@click.option("--limit", type=click.IntRange(1, 1000), help="With --all-failed: at most this many (default 1000).")
@click.option("--type", "task_type", help="With --all-failed: only tasks of this type.")
@click.option(
    "--updated-since",
    "--since",
    "updated_since",
    help="With --all-failed: only tasks updated at or after this ISO time.",
)
@json_flag
@pass_options
def retry(
    options: Options,
    task_ids: tuple[str, ...],
    all_failed: bool,
    dry_run: bool,
    limit: int | None,
    task_type: str | None,
    updated_since: str | None,
) -> None:
    """Retry the tasks TASK_IDS (FAILED or CANCELLED), or every FAILED one with --all-failed."""
    bulk_only = {"--dry-run": dry_run, "--limit": limit, "--type": task_type, "--updated-since": updated_since}
    if all_failed and task_ids:
        raise click.UsageError("give task ids or --all-failed, not both")
    if not all_failed:
        if not task_ids:
            raise click.UsageError("give the ids of the tasks to retry, or --all-failed")
        given = [name for name, value in bulk_only.items() if value]
        if given:
            raise click.UsageError(f"{', '.join(given)} only go with --all-failed")
        _each(options, "retry", task_ids)
        return
    answer = call(
        options,
        "retry --all-failed",
        lambda: options.client.retry_all_failed(
            type=task_type or None, updated_since=updated_since or None, limit=limit or BULK_LIMIT, dry_run=dry_run
        ),
    ).raw
    if options.json:
        emit_json(answer)
    else:
        screen(options, render.bulk_retry(answer), soft_wrap=True)


@cli.command()
@click.argument("task_ids", nargs=-1, required=True)
@json_flag
@pass_options
def cancel(options: Options, task_ids: tuple[str, ...]) -> None:
    """Cancel the tasks TASK_IDS: PENDING or RETRYING ones at once, a PROCESSING one after its attempt."""
    _each(options, "cancel", task_ids)


@cli.command(name="types")
@click.argument("type_name", required=False)
@json_flag
@pass_options
def list_types(options: Options, type_name: str | None) -> None:
    """Every task type: paused or not, running/cap, options (GET /types); TYPE_NAME: one, with its pause history."""
    if type_name is None:
        entries = [entry.raw for entry in call(options, "types", options.client.types)]
        if options.json:
            emit_json({"types": entries})
        else:
            screen(options, render.types_table(entries))
        return
    entry = call(options, f"types {render.shown(type_name)}", lambda: options.client.task_type(type_name)).raw
    if options.json:
        emit_json(entry)
    else:
        screen(options, render.type_detail(entry))


# What each verb does, asked before it is done.
TYPE_QUESTIONS = {
    "pause": "Pause task type {name}? No attempt of it starts until it is resumed (consumers see the pause"
    " within 5 s); attempts already started finish, and publishing still accepts its tasks.",
    "resume": "Resume task type {name}? Its tasks start again (consumers see it within 5 s).",
}


def _change_type(options: Options, verb: str, type_name: str, yes: bool) -> None:
    """POST /types/{type}/{verb}, after the type was read (an unknown one fails before the question) and confirmed."""
    what = f"{verb} {render.shown(type_name)}"
    entry = call(options, what, lambda: options.client.task_type(type_name)).raw
    if not yes:
        state = "paused" if entry.get("paused") else "running"
        question = TYPE_QUESTIONS[verb].format(name=render.shown(type_name))
        if not click.confirm(f"{render.shown(type_name)} is {state}. {question}", default=False, err=True):
            fail(f"{what}: not confirmed; nothing was changed (--yes skips the question)", EXIT_REFUSED)
    change = options.client.pause_type if verb == "pause" else options.client.resume_type
    answer = call(options, what, lambda: change(type_name)).raw
    if options.json:
        emit_json(answer)
    else:
        click.echo(render.type_change_line(verb, answer))


@cli.command()
@click.argument("type_name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_flag
@pass_options
def pause(options: Options, type_name: str, yes: bool) -> None:
    """Pause the task type TYPE_NAME: none of its attempts start until it is resumed (asks first)."""
    _change_type(options, "pause", type_name, yes)


@cli.command()
@click.argument("type_name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_flag
@pass_options
def resume(options: Options, type_name: str, yes: bool) -> None:
    """Resume the paused task type TYPE_NAME (asks first)."""
    _change_type(options, "resume", type_name, yes)


@cli.command()
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8001,
    show_default=True,
    envvar="CONSOLE_PORT",
    help="The port on 127.0.0.1 (env CONSOLE_PORT).",
)
@pass_options
def console(options: Options, port: int) -> None:
    """Serve the operator console on http://127.0.0.1:PORT/, its API calls signed and forwarded to --url."""
    from taskctl.console import serve

    try:
        serve(options.client, port)
    except OSError as exc:
        fail(f"cannot serve the console on 127.0.0.1:{port}: {exc.strerror or exc}", EXIT_USAGE)


@cli.group()
def workflow() -> None:
    """Workflows: children that run as ordinary tasks, and one task that runs once they have all ended."""


@workflow.command(name="show")
@click.argument("workflow_id")
@json_flag
@pass_options
def show_workflow(options: Options, workflow_id: str) -> None:
    """Where the workflow WORKFLOW_ID stands: its status, its children's counts and ids, its then task."""
    found = call(options, f"workflow show {render.shown(workflow_id)}", lambda: options.client.workflow(workflow_id))
    if options.json:
        emit_json(found.raw)
    else:
        screen(options, render.workflow_detail(found.raw), soft_wrap=True)


# The schedules' commands live in their own module, which builds on the helpers above.
from taskctl.schedules import schedules  # noqa: E402

cli.add_command(schedules)


def main() -> None:
    cli(prog_name="taskctl")
