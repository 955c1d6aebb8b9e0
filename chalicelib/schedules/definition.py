"""A schedule's definition, and the instants it fires at.

Cron lines are parsed by cronsim, zones by zoneinfo; what neither says is decided here:

- A cron line has five fields (minute resolution: the ticker runs once a minute) and is read in
  the schedule's `timezone`. Its firings follow cronsim, which follows Debian cron at a DST change:
  a line whose minute and hour fields are both fixed (neither starts with `*`) fires at a local
  wall-clock time. If that time falls in a spring-forward gap (02:30 Europe/Berlin on the last
  Sunday of March) it fires once, at the first valid minute after the gap (03:00 CEST); if it
  falls in a fall-back repeat (02:30 on the last Sunday of October) it fires once, at the first
  occurrence (CEST). A line with `*` at the start of its minute or hour field is periodic: it
  fires at every real instant whose local time matches, so `0 * * * *` fires at 02:00 CEST and
  again at 02:00 CET on the fall-back night, and has no 02:00 on the spring-forward night.
- A rate is `<n> <unit>`, n a whole number from 1, unit `minute(s)`, `hour(s)` or `day(s)`, from
  1 minute to 365 days: a fixed interval in UTC from the Unix epoch (every multiple of the interval
  since 1970-01-01T00:00:00Z), unaffected by DST or by `timezone`, so the same definition always
  fires at the same instants.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import StrEnum
from itertools import islice
from typing import TYPE_CHECKING, Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from chalicelib.deferred import Model
from chalicelib.errors import FieldProblem, ValidationFailed
from chalicelib.models import (
    MAX_TASK_ID_BYTES,
    MAX_TASK_ID_LENGTH,
    TASK_ID_PATTERN,
    JsonObject,
    TaskTypeName,
    WholeNumber,
    task_id_problem,
)

if TYPE_CHECKING:
    from chalicelib.registry import Registry

# A firing's task id is `<id>@<YYYY-MM-DDTHH:MM:SSZ>`, a manual one's ends `.manual`: the schedule's
# id leaves room for both inside a task id's limits.
FIRING_SUFFIX_LENGTH = len("@2026-01-01T00:00:00Z.manual")
MAX_SCHEDULE_ID_LENGTH = MAX_TASK_ID_LENGTH - FIRING_SUFFIX_LENGTH
MAX_SCHEDULE_ID_BYTES = MAX_TASK_ID_BYTES - FIRING_SUFFIX_LENGTH
SCHEDULE_ID_RULE = (
    f"1 to {MAX_SCHEDULE_ID_LENGTH} characters and at most {MAX_SCHEDULE_ID_BYTES} bytes of UTF-8, without"
    " control characters or bidirectional formatting characters (a firing's task id adds 28 characters)"
)
DEFAULT_TIMEZONE = "UTC"
DEFAULT_CATCHUP_SECONDS = 3_600
# A window shorter than the ticker's period would miss firings that are merely a tick late.
MIN_CATCHUP_SECONDS = 60
MAX_CATCHUP_SECONDS = 7 * 86_400
MAX_CRON_LENGTH = 200
MAX_TIMEZONE_LENGTH = 64
UTC_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
NEXT_FIRINGS = 5

RATE_UNITS = {"minute": 60, "hour": 3_600, "day": 86_400}
MIN_RATE_SECONDS = 60
MAX_RATE_SECONDS = 365 * 86_400
RATE_RULE = (
    '"<n> <unit>": n a whole number from 1, unit minute(s), hour(s) or day(s), from 1 minute to 365 days,'
    ' e.g. "15 minutes"'
)
_rate = re.compile(r"^([1-9][0-9]{0,6}) (minute|hour|day)s?$")
CRON_RULE = 'five fields (minute hour day-of-month month day-of-week), e.g. "0 9 * * MON-FRI"'


class Overlap(StrEnum):
    """What a firing does while the previous firing's task has not ended."""

    SKIP = "skip"  # fire nothing; count the skip
    ALLOW = "allow"  # fire anyway
    BUFFER_ONE = "buffer_one"  # hold one firing, fire it when the previous task ends


def schedule_id_problem(value: str) -> str | None:
    """What keeps `value` from being a schedule id, or None when it is one."""
    if not 1 <= len(value) <= MAX_SCHEDULE_ID_LENGTH:
        return f"must have 1 to {MAX_SCHEDULE_ID_LENGTH} characters (a firing's task id adds 28)"
    problem = task_id_problem(value)
    if problem is not None:
        return problem
    size = len(value.encode("utf-8"))
    if size > MAX_SCHEDULE_ID_BYTES:
        return f"must be at most {MAX_SCHEDULE_ID_BYTES} bytes in UTF-8 (this one is {size})"
    return None


