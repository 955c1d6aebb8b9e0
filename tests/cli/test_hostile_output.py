"""taskctl shows hostile values from the API as their exact text: no terminal escapes, no rich markup.

Every command runs twice: once printing to a pipe (no escape sequence may appear at all)
and once to a colour terminal (only taskctl's own colour codes may appear: no title,
hyperlink or screen-clearing sequence). The values are ids, errors, payloads, principals
and the figures of /stats, each holding the ids of tests/cli/hostile.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner, Result
from rich.console import Console

from taskctl import cli as taskctl_cli
from taskctl.cli import EXIT_OK, EXIT_REFUSED
from taskctl.render import shown
from tests.cli.fake_api import FakeApi, serving
from tests.cli.hostile import HOSTILE_IDS, RICH_MARKUP, TERMINAL_ESCAPES

# Only Select Graphic Rendition (colours, bold) may reach a terminal: `ESC [ ... m`.
OWN_COLOURS = re.compile(r"\x1b\[[0-9;]*m")


class HostileStats(FakeApi):
    """A fake whose /stats names a status, a source and a queue after the hostile value."""

    hostile: str = ""

    def _stats(self) -> dict[str, Any]:
        answer = super()._stats()
        answer["counts"][self.hostile] = 1
        answer["sources"][f"counts.{self.hostile}"] = {"source": self.hostile, "exact": True}
        answer["queues"][self.hostile] = {"visible": 1, "inFlight": 0, "delayed": 0, "oldestAgeSeconds": None}
        return answer


@pytest.fixture(params=HOSTILE_IDS, ids=["terminal-escapes", "rich-markup"])
def hostile(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def api(no_aws: None, hostile: str) -> Iterator[HostileStats]:
    fake = HostileStats()
    fake.hostile = hostile
    with serving(fake) as served:
        task = served.add(hostile, "FAILED", last_error=hostile)
        task["payload"] = {hostile: hostile}
        task["history"].append({"kind": "retry", "at": task["updatedAt"], "by": hostile, "fromStatus": "CANCELLED"})
        served.add(hostile + "-waiting", "RETRYING", last_error=hostile, attempts=1)
        served.add(hostile + "-done", "COMPLETED")
        yield served


@pytest.fixture(params=["pipe", "terminal"])
def screen(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Where taskctl's tables go: a pipe, or a colour terminal wide enough that no cell is folded."""
    terminal = request.param == "terminal"
    console = Console(
        soft_wrap=False, width=1000, force_terminal=terminal, color_system="truecolor" if terminal else None
    )
    monkeypatch.setattr(taskctl_cli, "stdout", console)
    return str(request.param)


def run(fake: FakeApi, *args: str) -> Result:
    return CliRunner().invoke(taskctl_cli.cli, ["--url", fake.url, *args], prog_name="taskctl")


def assert_safe(result: Result, screen: str) -> str:
    """The whole output, checked to hold no sequence but taskctl's own colours."""
    output = result.stdout + result.stderr
    left = OWN_COLOURS.sub("", output) if screen == "terminal" else output
    assert "\x1b" not in left and "\x07" not in left and "\x9b" not in left, repr(output)
    return left


@pytest.mark.parametrize(
    "command",
    [
        ["list"],
        ["list", "--status", "RETRYING"],
        ["show", "{id}"],
        ["retry", "{id}"],
        ["cancel", "{id}-waiting"],
        ["retry", "--all-failed", "--dry-run"],
        ["publish", "{id}-new"],
    ],
    ids=lambda command: " ".join(command).replace("{id}", "ID"),
)
def test_commands_show_hostile_ids_as_their_escaped_text(
    api: FakeApi, hostile: str, screen: str, command: list[str]
) -> None:
    result = run(api, *(part.replace("{id}", hostile) for part in command))

    assert result.exit_code == EXIT_OK, result.output
    assert shown(hostile) in assert_safe(result, screen)


def test_show_escapes_the_payload_and_the_principal(api: FakeApi, hostile: str, screen: str) -> None:
    result = run(api, "show", hostile)

    text = assert_safe(result, screen)
    assert result.exit_code == EXIT_OK, result.output
    assert f"by {shown(hostile)}" not in text  # the principal has a column of its own
    assert text.count(shown(hostile)) >= 3  # id, last error, principal
    assert json.dumps({hostile: hostile}, ensure_ascii=hostile != RICH_MARKUP) in text  # JSON's escapes


def test_stats_escapes_what_the_api_names(api: FakeApi, hostile: str, screen: str) -> None:
    result = run(api, "stats")

    text = assert_safe(result, screen)
    assert result.exit_code == EXIT_OK, result.output
    assert text.count(shown(hostile)) == 3  # a status, its source and a queue


@pytest.mark.parametrize("verb", ["retry", "cancel"])
def test_refusals_naming_a_hostile_id_are_one_escaped_line(api: FakeApi, hostile: str, screen: str, verb: str) -> None:
    result = run(api, verb, hostile + "-done")

    text = assert_safe(result, screen)
    assert result.exit_code == EXIT_REFUSED
    assert len(result.stderr.splitlines()) == 1
    assert text.count(shown(hostile + "-done")) == 2  # taskctl's words and the API's message


@pytest.mark.parametrize("hostile", [RICH_MARKUP])
def test_markup_in_an_id_is_shown_not_obeyed(api: FakeApi, hostile: str, screen: str) -> None:
    text = assert_safe(run(api, "list"), screen)

    assert RICH_MARKUP in text
    assert "\x1b]8;" not in text  # no hyperlink


@pytest.mark.parametrize("hostile", [TERMINAL_ESCAPES])
def test_terminal_escapes_in_an_id_are_shown_as_python_writes_them(api: FakeApi, hostile: str, screen: str) -> None:
    text = assert_safe(run(api, "list"), screen)

    assert r"\x1b]0;PWNED\x07\x1b[2J" in text


@pytest.mark.parametrize("command", [["list"], ["show", "{id}"], ["stats"], ["retry", "{id}"], ["cancel", "{id}-done"]])
def test_json_output_escapes_every_control_character_and_reads_back_exactly(
    api: FakeApi, hostile: str, command: list[str]
) -> None:
    result = run(api, "--json", *(part.replace("{id}", hostile) for part in command))

    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert any(hostile in text for text in strings(json.loads(result.stdout)))


def strings(value: Any) -> Iterator[str]:
    """Every string in a JSON document, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)
