"""taskctl laid out at 80 and at 160 columns: ids whole on one line, long errors cut in lists and whole in
`show`, every time with its zone; and the API's URL from TASKPROC_URL, else PORT, else 8000."""

from __future__ import annotations

import pytest
from click.testing import CliRunner, Result

from taskctl.cli import EXIT_OK, EXIT_USAGE, cli
from taskctl.client import default_url
from tests.cli.fake_api import FakeApi

UUID_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"
# Longer than 80 columns: no layout can give it a cell, so it must get a line of its own.
LONG_ID = "orders/2026-11-25/customer-4711/invoice-run/" + "x" * 60
# Too long for 80 columns beside the other facts, short enough for 160.
LONG_ERROR = "simulated failure (failureChance 1): the service answered 503"


def run(*args: str, columns: int | None = None, env: dict[str, str] | None = None) -> Result:
    environment = dict(env or {})
    if columns is not None:
        environment["COLUMNS"] = str(columns)
    return CliRunner(env=environment).invoke(cli, list(args), prog_name="taskctl")


@pytest.fixture
def failures(fake: FakeApi) -> FakeApi:
    fake.add("t-1", "FAILED", last_error="boom")
    fake.add(UUID_ID, "FAILED", last_error=LONG_ERROR)
    return fake


def lines_holding(text: str, value: str) -> list[str]:
    return [line for line in text.splitlines() if value in line]


@pytest.mark.parametrize("columns", [80, 160])
def test_list_prints_every_id_whole_on_one_line(failures: FakeApi, columns: int) -> None:
    result = run("--url", failures.url, "list", columns=columns)

    assert result.exit_code == EXIT_OK, result.output
    for task_id in ("t-1", UUID_ID):
        assert len(lines_holding(result.stdout, task_id)) == 1, result.stdout
    assert all(len(line) <= columns for line in result.stdout.splitlines()), result.stdout


def test_list_at_80_columns_cuts_a_long_error_and_says_where_it_is_whole(failures: FakeApi) -> None:
    listed = run("--url", failures.url, "list", columns=80)
    shown = run("--url", failures.url, "show", UUID_ID, columns=80)

    assert listed.exit_code == EXIT_OK and shown.exit_code == EXIT_OK, listed.output + shown.output
    assert LONG_ERROR not in " ".join(listed.stdout.split())
    [cut] = lines_holding(listed.stdout, LONG_ERROR[:20])
    assert cut.rstrip().endswith("…")
    assert "taskctl show ID" in listed.stdout
    # show gives the whole error, wrapped at its words.
    assert LONG_ERROR in " ".join(shown.stdout.split())


def test_list_at_160_columns_is_one_table_row_per_task_with_the_whole_error(failures: FakeApi) -> None:
    result = run("--url", failures.url, "--width", "160", "list")

    assert result.exit_code == EXIT_OK, result.output
    [header] = lines_holding(result.stdout, "last error")
    assert header.split() == ["id", "type", "status", "attempts", "updated", "last", "error"]
    [row] = lines_holding(result.stdout, UUID_ID)
    assert LONG_ERROR in row and "FAILED" in row
    assert "taskctl show ID" not in result.stdout


def test_an_id_wider_than_the_screen_gets_a_line_of_its_own_and_its_facts_under_it(fake: FakeApi) -> None:
    fake.add(LONG_ID, "FAILED", last_error="boom")

    listed = run("--url", fake.url, "list", columns=80)
    shown = run("--url", fake.url, "show", LONG_ID, columns=80)

    assert listed.exit_code == EXIT_OK and shown.exit_code == EXIT_OK, listed.output + shown.output
    lines = listed.stdout.splitlines()
    [at] = [n for n, line in enumerate(lines) if line == LONG_ID]
    assert lines[at + 1].split()[:3] == ["simulate", "FAILED", "3/3"]
    [heading] = lines_holding(shown.stdout, LONG_ID)
    assert heading.split() == ["id", LONG_ID]


@pytest.mark.parametrize("columns", [80, 160])
def test_every_time_is_shown_with_its_zone(failures: FakeApi, columns: int) -> None:
    listed = run("--url", failures.url, "list", columns=columns)
    shown = run("--url", failures.url, "show", "t-1", columns=columns)

    # The fake's clock starts at 2026-11-25T12:00:00.000Z.
    for output in (listed.stdout, shown.stdout):
        stamps = lines_holding(output, "2026-11-25 12:00:00")
        assert stamps and all("2026-11-25 12:00:00 UTC" in line for line in stamps), output


def test_the_url_is_taskproc_url_else_the_offline_port_else_8000() -> None:
    assert default_url({"TASKPROC_URL": "https://abc.example/api", "PORT": "9000"}) == "https://abc.example/api"
    assert default_url({"PORT": "9000"}) == "http://127.0.0.1:9000"
    assert default_url({"PORT": ""}) == "http://127.0.0.1:8000"
    assert default_url({}) == "http://127.0.0.1:8000"


def test_taskctl_finds_the_api_at_port_without_a_url(fake: FakeApi) -> None:
    fake.add("t-1", "FAILED", last_error="boom")
    port = fake.url.rsplit(":", 1)[1]

    result = run("show", "t-1", env={"PORT": port})

    assert result.exit_code == EXIT_OK, result.output
    assert fake.seen[-1].path == "/tasks/t-1"


def test_a_port_that_is_not_a_number_is_a_usage_error_naming_port(fake: FakeApi) -> None:
    result = run("show", "t-1", env={"PORT": "eighty"})

    assert result.exit_code == EXIT_USAGE
    assert "PORT must be a port number" in result.stderr
    assert fake.seen == []


@pytest.mark.parametrize("columns", [80, 160])
def test_schedules_list_keeps_each_id_whole_and_says_each_zone(fake: FakeApi, columns: int) -> None:
    schedule_id = "nightly-invoice-run-for-every-customer-of-the-eu-region"
    fake.add_schedule(schedule_id, timezone="Europe/Berlin")

    result = run("--url", fake.url, "schedules", "list", columns=columns)

    assert result.exit_code == EXIT_OK, result.output
    assert len(lines_holding(result.stdout, schedule_id)) == 1, result.stdout
    # 13:00 UTC is 14:00 in Berlin in November.
    assert "2026-11-25 14:00:00 CET" in result.stdout and "2026-11-25 13:00:00 UTC" in result.stdout
    assert all(len(line) <= columns for line in result.stdout.splitlines()), result.stdout


def test_retry_all_failed_names_each_id_whole_at_80_columns(fake: FakeApi) -> None:
    fake.add(LONG_ID, "FAILED", last_error="boom")

    result = run("--url", fake.url, "retry", "--all-failed", "--dry-run", columns=80)

    assert result.exit_code == EXIT_OK, result.output
    assert f"{LONG_ID}: would be retried" in result.stdout.splitlines()


def test_an_id_of_wide_characters_is_measured_in_terminal_cells(fake: FakeApi) -> None:
    wide_id = "支払い支払い注文"  # 8 characters that fit the table at 80 columns, but 16 cells that do not
    fake.add(wide_id, "FAILED", last_error="boom")

    result = run("--url", fake.url, "list", columns=80)

    assert result.exit_code == EXIT_OK, result.output
    assert wide_id in result.stdout.splitlines()
