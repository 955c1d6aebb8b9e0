"""A schedule's definition: its rules, and the instants it fires at, across both DST changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise, takewhile
from typing import Any

import pytest
from pydantic import BaseModel

from chalicelib.errors import ValidationFailed
from chalicelib.models import task_id_problem
from chalicelib.registry import Registry, TaskType
from chalicelib.schedules.definition import (
    DEFAULT_CATCHUP_SECONDS,
    MAX_SCHEDULE_ID_LENGTH,
    ScheduleDefinition,
    firing_task_id,
    rate_seconds,
    validated_definition,
)


class Report(BaseModel):
    pages: int


def registry() -> Registry:
    registry = Registry()
    registry.register(TaskType("report", lambda payload, context: None, payload=Report))
    return registry


def body(**fields: Any) -> dict[str, Any]:
    return {"id": "nightly", "type": "report", "payload": {"pages": 2}, "cron": "0 9 * * MON-FRI", **fields}


def refused(raw: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ValidationFailed) as caught:
        validated_definition(raw, registry())
    return {problem.field: problem.message for problem in caught.value.details}


def firings(definition: ScheduleDefinition, start: datetime, end: datetime) -> list[str]:
    return [
        at.strftime("%Y-%m-%dT%H:%M:%SZ") for at in takewhile(lambda at: at <= end, definition.firings_after(start))
    ]


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def test_a_definition_left_to_its_defaults_is_utc_allow_an_hour_of_catch_up_and_unpaused() -> None:
    definition = validated_definition(body(), registry())

    assert (definition.timezone, definition.overlap, definition.paused) == ("UTC", "allow", False)
    assert definition.catchupWindowSeconds == DEFAULT_CATCHUP_SECONDS == 3600


def test_both_cron_and_rate_are_refused_naming_both() -> None:
    assert set(refused(body(rate="1 hour"))) == {"cron", "rate"}


def test_neither_cron_nor_rate_is_refused_naming_both() -> None:
    raw = body()
    del raw["cron"]
    assert set(refused(raw)) == {"cron", "rate"}


@pytest.mark.parametrize("line", ["0 9 * *", "0 0 9 * * *", "61 * * * *", "0 9 * * FUNDAY", "0 0 30 2 *", ""])
def test_a_cron_line_cronsim_refuses_or_that_is_not_five_fields_is_refused(line: str) -> None:
    assert "cron" in refused(body(cron=line))


@pytest.mark.parametrize("text", ["15 minutes", "1 minute", "1 hour", "2 days", "365 days"])
def test_a_rate_is_a_number_and_a_unit(text: str) -> None:
    count, unit = text.split()
    assert rate_seconds(text) == int(count) * {"minute": 60, "hour": 3600, "day": 86400}[unit.rstrip("s")]


@pytest.mark.parametrize("text", ["15", "0 minutes", "30 seconds", "366 days", "1.5 hours", " 1 hour", "01 hour"])
def test_a_rate_outside_the_grammar_is_refused(text: str) -> None:
    raw = body(rate=text)
    del raw["cron"]
    assert "rate" in refused(raw)


def test_an_unknown_zone_is_refused_naming_timezone_and_the_rule() -> None:
    assert refused(body(timezone="Mars/Olympus_Mons")) == {
        "timezone": 'must be an IANA time zone name, e.g. "Europe/Berlin" or "UTC"'
    }
    assert set(refused(body(timezone="../../etc/passwd"))) == {"timezone"}


def test_an_unknown_type_is_refused_naming_type() -> None:
    assert set(refused(body(type="nope"))) == {"type"}


def test_a_payload_that_does_not_fit_the_type_is_refused_naming_the_payload_field() -> None:
    assert set(refused(body(payload={"pages": "many"}))) == {"payload.pages"}


def test_overlap_and_catch_up_keep_their_rules() -> None:
    assert set(refused(body(overlap="queue", catchupWindowSeconds=10))) == {"overlap", "catchupWindowSeconds"}


def test_an_id_leaves_room_for_the_longest_firing_task_id() -> None:
    longest = "s" * MAX_SCHEDULE_ID_LENGTH
    definition = validated_definition(body(id=longest), registry())

    manual = firing_task_id(definition.id, utc(2026, 1, 1), manual=True)
    assert task_id_problem(manual) is None
    assert "id" in refused(body(id=longest + "s"))
    assert "id" in refused(body(id="bad\u202eid"))
    # Four bytes a character: the bytes bind before the characters do, 28 bytes short of a task id's.
    fits = validated_definition(body(id="\U0001f600" * 185), registry())
    assert task_id_problem(firing_task_id(fits.id, utc(2026, 1, 1), manual=True)) is None
    assert "id" in refused(body(id="\U0001f600" * 186))


def test_the_next_five_firings_are_utc_and_ascending() -> None:
    definition = validated_definition(body(timezone="Europe/Berlin"), registry())

    # Friday 2026-11-27 10:00 UTC: Monday and the four days after, 09:00 Berlin is 08:00 UTC in winter.
    assert definition.next_firings(utc(2026, 11, 27, 10)) == [
        "2026-11-30T08:00:00Z",
        "2026-12-01T08:00:00Z",
        "2026-12-02T08:00:00Z",
        "2026-12-03T08:00:00Z",
        "2026-12-04T08:00:00Z",
    ]


def test_a_firing_in_the_spring_forward_gap_fires_once_at_the_first_minute_after_it() -> None:
    definition = validated_definition(body(cron="30 2 * * *", timezone="Europe/Berlin"), registry())

    # 2026-03-29: Berlin jumps from 02:00 CET to 03:00 CEST; 02:30 does not exist that night.
    assert firings(definition, utc(2026, 3, 27), utc(2026, 3, 31)) == [
        "2026-03-27T01:30:00Z",  # 02:30 CET
        "2026-03-28T01:30:00Z",
        "2026-03-29T01:00:00Z",  # 03:00 CEST, the first valid minute after the gap
        "2026-03-30T00:30:00Z",  # 02:30 CEST
    ]


def test_a_firing_in_the_fall_back_repeat_fires_once_at_its_first_occurrence() -> None:
    definition = validated_definition(body(cron="30 2 * * *", timezone="Europe/Berlin"), registry())

    # 2026-10-25: Berlin goes back from 03:00 CEST to 02:00 CET; 02:30 happens twice that night.
    assert firings(definition, utc(2026, 10, 24), utc(2026, 10, 26, 12)) == [
        "2026-10-24T00:30:00Z",
        "2026-10-25T00:30:00Z",  # 02:30 CEST only, not 02:30 CET (01:30 UTC)
        "2026-10-26T01:30:00Z",  # 02:30 CET
    ]


def test_a_periodic_line_fires_at_every_real_hour_through_both_changes() -> None:
    definition = validated_definition(body(cron="0 * * * *", timezone="Europe/Berlin"), registry())

    fall = firings(definition, utc(2026, 10, 24, 23, 30), utc(2026, 10, 25, 3))
    spring = firings(definition, utc(2026, 3, 28, 23, 30), utc(2026, 3, 29, 3))
    assert fall == ["2026-10-25T00:00:00Z", "2026-10-25T01:00:00Z", "2026-10-25T02:00:00Z", "2026-10-25T03:00:00Z"]
    assert spring == ["2026-03-29T00:00:00Z", "2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z", "2026-03-29T03:00:00Z"]


def test_a_rate_is_a_fixed_utc_interval_from_the_epoch_whatever_the_zone() -> None:
    raw = body(rate="90 minutes", timezone="Europe/Berlin")
    del raw["cron"]
    definition = validated_definition(raw, registry())

    across_the_change = firings(definition, utc(2026, 3, 29, 0), utc(2026, 3, 29, 4, 30))
    steps = {datetime.fromisoformat(b) - datetime.fromisoformat(a) for a, b in pairwise(across_the_change)}
    assert steps == {timedelta(minutes=90)}
    assert all(int(datetime.fromisoformat(at).timestamp()) % 5400 == 0 for at in across_the_change)


def test_a_week_of_a_weekday_cron_in_berlin_across_the_autumn_change() -> None:
    definition = validated_definition(body(cron="0 9 * * MON-FRI", timezone="Europe/Berlin"), registry())

    week = firings(definition, utc(2026, 10, 22), utc(2026, 10, 29, 23))
    assert week == [
        "2026-10-22T07:00:00Z",  # Thursday, CEST
        "2026-10-23T07:00:00Z",
        "2026-10-26T08:00:00Z",  # Monday, CET
        "2026-10-27T08:00:00Z",
        "2026-10-28T08:00:00Z",
        "2026-10-29T08:00:00Z",
    ]
