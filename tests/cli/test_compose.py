"""taskctl publish --then/--callback and taskctl workflow show, against the fake API over real HTTP."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner, Result
from taskproc_client import Client

from taskctl.cli import EXIT_OK, EXIT_REFUSED, EXIT_USAGE, cli
from tests.cli.fake_api import FakeApi


def run(url: str, *args: str) -> Result:
    return CliRunner(env={"COLUMNS": "80"}).invoke(cli, ["--url", url, *args], prog_name="taskctl")


def test_publish_sends_each_then_step_in_order_and_the_callback(fake: FakeApi) -> None:
    result = run(
        fake.url,
        "publish",
        "resize-42",
        "--then",
        'simulate:{"bucket": "out", "path": "a:b"}',
        "--then",
        "checksum",
        "--callback",
        "http://127.0.0.1:9/hook",
    )

    assert result.exit_code == EXIT_OK, result.output
    assert fake.seen[-1].body == {
        "id": "resize-42",
        "type": "simulate",
        "payload": {},
        "then": [{"type": "simulate", "payload": {"bucket": "out", "path": "a:b"}}, {"type": "checksum"}],
        "callback": {"url": "http://127.0.0.1:9/hook"},
    }
    assert "the first is published as resize-42/then/1" in result.stdout
    assert "POSTed to http://127.0.0.1:9/hook" in result.stdout


@pytest.mark.parametrize("step", ["checksum:{not json", "checksum:{} and more", ':{"a": 1}', ""])
def test_a_then_step_that_is_not_type_or_type_json_is_a_usage_error_before_calling(fake: FakeApi, step: str) -> None:
    result = run(fake.url, "publish", "t-1", "--then", step)

    assert result.exit_code == EXIT_USAGE
    assert "--then" in result.stderr
    assert fake.seen == []


def test_show_lists_the_chain_steps_and_the_callback_task(fake: FakeApi) -> None:
    run(fake.url, "publish", "t-1", "--then", "checksum", "--callback", "http://127.0.0.1:9/hook")

    result = run(fake.url, "show", "t-1")

    assert result.exit_code == EXIT_OK, result.output
    [then] = [line for line in result.stdout.splitlines() if line.startswith("then")]
    assert then.split() == ["then", "t-1/then/1", "checksum", "waiting"]
    [callback] = [line for line in result.stdout.splitlines() if line.startswith("callback")]
    assert "http://127.0.0.1:9/hook" in callback and "t-1/callback" in callback


def test_workflow_show_prints_the_status_the_counts_then_and_every_child_whole(fake: FakeApi) -> None:
    long_child = "pages-7/" + "p" * 90  # wider than 80 columns: still one line
    with Client(fake.url) as client:
        client.publish_workflow(
            [{"payload": {}}, {"id": long_child, "payload": {}}], {"type": "checksum"}, id="pages-7"
        )
    fake.finish("pages-7/1", "COMPLETED")

    result = run(fake.url, "workflow", "show", "pages-7")

    assert result.exit_code == EXIT_OK, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["id", "pages-7"]
    assert "RUNNING" in lines[1]
    assert "1 COMPLETED, 1 PENDING" in result.stdout
    [then] = [line for line in lines if line.startswith("then")]
    assert then.split() == ["then", "pages-7/then", "WAITING"]
    assert lines[-2:] == ["pages-7/1", long_child]


def test_workflow_show_with_json_prints_the_apis_answer(fake: FakeApi) -> None:
    with Client(fake.url) as client:
        client.publish_workflow([{"payload": {}}], {"type": "checksum"}, id="w-1")

    result = run(fake.url, "workflow", "show", "w-1", "--json")

    assert result.exit_code == EXIT_OK, result.output
    assert json.loads(result.stdout) == {
        "id": "w-1",
        "status": "RUNNING",
        "counts": {"PENDING": 1},
        "children": ["w-1/1"],
        "then": {"id": "w-1/then", "status": "WAITING"},
    }


def test_workflow_show_of_an_unknown_id_exits_1_in_one_line(fake: FakeApi) -> None:
    result = run(fake.url, "workflow", "show", "nope")

    assert result.exit_code == EXIT_REFUSED
    assert result.stderr.count("\n") == 1 and "404" in result.stderr
