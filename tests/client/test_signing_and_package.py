"""Signing of the operator calls, the package's typing, its independence of the server's code, and its
views against the server's models."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from botocore.credentials import Credentials
from pydantic import BaseModel
from taskproc_client import Client, NoCredentials, models
from taskproc_client.signing import is_operator_route

from chalicelib.operate import views as operator_views
from chalicelib.publish import answers as publish_answers
from chalicelib.schedules import record as schedule_record
from chalicelib.schedules import views as schedule_views
from chalicelib.tasks import view as task_view
from tests.cli.conftest import TEST_CREDENTIALS
from tests.cli.fake_api import FakeApi
from tests.e2e.stack import ROOT

CLIENT = ROOT / "client"


def test_operator_calls_are_signed_and_producer_calls_carry_the_api_key(
    guarded_fake: FakeApi, aws_identity: Credentials
) -> None:
    guarded_fake.add_schedule("hourly")
    client = Client(guarded_fake.url, api_key="stage-key", sign=True)

    client.publish("checksum", {"text": "x"}, id="t-1")
    client.schedule("hourly")
    client.stats()

    publish, schedule, stats = guarded_fake.seen
    assert publish.headers["x-api-key"] == "stage-key"
    for signed in (schedule, stats):
        assert signed.headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={TEST_CREDENTIALS.access_key}/")


def test_without_credentials_an_operator_call_fails_before_sending_and_a_publish_goes_unsigned(
    guarded_fake: FakeApi,
) -> None:
    client = Client(guarded_fake.url, api_key="stage-key", sign=True)

    with pytest.raises(NoCredentials, match="operator route"):
        client.pause_schedule("hourly")
    client.publish("checksum", {"text": "x"}, id="t-1")

    assert [seen.path for seen in guarded_fake.seen] == ["/publish"]
    assert "authorization" not in guarded_fake.seen[0].headers


def test_the_url_and_key_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKPROC_URL", "https://abc123.execute-api.eu-west-1.amazonaws.com/api/")
    monkeypatch.setenv("TASKPROC_API_KEY", "k-1")

    client = Client()

    assert (client.url, client.api_key, client.sign) == (
        "https://abc123.execute-api.eu-west-1.amazonaws.com/api",
        "k-1",
        True,
    )
    monkeypatch.delenv("TASKPROC_URL")
    with pytest.raises(ValueError, match="TASKPROC_URL"):
        Client()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/schedules"),
        ("POST", "/schedules"),
        ("GET", "/schedules/s"),
        ("PUT", "/schedules/s"),
        ("DELETE", "/schedules/s"),
        ("POST", "/schedules/s/pause"),
        ("POST", "/schedules/s/resume"),
        ("POST", "/schedules/s/trigger"),
        ("POST", "/schedules/s/backfill"),
    ],
)
def test_the_schedules_routes_are_operator_routes(method: str, path: str) -> None:
    assert is_operator_route(method, path)


def test_the_package_passes_mypy_strict() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "taskproc_client"],
        cwd=CLIENT,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert (CLIENT / "taskproc_client" / "py.typed").exists()


def test_the_package_imports_nothing_of_the_server_nor_botocore_until_it_signs(tmp_path: os.PathLike[str]) -> None:
    probe = (
        "import sys, taskproc_client\n"
        "c = taskproc_client.Client('http://127.0.0.1:9')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'chalicelib', 'app', 'botocore', 'boto3', 'local'}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(CLIENT)},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("mine", "theirs"),
    [
        (models.TaskView, task_view.TaskView),
        (models.TaskSummary, operator_views.TaskSummary),
        (models.TaskPage, operator_views.TaskPage),
        (models.PublishAnswer, publish_answers.PublishAccepted),
        (models.Stats, operator_views.Stats),
        (models.Throughput, operator_views.Throughput),
        (models.SeriesWindow, operator_views.SeriesWindow),
        (models.Series, operator_views.Series),
        (models.Latency, operator_views.Latency),
        (models.Percentiles, operator_views.Percentiles),
        (models.StuckPage, operator_views.StuckPage),
        (models.StuckTask, operator_views.StuckTask),
        (models.QueueDepth, operator_views.QueueDepth),
        (models.BulkRetry, operator_views.BulkRetryResult),
        (models.TaskType, operator_views.TypeDetail),
        (models.TaskType, operator_views.TypeChange),
        (models.HistoryEntry, task_view.AttemptView),
        (models.HistoryEntry, task_view.ActionView),
        (models.Schedule, schedule_views.ScheduleView),
        (models.ScheduleSummary, schedule_views.ScheduleSummary),
        (models.SchedulePage, schedule_views.SchedulePage),
        (models.LastFiring, schedule_views.LastFiring),
        (models.Backfill, schedule_views.BackfillAnswer),
        (models.BackfillFiring, schedule_views.BackfillFiring),
        (models.FiringCounts, schedule_record.Counts),
        (models.FiringError, schedule_record.FiringError),
        (models.FiringSkip, schedule_record.Skip),
        (models.ScheduleChange, schedule_record.Audit),
    ],
    ids=lambda model: model.__name__,
)
def test_every_field_of_the_servers_answers_has_its_place_in_the_clients_views(
    mine: type[BaseModel], theirs: type[BaseModel]
) -> None:
    read = {field.alias or name for name, field in mine.model_fields.items()}

    assert set(theirs.model_fields) - read == set()
