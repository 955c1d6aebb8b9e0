"""An attempt's deadline and what a task type's timeout must fit in: the lease and the consumer function's timeout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from chalice.local import LambdaContext

from chalicelib.consume.attempt import run_attempt
from chalicelib.consume.deadline import UNBOUNDED, Invocation, invocation_seconds, margin_seconds
from chalicelib.handlers import REGISTRY
from chalicelib.models import Task
from chalicelib.registry import RegistrationError, Registry, TaskContext, TaskType, task_type
from chalicelib.settings import aws_call_seconds
from infra import stack
from tests.unit.test_timeouts import CONFIG, stage_settings

STAGES = list(CONFIG["stages"])
# simulate's longest execution (its payload model allows 1000 ms) and checksum's, well under it.
LONGEST_SIMULATION_SECONDS = 1.0


class Ticking:
    """A time source moved by hand, for Lambda contexts and the store alike."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


def test_the_margin_is_the_outcome_write_and_the_settle_calls_at_the_stages_worst_case_plus_a_second() -> None:
    prod, dev = stage_settings("prod"), stage_settings("dev")
    assert prod.REPORT_BATCH_ITEM_FAILURES and not dev.REPORT_BATCH_ITEM_FAILURES
    # UpdateItem and ChangeMessageVisibilityBatch; without item failures, DeleteMessageBatch too.
    assert margin_seconds(prod) == 2 * aws_call_seconds(prod) + 1 == 11
    assert margin_seconds(dev) == 3 * aws_call_seconds(dev) + 1 == 16


def test_a_timeout_over_the_consumer_function_s_timeout_less_its_margin_is_refused_naming_the_type_and_rule() -> None:
    registry = Registry()
    task_type("report", registry=registry, timeout_seconds=20)(lambda payload, ctx: None)
    within = 30 - margin_seconds(stage_settings("prod"))  # 19 s, under a lease of 60 s

    with pytest.raises(RegistrationError, match=r"'report': timeout_seconds 20 does not fit in the consumer function"):
        registry.check(max_attempts=3, lease_seconds=60, invocation_seconds=within)
    registry.check(max_attempts=3, lease_seconds=60, invocation_seconds=20)


def test_the_default_timeout_is_the_tightest_of_the_lease_and_the_invocation() -> None:
    kind = TaskType("t", lambda payload, ctx: None)
    assert kind.timeout(lease_seconds=60) == 59  # no function timeout known: the lease alone
    assert kind.timeout(lease_seconds=60, invocation_seconds=19) == 19
    assert kind.timeout(lease_seconds=3, invocation_seconds=602) == 2
    assert TaskType("own", kind.handler, timeout_seconds=5).timeout(60, 19) == 5


def test_a_function_timeout_shorter_than_its_margin_leaves_no_default_timeout_and_is_refused() -> None:
    registry = Registry()
    task_type("any", registry=registry)(lambda payload, ctx: None)
    with pytest.raises(RegistrationError, match=r"'any': the default timeout -6 does not fit in the consumer"):
        registry.check(max_attempts=3, lease_seconds=60, invocation_seconds=10 - 16)


@pytest.mark.parametrize("stage", STAGES)
def test_the_built_in_types_fit_every_stage_with_their_longest_work(stage: str) -> None:
    settings = stage_settings(stage)
    function_timeout = stack.load_stage(stage).timeouts["process_tasks"]  # refuses a type that does not fit
    within = invocation_seconds(settings, function_timeout)
    REGISTRY.check(settings.MAX_ATTEMPTS, settings.LEASE_SECONDS, within)
    for name in ("simulate", "checksum"):
        timeout = REGISTRY.get(name).timeout(settings.LEASE_SECONDS, within)  # type: ignore[union-attr]
        assert LONGEST_SIMULATION_SECONDS < timeout <= function_timeout - margin_seconds(settings), (stage, name)


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_tells_the_runtime_its_consumer_function_s_timeout(stage: str) -> None:
    function_timeout = stack.load_stage(stage).timeouts["process_tasks"]
    declared = stage_settings(stage).CONSUMER_TIMEOUT_SECONDS
    assert declared == function_timeout


