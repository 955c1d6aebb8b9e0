"""A bounded chaos round on the offline stack: duplicates, worker and API kills, batch publishes, AWS faults,
poison, a mix of task types
(permanent failures, a handler that overruns its deadline, checksums, flow-controlled types, a pause,
unique keys), an operator's retries and cancels, schedules firing and `runAt` tasks through timers and SQS's
delay while the workers' tickers die, workflows, chains and completion callbacks to a receiver that refuses
and stalls some, and nothing breaks."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.chaos.run import ChaosOptions, ChaosReport, run_chaos

pytestmark = pytest.mark.e2e

# Small enough for a shared two-core machine (well under two minutes), big enough
# that kills land mid-attempt and faults hit both services.
OPTIONS = ChaosOptions(
    tasks=150,
    workers=2,
    kills=2,
    api_kills=3,
    batch_share=0.3,
    kill_every=3.0,
    fault_rate=0.04,
    lost_answer_share=0.3,
    duplicate_share=0.2,
    requeue_share=0.1,
    poison_per_kind=1,
    deadline=120.0,
    operator_actions=40,
    # The schedules' tasks (a `steps` one of 5 s every 4 s) take worker slots, so tasks reach FAILED later:
    # the operator needs longer to meet them than the 40 s it had before.
    operator_seconds=60.0,
    # A little composed work: two workflows of 20 (one `fail`, one `continue`), four chains, and callbacks
    # on some tasks and both workflows, one of whose first deliveries the receiver answers too late.
    workflows=2,
    workflow_sizes=(20,),
    chains=4,
    callbacks=10,
    slow_callbacks=1,
    verbose=False,
)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> ChaosReport:
    log_dir: Path = tmp_path_factory.mktemp("chaos")
    result = run_chaos(ChaosOptions(**{**vars(OPTIONS), "log_dir": log_dir}))
    print(result.line())
    print(result.operator_line())
    print(result.time_line())
    print(result.compose_line())
    print(result.details())
    return result


def test_no_invariant_breaks_under_chaos(report: ChaosReport) -> None:
    assert report.findings.broken() == {}, report.details()


def test_no_task_is_stranded_accepted_or_not(report: ChaosReport) -> None:
    assert report.findings.stranded == []


def test_every_accepted_task_ends_completed_failed_or_cancelled(report: ChaosReport) -> None:
    # Every publish is accepted but those a unique key held back.
    assert report.tasks + report.unique_held == OPTIONS.tasks
    assert report.completed + report.failed + report.cancelled == report.tasks


def test_the_chaos_actually_happened(report: ChaosReport) -> None:
    assert report.kills == OPTIONS.kills
    assert report.api_kills == OPTIONS.api_kills
    # The API died at least once between a publish's send and its put.
    assert report.api_kill_points["after-send"] >= 1, report.api_kill_points
    assert report.duplicates > 0
    assert report.faults > 0
    assert report.poison_sent == 3 * OPTIONS.poison_per_kind
    assert report.poison_recorded == report.poison_sent


def test_the_task_types_misbehaved_as_planned(report: ChaosReport) -> None:
    assert report.permanent_failures > 0
    assert report.timed_out > 0
    assert report.long_completed > 0  # heartbeating tasks ran, each with its final progress checked
    assert report.expired_unstarted > 0  # tasks delayed past their expiry ended without running


def test_the_operator_met_every_status_it_can_act_on(report: ChaosReport) -> None:
    entries = report.operator_entries
    assert entries["cancel from PENDING"] > 0, report.operator_line()
    assert entries["cancel from RETRYING"] > 0, report.operator_line()
    assert entries["cancel_requested from PROCESSING"] > 0, report.operator_line()
    assert entries["retry from FAILED"] > 0, report.operator_line()
    assert report.operator_answers["bulk_retry 200"] > 0, report.operator_line()


def test_flow_control_held_tasks_back_and_a_pause_came_and_went(report: ChaosReport) -> None:
    assert report.flow_runs > 0
    assert report.flow_deferred > 0, report.details()  # caps, rates and the pause made tasks wait
    assert report.pauses == 1
    assert report.unique_held > 0  # unique keys held some publishes back


def test_schedules_fired_each_due_firing_once_and_no_run_at_task_started_early(report: ChaosReport) -> None:
    f = report.findings
    time_invariants = (f.unfired, f.fired_off_grid, f.skip_overlapped, f.started_early, f.ran_after_early_cancel)
    assert all(found == [] for found in time_invariants), report.time_line()
    assert f.cursor_behind == [], report.time_line()
    assert report.time.schedules == OPTIONS.schedules
    # 30 s at 30 scaled seconds a second: the two `allow` schedules alone owe 5 and 3 firings.
    assert report.time.firings >= 6, report.time_line()
    assert report.time.skipped > 0, report.time_line()  # the `skip` schedule's task outlasts its period


def test_run_at_tasks_went_through_timers_and_the_delay_path_and_some_were_cancelled_first(
    report: ChaosReport,
) -> None:
    t = report.time
    assert t.run_at_tasks == OPTIONS.run_at_tasks
    assert t.timers > 0, report.time_line()
    assert t.timers < t.run_at_tasks - t.cancelled_early, "some went through SQS's delay"
    assert t.cancelled_early > 0, report.time_line()


def test_workflows_fanned_in_or_failed_by_their_policy_and_chains_ran_and_stopped_where_a_step_failed(
    report: ChaosReport,
) -> None:
    f, c = report.findings, report.compose
    assert (f.then_not_once, f.then_early, f.not_cancelled) == ([], [], []), report.compose_line()
    assert (f.step_twice, f.step_after_end, f.chain_lost) == ([], [], []), report.compose_line()
    assert c.workflows == OPTIONS.workflows and c.children == 20 * OPTIONS.workflows, report.compose_line()
    # The `fail` one holds a child that always fails; the `continue` one runs `then` whatever its children did.
    assert c.workflow_ends.get("FAILED", 0) >= 1 and c.thens >= 1, report.compose_line()
    assert c.chains == OPTIONS.chains, report.compose_line()
    assert c.steps_published > 0 and c.chains_ended_early > 0, report.compose_line()


def test_every_callback_was_delivered_once_signed_some_after_a_retry(report: ChaosReport) -> None:
    f, c = report.findings, report.compose
    callback_invariants = (f.callback_missing, f.callback_wrong, f.callback_unsigned, f.callback_repeated)
    assert callback_invariants == ([], [], [], []), report.compose_line()
    # The plan's tasks with a callback, and both workflows.
    assert c.callbacks >= OPTIONS.callbacks + OPTIONS.workflows, report.compose_line()
    assert c.delivered + c.callbacks_failed == c.callbacks, report.compose_line()
    assert c.delivered > 0 and c.refused > 0 and c.callbacks_retried > 0, report.compose_line()
    assert c.accepted_repeats >= OPTIONS.slow_callbacks, report.compose_line()  # the late answer was sent again
