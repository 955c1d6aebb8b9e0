"""`taskctl schedules ...` against the fake API: each verb's call, its words, its exit code, hostile values."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner, Result
from rich.console import Console

from taskctl import cli as taskctl_cli
from taskctl.cli import EXIT_OK, EXIT_REFUSED, EXIT_USAGE
from taskctl.render import shown
from tests.cli.fake_api import FakeApi
from tests.cli.hostile import HOSTILE_IDS


@pytest.fixture(autouse=True)
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables as wide as they need, so that each schedule is one line."""
    monkeypatch.setattr(taskctl_cli, "stdout", Console(soft_wrap=False, width=400))


def run(fake: FakeApi, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(taskctl_cli.cli, ["--url", fake.url, "schedules", *args], input=input)


def test_list_shows_the_next_firing_in_the_schedules_zone_and_in_utc(fake: FakeApi) -> None:
    fake.add_schedule(
        "berlin-9", cron="0 9 * * MON-FRI", timezone="Europe/Berlin", nextFirings=["2026-11-26T08:00:00Z"]
    )
    fake.add_schedule("every-15", cron=None, rate="15 minutes", paused=True)

    result = run(fake, "list")

    assert result.exit_code == EXIT_OK, result.output
    [berlin] = [line for line in result.stdout.splitlines() if "berlin-9" in line]
    assert "2026-11-26 09:00:00 CET" in berlin and "2026-11-26 08:00:00" in berlin
    assert "cron 0 9 * * MON-FRI" in berlin
    [rate] = [line for line in result.stdout.splitlines() if "every-15" in line]
    assert "every 15 minutes" in rate and "paused" in rate
    assert fake.seen[-1].path == "/schedules?limit=100"


def test_show_lists_the_next_five_firings_and_the_last_one(fake: FakeApi) -> None:
    fake.add_schedule(
        "hourly", lastFiring={"at": "2026-11-25T12:00:00Z", "taskId": "hourly@2026-11-25T12:00:00Z", "status": "FAILED"}
    )

    result = run(fake, "show", "hourly")

    assert result.exit_code == EXIT_OK, result.output
    assert sum("UTC" in line and ":00:00" in line for line in result.stdout.splitlines()) >= 5
    assert "hourly@2026-11-25T12:00:00Z FAILED" in result.stdout
    assert "0 fired, 0 skipped, 0 missed, 0 refused, 0 caught up" in result.stdout


def test_show_of_an_unknown_schedule_exits_1_in_one_line(fake: FakeApi) -> None:
    result = run(fake, "show", "ghost")

    assert result.exit_code == EXIT_REFUSED
    assert result.stderr.strip() == "taskctl: error: schedules show ghost: 404 no schedule with id 'ghost'"


def test_create_sends_the_definition_and_says_when_it_fires_next(fake: FakeApi) -> None:
    result = run(
        fake,
        "create",
        "nightly",
        "--type",
        "checksum",
        "--payload",
        '{"text": "x"}',
        "--cron",
        "0 2 * * *",
        "--timezone",
        "Europe/Berlin",
        "--overlap",
        "skip",
        "--catchup-window",
        "600",
    )

    assert result.exit_code == EXIT_OK, result.output
    assert fake.seen[-1].body == {
        "id": "nightly",
        "type": "checksum",
        "payload": {"text": "x"},
        "cron": "0 2 * * *",
        "timezone": "Europe/Berlin",
        "overlap": "skip",
        "catchupWindowSeconds": 600,
    }
    assert result.stdout.startswith("nightly: created; next firing 2026-11-25T13:00:00Z")


@pytest.mark.parametrize(
    "args",
    [
        ["create", "s", "--type", "checksum"],
        ["create", "s", "--type", "checksum", "--cron", "* * * * *", "--rate", "1 minute"],
    ],
)
def test_create_wants_exactly_one_of_cron_and_rate_before_any_call(fake: FakeApi, args: list[str]) -> None:
    result = run(fake, *args)

    assert result.exit_code == EXIT_USAGE
    assert fake.seen == []


def test_create_of_a_refused_definition_names_the_field(fake: FakeApi) -> None:
    result = run(fake, "create", "s", "--type", "nosuchtype", "--rate", "1 minute")

    assert result.exit_code == EXIT_REFUSED
    assert "type: must be one of checksum, simulate" in result.stderr


def test_pause_resume_and_trigger_say_what_happened(fake: FakeApi) -> None:
    fake.add_schedule("hourly")

    paused = run(fake, "pause", "hourly")
    resumed = run(fake, "resume", "hourly")
    fired = run(fake, "trigger", "hourly", "--json")

    assert paused.stdout.strip() == "hourly: paused; it fires nothing until it is resumed"
    assert resumed.stdout.startswith("hourly: resumed; next firing 2026-11-25 13:00:00 UTC")
    task = json.loads(fired.stdout)
    assert task["id"].startswith("hourly@") and task["id"].endswith(".manual")
    assert [(s.method, s.path) for s in fake.seen] == [
        ("POST", "/schedules/hourly/pause"),
        ("POST", "/schedules/hourly/resume"),
        ("POST", "/schedules/hourly/trigger"),
    ]


def test_delete_asks_first_and_a_no_deletes_nothing(fake: FakeApi) -> None:
    fake.add_schedule("hourly")

    declined = run(fake, "delete", "hourly", input="n\n")
    confirmed = run(fake, "delete", "hourly", input="y\n")

    assert declined.exit_code == EXIT_REFUSED and "nothing was deleted" in declined.stderr
    assert confirmed.exit_code == EXIT_OK
    assert confirmed.stdout.strip().endswith("hourly: deleted; the tasks it fired stay")
    assert [(s.method, s.path) for s in fake.seen] == [("DELETE", "/schedules/hourly")]


@pytest.mark.parametrize("hostile", HOSTILE_IDS, ids=["terminal-escapes", "rich-markup"])
@pytest.mark.parametrize("command", [["list"], ["show", "{id}"], ["trigger", "{id}"], ["pause", "{id}"]])
def test_hostile_schedule_values_are_shown_as_their_escaped_text(
    fake: FakeApi, hostile: str, command: list[str]
) -> None:
    fake.add_schedule(hostile, type=hostile, timezone=hostile, cron=hostile, payload={hostile: hostile})

    result = run(fake, *(part.replace("{id}", hostile) for part in command))

    assert result.exit_code == EXIT_OK, result.output
    output = result.stdout + result.stderr
    assert "\x1b" not in output and "\x07" not in output
    assert shown(hostile) in output