def test_the_deploy_view_refuses_a_type_that_does_not_fit_the_stage_s_consumer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(REGISTRY, "_types", {**REGISTRY._types})
    task_type("report", timeout_seconds=25)(lambda payload, ctx: None)
    with pytest.raises(stack.StackError, match=r"stage 'prod': task type 'report': timeout_seconds 25 does not fit"):
        stack.load_stage("prod")


def test_the_deploy_view_refuses_a_consumer_timeout_setting_that_is_not_the_function_s(tmp_path: Path) -> None:
    config = json.loads(stack.CONFIG.read_text())
    config["stages"]["dev"]["environment_variables"]["CONSUMER_TIMEOUT_SECONDS"] = "60"
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    with pytest.raises(stack.StackError, match=r"CONSUMER_TIMEOUT_SECONDS \(60\) must be process_tasks' lambda"):
        stack.load_stage("dev", path)


def test_the_runtime_refuses_a_type_that_does_not_fit_its_consumer_function(
    settings: Any, aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.runtime import build_runtime

    monkeypatch.setattr(REGISTRY, "_types", {**REGISTRY._types})
    task_type("report", timeout_seconds=25)(lambda payload, ctx: None)
    build_runtime(settings)  # no function timeout given: the lease alone decides
    with pytest.raises(RegistrationError, match="'report': timeout_seconds 25 does not fit in the consumer"):
        build_runtime(settings.model_copy(update={"CONSUMER_TIMEOUT_SECONDS": 30}))


def test_an_invocation_counts_down_from_its_context_and_keeps_its_margin() -> None:
    clock = Ticking()
    context = LambdaContext("process_tasks", 128, max_runtime_ms=30_000, time_source=clock)  # type: ignore[arg-type]
    invocation = Invocation.of(context, margin=11)

    assert invocation.attempt_deadline(now=500.0) == 500 + 30 - 11
    clock.now += 25
    assert invocation.wait_seconds() == 0  # 5 s left, under the margin: settle now
    assert invocation.attempt_deadline(now=525.0) == 525 + 5 - 11


def test_without_a_lambda_context_nothing_but_the_type_s_timeout_bounds_an_attempt() -> None:
    assert Invocation.of(None, margin=11) == UNBOUNDED
    assert (UNBOUNDED.attempt_deadline(now=1.0), UNBOUNDED.wait_seconds()) == (None, None)


def _attempt(handler: Any, clock: Ticking, invocation_deadline: float | None) -> Any:
    kind = TaskType("report", handler, timeout_seconds=20)
    task = Task(id="r", type="report", payload={})
    return run_attempt(task, kind, 1, 3, 60, clock=clock.time, invocation_deadline=invocation_deadline)


def test_the_deadline_is_the_invocation_s_end_when_that_comes_first() -> None:
    clock, seen = Ticking(), []

    def note(payload: Any, ctx: TaskContext) -> str:
        seen.append((ctx.deadline, ctx.remaining_seconds()))
        return "done"

    assert _attempt(note, clock, invocation_deadline=clock.now + 8).succeeded
    assert _attempt(note, clock, invocation_deadline=clock.now + 50).succeeded
    assert seen == [(1008.0, 8.0), (1020.0, 20.0)]


def test_an_attempt_past_the_invocation_s_deadline_is_timed_out_saying_which_limit() -> None:
    clock = Ticking()

    def overrun(payload: Any, ctx: TaskContext) -> str:
        clock.now += 9
        return "late"

    outcome = _attempt(overrun, clock, invocation_deadline=clock.now + 8)
    assert (outcome.result_json, outcome.permanent) == (None, False)
    assert outcome.error == (
        "timed out after 9000 ms (the invocation's end less its margin left it 8000 ms); its result was discarded"
    )