def rate_seconds(text: str) -> int:
    """The interval a rate names, in seconds.

    Raises:
        ValueError: it breaks RATE_RULE.
    """
    match = _rate.match(text)
    if match is None:
        raise ValueError(f"must be {RATE_RULE}")
    seconds = int(match.group(1)) * RATE_UNITS[match.group(2)]
    if not MIN_RATE_SECONDS <= seconds <= MAX_RATE_SECONDS:
        raise ValueError(f"must be {RATE_RULE}")
    return seconds


def _raising(problem_of: Any) -> Any:
    """An after-validator raising the problem `problem_of` finds, in its own words (no "Value error, ")."""

    def validate(value: str) -> str:
        problem = problem_of(value)
        if problem is not None:
            raise PydanticCustomError("schedule_rule", "{problem}", {"problem": problem})
        return value

    return AfterValidator(validate)


def _cron_problem(value: str) -> str | None:
    if len(value.split()) != 5:
        return f"must have {CRON_RULE}"
    try:
        next(CronSim(value, datetime.now(UTC)))
    except CronSimError as exc:
        return f"must have {CRON_RULE}: {exc}"
    except StopIteration:
        return "never fires in the next 50 years"
    return None


def _rate_problem(value: str) -> str | None:
    try:
        rate_seconds(value)
    except ValueError as exc:
        return str(exc)
    return None


def _timezone_problem(value: str) -> str | None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return 'must be an IANA time zone name, e.g. "Europe/Berlin" or "UTC"'
    return None


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


ScheduleId = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=MAX_SCHEDULE_ID_LENGTH),
    _raising(schedule_id_problem),
    Field(json_schema_extra={"pattern": TASK_ID_PATTERN}),
]
# A Literal rather than the enum: strict validation takes the JSON string, and its error names the values.
OverlapName = Literal["skip", "allow", "buffer_one"]
CronLine = Annotated[str, StringConstraints(strict=True, max_length=MAX_CRON_LENGTH), _raising(_cron_problem)]
RateText = Annotated[
    str,
    StringConstraints(strict=True, max_length=40),
    _raising(_rate_problem),
    Field(json_schema_extra={"pattern": _rate.pattern}),
]
TimezoneName = Annotated[
    str, StringConstraints(strict=True, min_length=1, max_length=MAX_TIMEZONE_LENGTH), _raising(_timezone_problem)
]


