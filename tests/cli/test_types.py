"""taskctl types, pause and resume against a fake API over real HTTP: the table, the question, the answer in words."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner, Result
from rich.console import Console

from taskctl import cli as taskctl_cli
from taskctl.cli import EXIT_OK, EXIT_REFUSED
from taskctl.render import shown
from tests.cli.fake_api import FakeApi, serving, type_entry
from tests.cli.hostile import HOSTILE_IDS


def run(fake: FakeApi, *args: str, answer: str | None = None) -> Result:
    return CliRunner().invoke(taskctl_cli.cli, ["--url", fake.url, *args], input=answer, prog_name="taskctl")


@pytest.fixture(autouse=True)
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables to a pipe wide enough that no cell is folded."""
    monkeypatch.setattr(taskctl_cli, "stdout", Console(soft_wrap=False, width=400, color_system=None))


def rows(result: Result) -> dict[str, list[str]]:
    """The table's body rows by their first cell."""
    cells = [[cell.strip() for cell in line.split("│")[1:-1]] for line in result.stdout.splitlines() if "│" in line]
    return {row[0]: row[1:] for row in cells if row and row[0] not in ("type", "when")}


def test_types_shows_each_type_paused_or_not_running_over_cap_and_its_options(fake: FakeApi) -> None:
    fake.types["capped"] = type_entry("capped", {"concurrency": 5, "backoff": {"baseSeconds": 2}}, running=3)
    fake.types["checksum"].update(paused=True, pausedBy="arn:aws:iam::1:user/alice", pausedAt="2026-12-01T10:00:00Z")

    result = run(fake, "types")

    assert result.exit_code == EXIT_OK, result.output
    table = rows(result)
    assert table["capped"] == ["no", "3/5", 'concurrency=5 backoff={"baseSeconds": 2}']
    assert table["checksum"][0].startswith("paused by arn:aws:iam::1:user/alice at 2026-12-01 10:00:00")
    assert table["simulate"] == ["no", "-", "-"]
    assert fake.seen[-1].path == "/types"


def test_types_json_is_the_apis_answer(fake: FakeApi) -> None:
    result = run(fake, "types", "--json")

    assert result.exit_code == EXIT_OK
    assert [entry["name"] for entry in json.loads(result.stdout)["types"]] == ["checksum", "simulate"]


def test_pause_asks_first_and_a_no_changes_nothing_and_exits_1(fake: FakeApi) -> None:
    result = run(fake, "pause", "checksum", answer="n\n")

    assert result.exit_code == EXIT_REFUSED
    assert "checksum is running. Pause task type checksum?" in result.stderr
    assert "not confirmed; nothing was changed" in result.stderr
    assert fake.types["checksum"]["paused"] is False
    assert [(s.method, s.path) for s in fake.seen] == [("GET", "/types/checksum")]


def test_pause_confirmed_says_in_words_when_it_takes_effect(fake: FakeApi) -> None:
    result = run(fake, "pause", "checksum", answer="y\n")

    assert result.exit_code == EXIT_OK, result.output
    assert result.stdout.startswith("checksum: paused; consumers see it within 5 s")
    assert "publishing still accepts its tasks" in result.stdout
    assert fake.types["checksum"]["paused"] is True
    assert (fake.seen[-1].method, fake.seen[-1].path) == ("POST", "/types/checksum/pause")


def test_pause_of_a_paused_type_says_nothing_changed(fake: FakeApi) -> None:
    assert run(fake, "pause", "checksum", "--yes").exit_code == EXIT_OK

    result = run(fake, "pause", "checksum", "-y")

    assert result.exit_code == EXIT_OK
    assert result.stdout.startswith("checksum: already paused by anonymous at ")
    assert result.stdout.strip().endswith("nothing changed")


def test_resume_with_yes_asks_nothing_and_resumes(fake: FakeApi) -> None:
    run(fake, "pause", "checksum", "--yes")

    result = run(fake, "resume", "checksum", "--yes")

    assert result.exit_code == EXIT_OK, result.output
    assert result.stderr == ""
    said = "checksum: resumed; consumers see it within 5 s, and its held-back tasks start again"
    assert result.stdout.strip() == said
    again = run(fake, "resume", "checksum", "--yes")
    assert again.stdout.strip() == "checksum: was not paused; nothing changed"


def test_an_unknown_type_fails_before_the_question_in_one_line(fake: FakeApi) -> None:
    result = run(fake, "pause", "nope")

    assert result.exit_code == EXIT_REFUSED
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("taskctl: error: pause nope: 404 no task type is named 'nope' (type: one of checksum")
    assert [s.method for s in fake.seen] == ["GET"]


def test_one_type_shows_its_pauses_and_resumes(fake: FakeApi) -> None:
    run(fake, "pause", "checksum", "--yes")
    run(fake, "pause", "checksum", "--yes")
    run(fake, "resume", "checksum", "--yes")

    result = run(fake, "types", "checksum")

    assert result.exit_code == EXIT_OK, result.output
    history = [line for line in result.stdout.splitlines() if "│ anonymous" in line]
    assert [line.split("│")[2].strip() for line in history] == ["pause", "pause", "resume"]
    assert [line.split("│")[4].strip() for line in history] == ["yes", "no (it already was)", "yes"]
    assert fake.seen[-1].path == "/types/checksum"


@pytest.mark.parametrize("hostile", HOSTILE_IDS, ids=["terminal-escapes", "rich-markup"])
def test_hostile_principals_and_option_names_are_printed_as_their_text(no_aws: None, hostile: str) -> None:
    with serving(FakeApi()) as fake:
        fake.types[hostile] = type_entry(hostile, {hostile: hostile}, running=None)
        fake.types[hostile].update(paused=True, pausedBy=hostile, pausedAt="2026-12-01T10:00:00Z")
        fake.types["checksum"].update(paused=True, pausedBy=hostile)

        listed = run(fake, "types")
        answered = run(fake, "pause", "checksum", "--yes")

    for result in (listed, answered):
        assert result.exit_code == EXIT_OK, result.output
        output = result.stdout + result.stderr
        assert "\x1b" not in output and "\x07" not in output, repr(output)
    assert shown(hostile) in listed.stdout  # rich markup shown as itself, escapes written out
    assert shown(hostile) in answered.stdout
