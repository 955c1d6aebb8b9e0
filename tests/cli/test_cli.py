"""taskctl's commands against a fake API over real HTTP: what they send, print and exit with."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from click.testing import CliRunner, Result

from taskctl.cli import EXIT_ACCESS, EXIT_OK, EXIT_REFUSED, EXIT_UNAVAILABLE, EXIT_USAGE, cli
from tests.cli.fake_api import FakeApi, latency, throughput_document
from tests.e2e.stack import ROOT, free_port


def run(url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--url", url, *args], prog_name="taskctl")


def one_error_line(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("taskctl: error: ")
    return lines[0]


def test_publish_sends_the_contract_body_and_says_what_happened(fake: FakeApi) -> None:
    result = run(fake.url, "publish", "t-1", "--type", "checksum", "--payload", '{"data": "abc"}', "--delay", "5")

    assert result.exit_code == EXIT_OK, result.output
    assert result.stdout.strip() == "t-1: published, PENDING"
    assert fake.seen[-1].body == {"id": "t-1", "payload": {"data": "abc"}, "type": "checksum", "delaySeconds": 5}


def test_publish_sends_its_tags_and_show_prints_them(fake: FakeApi) -> None:
    published = run(fake.url, "publish", "t-1", "--tag", "team:billing", "--tag", "run=7")
    shown = run(fake.url, "show", "t-1")

    assert published.exit_code == EXIT_OK, published.output
    assert fake.seen[0].body["tags"] == ["team:billing", "run=7"]
    [line] = [line for line in shown.stdout.splitlines() if line.startswith("tags")]
    assert line.split(None, 1)[1].strip() == "team:billing run=7"


def test_publish_of_a_known_id_says_it_was_not_queued_again(fake: FakeApi) -> None:
    fake.add("t-1", "COMPLETED")

    result = run(fake.url, "publish", "t-1", "--json")

    assert result.exit_code == EXIT_OK
    assert json.loads(result.stdout) == {"id": "t-1", "status": "COMPLETED", "duplicate": True}


@pytest.mark.parametrize("payload", ["{not json", "[1, 2]"])
def test_publish_refuses_a_payload_that_is_not_a_json_object_before_calling(fake: FakeApi, payload: str) -> None:
    result = run(fake.url, "publish", "t-1", "--payload", payload)

    assert result.exit_code == EXIT_USAGE
    assert "--payload" in result.stderr
    assert fake.seen == []


def test_show_prints_the_state_and_the_history(fake: FakeApi) -> None:
    fake.add("t-1", "FAILED", last_error="simulated failure", attempts=2)

    result = run(fake.url, "show", "t-1")

    assert result.exit_code == EXIT_OK, result.output
    assert "FAILED" in result.stdout
    assert "attempt 1" in result.stdout and "attempt 2" in result.stdout
    assert "simulated failure" in result.stdout


@pytest.mark.parametrize(
    ("progress", "shown"),
    [({"done": 3, "total": 12}, "3/12 (25%)"), ({"stage": "resize"}, '{"stage": "resize"}'), (None, "-")],
)
def test_show_prints_a_heartbeats_progress(fake: FakeApi, progress: Any, shown: str) -> None:
    fake.add("t-1", "PROCESSING", attempts=1)["progress"] = progress

    result = run(fake.url, "show", "t-1")

    assert result.exit_code == EXIT_OK, result.output
    [line] = [line for line in result.stdout.splitlines() if line.startswith("progress")]
    assert line.split(None, 1)[1].strip() == shown


def test_show_of_an_unknown_task_exits_1_with_one_line_naming_it(fake: FakeApi) -> None:
    result = run(fake.url, "show", "ghost")

    assert result.exit_code == EXIT_REFUSED
    assert "show ghost: 404" in one_error_line(result)
    assert result.stdout == ""


def test_show_encodes_the_id_as_one_path_segment(fake: FakeApi) -> None:
    fake.add("a/b c", "FAILED", last_error="x")

    result = run(fake.url, "show", "a/b c", "--json")

    assert result.exit_code == EXIT_OK, result.output
    assert json.loads(result.stdout)["id"] == "a/b c"
    assert fake.seen[-1].path == "/tasks/a%2Fb%20c"


def test_list_shows_the_failed_tasks_with_their_last_error(fake: FakeApi) -> None:
    fake.add("t-old", "FAILED", last_error="boom old")
    fake.add("t-new", "FAILED", last_error="boom new")
    fake.add("t-done", "COMPLETED")

    result = run(fake.url, "list", "--status", "failed", "--json")

    assert result.exit_code == EXIT_OK, result.output
    answer = json.loads(result.stdout)
    assert [t["id"] for t in answer["tasks"]] == ["t-new", "t-old"]
    assert [t["lastError"] for t in answer["tasks"]] == ["boom new", "boom old"]
    assert fake.seen[-1].path == "/tasks?status=FAILED&limit=50"


def test_list_all_follows_next_cursor_through_every_page(fake: FakeApi) -> None:
    for n in range(5):
        fake.add(f"t-{n}", "CANCELLED")

    result = run(fake.url, "list", "--status", "CANCELLED", "--limit", "2", "--all", "--json")

    assert result.exit_code == EXIT_OK, result.output
    answer = json.loads(result.stdout)
    assert sorted(t["id"] for t in answer["tasks"]) == [f"t-{n}" for n in range(5)]
    assert answer["nextCursor"] is None
    assert [s.path for s in fake.seen] == [
        "/tasks?status=CANCELLED&limit=2",
        "/tasks?status=CANCELLED&limit=2&cursor=fake-2",
        "/tasks?status=CANCELLED&limit=2&cursor=fake-4",
    ]


def test_list_of_one_page_tells_how_to_get_the_next(fake: FakeApi) -> None:
    for n in range(3):
        fake.add(f"t-{n}", "FAILED", last_error="e")

    result = run(fake.url, "list", "--limit", "2")

    assert result.exit_code == EXIT_OK
    assert "--cursor fake-2" in result.stderr
    assert "t-2" in result.stdout and "t-0" not in result.stdout


def test_list_refuses_a_status_that_cannot_be_listed(fake: FakeApi) -> None:
    result = run(fake.url, "list", "--status", "COMPLETED")

    assert result.exit_code == EXIT_USAGE
    assert fake.seen == []


def test_stats_prints_counts_and_queue_depths(fake: FakeApi) -> None:
    fake.add("t-1", "FAILED", last_error="e")
    fake.add("t-2", "FAILED", last_error="e")
    fake.add("t-3", "RETRYING", last_error="e")

    result = run(fake.url, "stats")

    assert result.exit_code == EXIT_OK, result.output
    rows = {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in result.stdout.splitlines()
        if line.count("│") >= 3
    }
    assert rows["FAILED"] == "2"
    assert rows["RETRYING"] == "1"
    assert rows["CANCELLED"] == "0"
    assert "tasks" in rows and "deadLetters" in rows
    assert rows["adopted"] == "2"
    assert rows["redispatched"] == "-"  # no datapoint


def test_stats_prints_a_null_count_as_a_dash_and_the_last_hour_per_type(fake: FakeApi) -> None:
    fake.unknown_counts = {"PROCESSING"}
    fake.throughput = throughput_document(
        {"checksum": {"completed": [3, 4], "failed": [1]}, "simulate": {"completed": [2], "retried": [5]}},
        {"checksum": latency(p95=812.4)},
    )

    result = run(fake.url, "stats")

    assert result.exit_code == EXIT_OK, result.output
    rows = {
        line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
        for line in result.stdout.splitlines()
        if line.count("│") >= 3
    }
    assert rows["PROCESSING"][0] == "-"
    assert rows["checksum"][:4] == ["7", "1", "0", "0"] and rows["checksum"][4] == "812 ms"
    assert rows["simulate"][:4] == ["2", "0", "5", "0"] and rows["simulate"][4] == "-"
    assert rows["all types"][:4] == ["9", "1", "5", "0"]


def test_stuck_lists_each_stuck_task_with_why_and_says_so_when_there_are_none(fake: FakeApi) -> None:
    empty = run(fake.url, "stuck")
    fake.add_stuck("held-1", "PROCESSING", "lease expired", "2026-11-25T12:00:00Z")

    listed = run(fake.url, "stuck")

    assert empty.exit_code == EXIT_OK and "no stuck tasks among" in empty.stdout
    assert listed.exit_code == EXIT_OK, listed.output
    assert "held-1" in listed.stdout and "lease expired" in listed.stdout and "2026-11-25 12:00:00 UTC" in listed.stdout


def test_retry_reports_every_id_and_exits_1_when_any_was_refused(fake: FakeApi) -> None:
    fake.add("failed", "FAILED", last_error="e")
    fake.add("done", "COMPLETED")

    result = run(fake.url, "retry", "failed", "done", "ghost")

    assert result.exit_code == EXIT_REFUSED
    assert result.stdout.strip() == "failed: retried (202), now PENDING"
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 2
    assert errors[0].startswith("taskctl: error: retry done: 409") and "COMPLETED" in errors[0]
    assert errors[1].startswith("taskctl: error: retry ghost: 404")
    assert fake.tasks["failed"]["status"] == "PENDING"


def test_retry_json_gives_each_id_its_http_status_and_answer(fake: FakeApi) -> None:
    fake.add("failed", "FAILED", last_error="e")

    result = run(fake.url, "retry", "failed", "ghost", "--json")

    assert result.exit_code == EXIT_REFUSED
    results = json.loads(result.stdout)["results"]
    assert [(r["id"], r["httpStatus"]) for r in results] == [("failed", 202), ("ghost", 404)]
    assert results[0]["answer"]["status"] == "PENDING"
    assert results[1]["answer"]["error"]["code"] == "not_found"


def test_retry_all_failed_dry_run_asks_the_bulk_route_and_retries_nothing(fake: FakeApi) -> None:
    fake.add("f-1", "FAILED", last_error="e")
    fake.add("f-2", "FAILED", last_error="e")

    result = run(fake.url, "retry", "--all-failed", "--dry-run", "--limit", "10", "--type", "simulate")

    assert result.exit_code == EXIT_OK, result.output
    assert "dry run: 2 FAILED task(s) match" in result.stdout
    assert fake.seen[-1].path == "/retries"
    assert fake.seen[-1].body == {"status": "FAILED", "limit": 10, "dryRun": True, "type": "simulate"}
    assert {t["status"] for t in fake.tasks.values()} == {"FAILED"}


def test_retry_all_failed_retries_them(fake: FakeApi) -> None:
    fake.add("f-1", "FAILED", last_error="e")

    result = run(fake.url, "retry", "--all-failed", "--since", "2026-11-25T12:00:00Z", "--json")

    assert result.exit_code == EXIT_OK
    assert json.loads(result.stdout)["retried"] == ["f-1"]
    assert fake.seen[-1].body == {
        "status": "FAILED",
        "limit": 1000,
        "dryRun": False,
        "updatedSince": "2026-11-25T12:00:00Z",
    }
    assert fake.tasks["f-1"]["status"] == "PENDING"


@pytest.mark.parametrize(
    "args",
    [
        ["retry"],
        ["retry", "t-1", "--all-failed"],
        ["retry", "t-1", "--dry-run"],
        ["retry", "--all-failed", "--limit", "1001"],
        ["cancel"],
    ],
)
def test_retry_and_cancel_misuse_is_a_usage_error_before_any_call(fake: FakeApi, args: list[str]) -> None:
    result = run(fake.url, *args)

    assert result.exit_code == EXIT_USAGE
    assert fake.seen == []


def test_cancel_of_retrying_processing_and_completed_tasks(fake: FakeApi) -> None:
    fake.add("waiting", "RETRYING", last_error="e", attempts=1)
    fake.add("running", "PROCESSING", attempts=1)
    fake.add("done", "COMPLETED")

    result = run(fake.url, "cancel", "waiting", "running", "done")

    assert result.exit_code == EXIT_REFUSED
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "waiting: cancelled (200), now CANCELLED"
    assert lines[1].startswith("running: cancel requested (202)")
    assert "cancel done: 409" in one_error_line(result)


def test_an_api_that_cannot_be_reached_exits_3_with_one_line() -> None:
    result = run(f"http://127.0.0.1:{free_port()}", "stats")

    assert result.exit_code == EXIT_UNAVAILABLE
    assert "cannot reach the API" in one_error_line(result)


def test_a_5xx_exits_3_and_a_403_exits_4(fake: FakeApi) -> None:
    fake.fail_with = 500
    assert run(fake.url, "stats").exit_code == EXIT_UNAVAILABLE
    fake.fail_with = 403
    result = run(fake.url, "stats")
    assert result.exit_code == EXIT_ACCESS
    assert "stats: 403" in one_error_line(result)


def test_errors_keep_to_one_line_with_json_too_and_print_the_api_answer(fake: FakeApi) -> None:
    result = run(fake.url, "show", "ghost", "--json")

    assert result.exit_code == EXIT_REFUSED
    assert json.loads(result.stdout)["error"]["code"] == "not_found"
    one_error_line(result)


def test_python_m_taskctl_runs_and_exits_with_the_documented_code(no_aws: None) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "taskctl", "--url", f"http://127.0.0.1:{free_port()}", "list"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )

    assert done.returncode == EXIT_UNAVAILABLE
    assert done.stderr.startswith("taskctl: error: cannot reach the API at http://127.0.0.1:")
    assert done.stderr.count("\n") == 1


def test_url_and_api_key_come_from_the_environment(fake: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    fake.add("t-1", "FAILED", last_error="e")
    monkeypatch.setenv("TASKPROC_URL", fake.url)
    monkeypatch.setenv("TASKPROC_API_KEY", "k-123")

    result = CliRunner().invoke(cli, ["show", "t-1"])

    assert result.exit_code == EXIT_OK, result.output
    assert fake.seen[-1].headers["x-api-key"] == "k-123"
    assert "authorization" not in fake.seen[-1].headers  # loopback: the offline stack wants no signature