class ScheduleDefinition(Model):
    """The body of `POST /schedules` and `PUT /schedules/{id}`, and a code-declared schedule."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    id: ScheduleId = Field(description=f"The schedule's id: {SCHEDULE_ID_RULE}.")
    type: TaskTypeName = Field(description="The registered task type each firing publishes.")
    payload: JsonObject = Field(description="The payload of every firing's task, checked against the type's model.")
    # Null is taken as left out, so that a view read back as a PUT body is one.
    cron: CronLine | None = Field(
        default=None,
        description=f"A cron line of {CRON_RULE}, read in `timezone`. Exactly one of `cron` and `rate`.",
        json_schema_extra=_no_default,
    )
    rate: RateText | None = Field(
        default=None,
        description=f"A fixed interval in UTC from the Unix epoch, {RATE_RULE}. Exactly one of `cron` and `rate`.",
        json_schema_extra=_no_default,
    )
    timezone: TimezoneName = Field(
        default=DEFAULT_TIMEZONE, description="The IANA zone a cron line is read in (a rate ignores it)."
    )
    overlap: OverlapName = Field(
        default=Overlap.ALLOW.value,
        description="While the previous firing's task has not ended: `allow` fires anyway, `skip` fires nothing"
        " and counts the skip, `buffer_one` holds one firing and fires it when that task ends.",
    )
    catchupWindowSeconds: WholeNumber = Field(
        default=DEFAULT_CATCHUP_SECONDS,
        ge=MIN_CATCHUP_SECONDS,
        le=MAX_CATCHUP_SECONDS,
        description=f"Firings missed (an outage, a pause) fire late if they are at most this many seconds old"
        f" ({MIN_CATCHUP_SECONDS} to {MAX_CATCHUP_SECONDS:,}); older ones are skipped and counted as missed.",
    )
    paused: bool = Field(default=False, description="A paused schedule does not fire.")

    @model_validator(mode="after")
    def _cron_or_rate(self) -> ScheduleDefinition:
        given = [name for name in ("cron", "rate") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValidationError.from_exception_data(
                type(self).__name__,
                [
                    InitErrorDetails(
                        type=PydanticCustomError("cron_or_rate", "give exactly one of cron and rate"),
                        loc=(name,),
                        input=getattr(self, name),
                    )
                    for name in ("cron", "rate")
                ],
            )
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def document(self) -> dict[str, Any]:
        """The definition as JSON-able data, fields left at None out (what the store keeps)."""
        return self.model_dump(mode="json", exclude_none=True)

    def firings_after(self, after: datetime) -> Iterator[datetime]:
        """Every firing strictly after `after`, ascending, as UTC datetimes."""
        if self.rate is not None:
            return _rate_firings(rate_seconds(self.rate), after)
        assert self.cron is not None
        return _cron_firings(self.cron, self.zone, after)

    def next_firings(self, now: datetime, count: int = NEXT_FIRINGS) -> list[str]:
        """The next `count` firings after `now`, as UTC `YYYY-MM-DDTHH:MM:SSZ`."""
        return [utc_text(at) for at in islice(self.firings_after(now), count)]


def _rate_firings(interval: int, after: datetime) -> Iterator[datetime]:
    epoch_seconds = int(after.timestamp()) // interval * interval
    while True:
        epoch_seconds += interval
        yield datetime.fromtimestamp(epoch_seconds, UTC)


def _cron_firings(line: str, zone: ZoneInfo, after: datetime) -> Iterator[datetime]:
    # cronsim starts from the local time; in a fall-back repeat the naive local time it keeps for a
    # fixed-time line can answer an instant before `after`, which is dropped here, as is any repeat.
    last = after.astimezone(UTC)
    for local in CronSim(line, last.astimezone(zone)):
        at = local.astimezone(UTC)
        if at > last:
            last = at
            yield at


def utc_text(at: datetime) -> str:
    return at.astimezone(UTC).strftime(UTC_FORMAT)


def parse_utc_text(text: str) -> datetime:
    return datetime.strptime(text, UTC_FORMAT).replace(tzinfo=UTC)


def firing_task_id(schedule_id: str, at: datetime, manual: bool = False) -> str:
    """The task id of a firing: the same firing always publishes the same id."""
    return f"{schedule_id}@{utc_text(at)}{'.manual' if manual else ''}"


def validated_definition(body: dict[str, Any], registry: Registry) -> ScheduleDefinition:
    """The definition a body describes, its type registered and its payload fitting the type's model.

    Raises:
        ValidationFailed: a rule is broken; each detail names the field (`payload.<field>` for the payload).
    """
    from chalicelib.publish.api import field_problems

    try:
        definition = ScheduleDefinition.model_validate(body)
    except ValidationError as exc:
        raise ValidationFailed("the schedule is not valid", field_problems(exc)) from exc
    problems = payload_problems(definition, registry)
    if problems:
        raise ValidationFailed(f"the schedule's payload does not fit task type {definition.type!r}", problems)
    return definition


def payload_problems(definition: ScheduleDefinition, registry: Registry) -> list[FieldProblem]:
    """Why a firing of `definition` could not publish its task now (its type gone, its payload no longer
    fitting the type's model), each problem naming its field; empty when it can."""
    from chalicelib.publish.api import field_problems

    task_type = registry.get(definition.type)
    if task_type is None:
        return [FieldProblem("type", f"must be one of the registered types: {', '.join(registry.names())}")]
    try:
        task_type.parse(definition.payload)
    except ValidationError as exc:
        return field_problems(exc, prefix=("payload",))
    return []


def declared_definition(type_name: str, payload_model: type[BaseModel] | None, entry: Any) -> ScheduleDefinition:
    """A schedule a task type declares in code (`@task_type(..., schedules=[...])`): the POST body's
    fields but `type`, which is the decorated type's.

    Raises:
        ValueError: it breaks a rule; the message names the field.
    """
    from chalicelib.publish.api import field_problems

    if not isinstance(entry, dict):
        raise ValueError("each schedule is a dict of the POST /schedules fields but type")
    if "type" in entry:
        raise ValueError("a declared schedule takes its type from the decorator: leave out type")
    try:
        definition = ScheduleDefinition.model_validate({**entry, "type": type_name})
    except ValidationError as exc:
        problem = field_problems(exc)[0]
        raise ValueError(f"{problem.field} {problem.message}") from exc
    try:
        if payload_model is not None:
            payload_model.model_validate(definition.payload)
    except ValidationError as exc:
        problem = field_problems(exc, ("payload",))[0]
        raise ValueError(f"{problem.field} {problem.message}") from exc
    return definition
