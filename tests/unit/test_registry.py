from __future__ import annotations

import hashlib
import logging
from typing import Any

import pytest
from pydantic import BaseModel

from chalicelib.consume.attempt import run_attempt
from chalicelib.handlers import REGISTRY
from chalicelib.handlers.checksum import ChecksumPayload, checksum
from chalicelib.models import Task
from chalicelib.registry import (
    MAX_RESULT_BYTES,
    Backoff,
    PermanentError,
    RegistrationError,
    Registry,
    TaskContext,
    TaskFailed,
    TaskType,
    task_type,
)


def context() -> TaskContext:
    return TaskContext("t", "checksum", 1, 3, deadline=1e12, logger=logging.LoggerAdapter(logging.getLogger("t")))


def test_the_built_in_types_are_registered() -> None:
    assert REGISTRY.names() == ["callback", "capped", "checksum", "per-customer", "simulate", "steps", "throttled"]


def test_registering_two_handlers_under_one_name_fails_naming_the_type() -> None:
    registry = Registry()
    task_type("twice", registry=registry)(lambda payload, ctx: None)
    with pytest.raises(RegistrationError, match="'twice': registered twice"):
        task_type("twice", registry=registry)(lambda payload, ctx: None)


@pytest.mark.parametrize(
    ("options", "rule"),
    [
        ({"max_attempts": 0}, "max_attempts must be at least 1"),
        ({"timeout_seconds": 0}, "timeout_seconds must be positive"),
        ({"backoff": Backoff(10, 5)}, "base_seconds <= max_seconds"),
    ],
)
def test_options_out_of_range_fail_at_registration(options: dict[str, Any], rule: str) -> None:
    with pytest.raises(RegistrationError, match=rule):
        task_type("bad", registry=Registry(), **options)(lambda payload, ctx: None)


def test_a_name_with_spaces_is_refused() -> None:
    with pytest.raises(RegistrationError, match="letters, digits"):
        task_type("two words", registry=Registry())(lambda payload, ctx: None)


def test_more_attempts_than_the_queue_allows_fail_the_check_naming_the_handler_and_rule() -> None:
    registry = Registry()
    task_type("greedy", registry=registry, max_attempts=5)(lambda payload, ctx: None)
    with pytest.raises(RegistrationError, match=r"'greedy': max_attempts 5 is more than MAX_ATTEMPTS 3"):
        registry.check(max_attempts=3, lease_seconds=60)
    registry.check(max_attempts=5, lease_seconds=60)


def test_a_timeout_that_does_not_fit_in_the_lease_fails_the_check() -> None:
    registry = Registry()
    task_type("slow", registry=registry, timeout_seconds=59.5)(lambda payload, ctx: None)
    with pytest.raises(RegistrationError, match=r"'slow': timeout_seconds 59.5 plus a margin .* LEASE_SECONDS 60"):
        registry.check(max_attempts=3, lease_seconds=60)


def test_a_bad_stage_setting_stops_the_runtime_from_being_built(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.runtime import build_runtime

    monkeypatch.setattr(REGISTRY, "_types", {**REGISTRY._types})
    task_type("needs-five", max_attempts=5)(lambda payload, ctx: None)
    with pytest.raises(RegistrationError, match="needs-five"):
        build_runtime(settings)


@pytest.mark.parametrize("algorithm", ["sha256", "sha1", "md5"])
def test_checksum_digests_the_utf8_text_in_lowercase_hex(algorithm: str) -> None:
    text = "héllo, wörld ✓"
    result = checksum(ChecksumPayload(text=text, algorithm=algorithm), context())
    assert result == {"algorithm": algorithm, "digest": hashlib.new(algorithm, text.encode()).hexdigest()}


def test_checksum_defaults_to_sha256_and_refuses_more_than_64_kib() -> None:
    assert ChecksumPayload(text="x").algorithm == "sha256"
    with pytest.raises(ValueError, match="at most 65536 bytes"):
        ChecksumPayload(text="é" * 40_000)


class Numbers(BaseModel):
    n: int


def attempt(handler: Any, *, timeout: float | None = None, payload: dict[str, Any] | None = None, clock: Any = None):  # type: ignore[no-untyped-def]
    kind = TaskType("t", handler, payload=Numbers, timeout_seconds=timeout)
    task = Task(id="x", type="t", payload=payload if payload is not None else {"n": 1})
    return run_attempt(task, kind, 1, 3, lease_seconds=60, **({"clock": clock} if clock else {}))


def test_a_handler_result_is_kept_as_json_text() -> None:
    outcome = attempt(lambda payload, ctx: {"double": payload.n * 2, "task": ctx.task_id})
    assert outcome.succeeded and outcome.result_json == '{"double":2,"task":"x"}'


def test_any_exception_is_a_retryable_failure_named_by_its_class() -> None:
    def broken(payload: Numbers, ctx: TaskContext) -> None:
        raise KeyError("missing")

    outcome = attempt(broken)
    assert (outcome.error, outcome.permanent) == ("KeyError: 'missing'", False)


def test_task_failed_is_recorded_in_its_own_words_and_permanent_error_is_permanent() -> None:
    def expected(payload: Numbers, ctx: TaskContext) -> None:
        raise TaskFailed("upstream said 503")

    def hopeless(payload: Numbers, ctx: TaskContext) -> None:
        raise PermanentError("the file does not exist")

    assert (attempt(expected).error, attempt(expected).permanent) == ("upstream said 503", False)
    outcome = attempt(hopeless)
    assert (outcome.error, outcome.permanent) == ("permanent failure: the file does not exist", True)


def test_a_payload_that_breaks_the_model_is_a_permanent_failure_naming_the_field() -> None:
    outcome = attempt(lambda payload, ctx: None, payload={"n": "one"})
    assert outcome.permanent
    assert "payload.n: Input should be a valid integer" in (outcome.error or "")


def test_a_result_over_the_cap_or_not_json_fails_permanently_saying_so() -> None:
    too_large = attempt(lambda payload, ctx: "x" * MAX_RESULT_BYTES)
    assert too_large.permanent and f"a result may be at most {MAX_RESULT_BYTES}" in (too_large.error or "")
    not_json = attempt(lambda payload, ctx: {"when": object()})
    assert not_json.permanent and "is not JSON" in (not_json.error or "")
    nan = attempt(lambda payload, ctx: float("nan"))
    assert nan.permanent and "is not JSON" in (nan.error or "")


def test_an_attempt_that_returns_after_its_deadline_is_failed_and_its_result_discarded() -> None:
    now = [1000.0]

    def overrun(payload: Numbers, ctx: TaskContext) -> str:
        assert ctx.remaining_seconds() == pytest.approx(2.0)
        now[0] += 2.5
        return "too late"

    outcome = attempt(overrun, timeout=2, clock=lambda: now[0])
    assert outcome.result_json is None and not outcome.permanent
    assert outcome.error == "timed out after 2500 ms (task type 't' has 2000 ms); its result was discarded"
