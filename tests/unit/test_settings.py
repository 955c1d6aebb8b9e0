from __future__ import annotations

import pytest

from chalicelib.errors import SettingsError
from chalicelib.settings import load_settings, wiring

NAMES = {
    "TASKS_TABLE": "tasks",
    "FLOW_TABLE": "flow",
    "SCHEDULES_TABLE": "schedules",
    "TASKS_QUEUE": "tasks",
    "DEAD_LETTER_QUEUE": "dead",
}


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        *NAMES,
        "MAX_ATTEMPTS",
        "BACKOFF_BASE_SECONDS",
        "BACKOFF_MAX_SECONDS",
        "LEASE_SECONDS",
        "DEFAULT_FAILURE_CHANCE",
        "REPORT_BATCH_ITEM_FAILURES",
    ):
        monkeypatch.delenv(name, raising=False)
    load_settings.cache_clear()


def set_names(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in NAMES.items():
        monkeypatch.setenv(name, value)


def test_defaults_follow_the_seeds(monkeypatch: pytest.MonkeyPatch) -> None:
    set_names(monkeypatch)
    settings = load_settings()
    assert (settings.MAX_ATTEMPTS, settings.BACKOFF_BASE_SECONDS, settings.BACKOFF_MAX_SECONDS) == (3, 60, 900)
    assert settings.DEFAULT_FAILURE_CHANCE == 0.3
    assert settings.REPORT_BATCH_ITEM_FAILURES is False


def test_a_missing_variable_is_named() -> None:
    with pytest.raises(SettingsError, match="TASKS_TABLE: Field required"):
        load_settings()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAX_ATTEMPTS", "0"),
        ("MAX_ATTEMPTS", "three"),
        ("DEFAULT_FAILURE_CHANCE", "1.5"),
        ("BACKOFF_BASE_SECONDS", "-1"),
        ("LEASE_SECONDS", "0"),
        ("REPORT_BATCH_ITEM_FAILURES", "perhaps"),
    ],
)
def test_a_bad_value_is_named(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    set_names(monkeypatch)
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=name):
        load_settings()


def test_a_cap_below_the_base_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    set_names(monkeypatch)
    monkeypatch.setenv("BACKOFF_BASE_SECONDS", "60")
    monkeypatch.setenv("BACKOFF_MAX_SECONDS", "30")
    with pytest.raises(SettingsError, match="BACKOFF_MAX_SECONDS must not be below"):
        load_settings()


def test_the_decorators_wiring_comes_from_the_stage_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKS_QUEUE", "q")
    monkeypatch.setenv("DEAD_LETTER_QUEUE", "d")
    monkeypatch.setenv("CONSUMER_MAX_CONCURRENCY", "7")
    monkeypatch.setenv("API_KEY_REQUIRED", "true")
    monkeypatch.setenv("HIGH_PRIORITY_QUEUE", "h")
    monkeypatch.setenv("HIGH_PRIORITY_MAX_CONCURRENCY", "3")
    monkeypatch.delenv("LOW_PRIORITY_QUEUE", raising=False)
    monkeypatch.delenv("LOW_PRIORITY_MAX_CONCURRENCY", raising=False)
    assert wiring() == wiring().__class__(
        tasks_queue="q",
        dead_letter_queue="d",
        max_concurrency=7,
        api_key_required=True,
        high_priority_queue="h",
        low_priority_queue="q-low",
        high_max_concurrency=3,
        low_max_concurrency=None,
    )


def test_each_priority_class_s_queue_is_named_after_the_task_queue_unless_the_stage_names_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_names(monkeypatch)
    monkeypatch.setenv("TASKS_QUEUE", "taskproc-x-tasks")
    monkeypatch.setenv("LOW_PRIORITY_QUEUE", "slow-lane")
    monkeypatch.delenv("HIGH_PRIORITY_QUEUE", raising=False)
    settings = load_settings()
    assert (settings.HIGH_PRIORITY_QUEUE, settings.LOW_PRIORITY_QUEUE) == ("taskproc-x-tasks-high", "slow-lane")


def test_write_routes_are_open_unless_the_stage_asks_for_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("API_KEY_REQUIRED", raising=False)
    assert wiring().api_key_required is False
