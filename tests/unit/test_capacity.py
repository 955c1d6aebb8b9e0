"""docs/capacity.md is what the bench's figures, AWS's quotas and the prod settings give (tools/bench/capacity.py)."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from tools.bench import capacity
from tools.bench.capacity import (
    BEGIN,
    DESIGN_FLOW_WRITES,
    DYNAMODB_PARTITION_WRITES,
    DYNAMODB_TABLE_WRITES,
    END,
    Stage,
    flow_writes,
    index_shard_writes,
    limits,
    per_task,
    render,
    rewrite,
)

FIGURES: dict[str, Any] = json.loads(capacity.FIGURES.read_text())
CONFIG: dict[str, Any] = json.loads(capacity.CONFIG.read_text())
PROD = Stage.of(CONFIG)


def limit_named(short: str, stage: Stage = PROD, figures: dict[str, Any] = FIGURES) -> capacity.Limit:
    return next(limit for limit in limits(stage, flow_writes(figures)[0]) if limit.short == short)


def test_the_doc_s_tables_are_what_the_bench_s_figures_give() -> None:
    doc = capacity.DOC.read_text()
    assert rewrite(doc, render(FIGURES, CONFIG)) == doc, "docs/capacity.md is stale: run make capacity"


def test_a_changed_bench_figure_changes_the_doc_s_tables() -> None:
    heavier = copy.deepcopy(FIGURES)
    heavier["scenarios"]["single"]["per_task"]["wru"] += 1
    assert render(heavier, CONFIG) != render(FIGURES, CONFIG)
    task = per_task(heavier, "single", 0.0, PROD)
    assert task.wru == FIGURES["scenarios"]["single"]["per_task"]["wru"] + 1
    assert limit_named("table writes").ceiling(task) == DYNAMODB_TABLE_WRITES.value / task.wru


def test_a_task_that_never_fails_costs_what_the_bench_measured_for_its_publish_mode() -> None:
    for publish in capacity.PUBLISH:
        measured = FIGURES["scenarios"][publish]["per_task"]
        task = per_task(FIGURES, publish, 0.0, PROD)
        assert (task.attempts, task.retried, task.last_failures) == (1, 0, 0)
        assert (task.api_requests, task.sqs_requests, task.wru) == (
            measured["api_requests"],
            measured["sqs_requests"],
            measured["wru"],
        )


def test_each_retried_attempt_adds_what_the_bench_s_fails_once_task_added() -> None:
    scenarios = FIGURES["scenarios"]
    added = scenarios["fails-once"]["per_task"]["wru"] - scenarios["single"]["per_task"]["wru"]
    always = per_task(FIGURES, "batch100", 1.0, PROD)  # every attempt fails: MAX_ATTEMPTS - 1 are retried
    assert always.retried == PROD.max_attempts - 1
    assert always.wru == pytest.approx(scenarios["batch100"]["per_task"]["wru"] + (PROD.max_attempts - 1) * added)


def test_a_retry_waits_in_flight_for_its_mean_backoff() -> None:
    short = dataclasses.replace(PROD, max_attempts=3, backoff_base=60, backoff_max=90)
    task = per_task(FIGURES, "single", 1.0, short)
    # Three attempts in flight for an invocation each (100 ms assumed), and two backoffs of ceilings
    # 60 s and 90 s (capped), each hidden for three quarters of its ceiling on average.
    assert task.in_flight_seconds == pytest.approx(3 * 0.1 + 0.75 * 60 + 0.75 * 90)


def test_the_hottest_index_shard_takes_a_retried_attempt_s_two_writes_over_eight_shards() -> None:
    task = per_task(FIGURES, "single", 0.3, PROD)
    assert 10_000 * index_shard_writes(task) == pytest.approx(2 * (0.3 + 0.09) * 10_000 / 8)
    assert limit_named("index shard").ceiling(per_task(FIGURES, "single", 0.0, PROD)) is None


def test_a_capped_type_takes_at_most_500_attempts_a_second_on_its_semaphore_item() -> None:
    task = per_task(FIGURES, "batch100", 0.0, PROD)
    ceiling = limit_named("semaphore item").ceiling(task)
    assert ceiling == DYNAMODB_PARTITION_WRITES.value / DESIGN_FLOW_WRITES["semaphore"] == 500


def test_flow_figures_the_bench_measures_replace_the_design_s() -> None:
    measured = {**copy.deepcopy(FIGURES), "flow": {"semaphore": 4.0}}
    writes, source = flow_writes(measured)
    assert writes == {**DESIGN_FLOW_WRITES, "semaphore": 4.0}
    assert source.startswith("measured by the bench")
    task = per_task(measured, "batch100", 0.0, PROD)
    assert limit_named("semaphore item", figures=measured).ceiling(task) == DYNAMODB_PARTITION_WRITES.value / 4
    assert "measured by the bench" in render(measured, CONFIG)


def test_raising_the_consumer_s_reserved_concurrency_alone_moves_nothing() -> None:
    task = per_task(FIGURES, "batch100", 0.3, PROD)
    before = limit_named("process_tasks concurrency").ceiling(task)
    assert before is not None
    reserved_only = dataclasses.replace(PROD, consumer_reserved=PROD.consumer_reserved * 2)
    assert limit_named("process_tasks concurrency", reserved_only).ceiling(task) == before
    both = dataclasses.replace(reserved_only, consumer_max_concurrency=PROD.consumer_max_concurrency * 2)
    assert limit_named("process_tasks concurrency", both).ceiling(task) == pytest.approx(2 * before)


def test_a_doc_without_its_markers_is_refused() -> None:
    with pytest.raises(ValueError, match="capacity:begin"):
        rewrite("# Capacity\n\nno markers here\n", "table")
    with pytest.raises(ValueError):
        rewrite(f"{END}\n{BEGIN}\n", "table")


def test_the_check_fails_on_a_table_edited_by_hand_and_passes_once_rewritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = tmp_path / "capacity.md"
    doc.write_text(f"# Capacity\n\nprose kept\n\n{BEGIN}\n| a table edited by hand |\n{END}\n\nmore prose\n")
    assert capacity.main(["--check", "--doc", str(doc)]) == 1
    assert "make capacity" in capsys.readouterr().err
    assert capacity.main(["--doc", str(doc)]) == 0
    assert capacity.main(["--check", "--doc", str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith("# Capacity\n\nprose kept\n") and text.endswith("more prose\n")
    assert "a table edited by hand" not in text
