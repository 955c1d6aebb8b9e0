"""`@task_type(..., schedules=[...])`: each declaration is checked at import, like the other options."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from chalicelib.registry import RegistrationError, Registry, task_type


class Report(BaseModel):
    pages: int


def declare(*schedules: Any, registry: Registry | None = None, name: str = "report") -> Registry:
    registry = registry or Registry()
    task_type(name, payload=Report, schedules=list(schedules), registry=registry)(lambda payload, context: None)
    return registry


def test_a_declared_schedule_takes_the_decorated_type_and_the_definition_defaults() -> None:
    registry = declare({"id": "nightly", "cron": "0 2 * * *", "payload": {"pages": 3}})

    task = registry.get("report")
    assert task is not None
    (schedule,) = task.schedules
    assert (schedule.type, schedule.timezone, schedule.overlap) == ("report", "UTC", "allow")


@pytest.mark.parametrize(
    ("entry", "rule"),
    [
        ({"id": "n", "cron": "0 2 * *", "payload": {"pages": 1}}, "schedules[0]: cron must have five fields"),
        ({"id": "n", "rate": "1 hour", "payload": {"pages": "many"}}, "schedules[0]: payload.pages"),
        ({"id": "n", "payload": {"pages": 1}}, "schedules[0]: cron give exactly one of cron and rate"),
        ({"id": "n", "type": "other", "rate": "1 hour", "payload": {}}, "leave out type"),
        ({"id": "n", "rate": "1 hour", "payload": {"pages": 1}, "timezone": "Nowhere"}, "timezone must be an IANA"),
        ("0 2 * * *", "each schedule is a dict"),
    ],
)
def test_a_declaration_that_breaks_a_rule_fails_at_import_naming_the_type_entry_and_field(
    entry: Any, rule: str
) -> None:
    with pytest.raises(RegistrationError) as caught:
        declare(entry)

    assert str(caught.value).startswith("task type 'report': ")
    assert rule in str(caught.value)


def test_two_types_may_not_declare_the_same_schedule_id() -> None:
    registry = declare({"id": "nightly", "rate": "1 day", "payload": {"pages": 1}})

    with pytest.raises(RegistrationError, match="schedule id 'nightly' is declared twice"):
        declare({"id": "nightly", "rate": "1 day", "payload": {"pages": 1}}, registry=registry, name="other")
