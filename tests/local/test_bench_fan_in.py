"""The bench's fan-in section, small: a workflow of 30 children, unthrottled and throttled, reads sane figures.

Run as `make bench` runs it (`python -m tools.bench`), in an interpreter of its own: the embedded
endpoint's patches are process-wide. No figure of time is checked, only that each is there and in
order; the counts are checked exactly, since they come from the DynamoDB calls and the items.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from local.config import PROJECT_DIR
from tools.bench.cost import dynamodb_item_bytes

CHILDREN = 30


def test_the_fan_in_section_counts_one_write_per_child_and_then_once_with_and_without_throttling(
    tmp_path: Path,
) -> None:
    figures = tmp_path / "figures.json"
    figures.write_text(json.dumps({"kept": True}))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.bench",
            "--sections",
            "fanin",
            "--fanin-children",
            str(CHILDREN),
            "--fanin-throttle",
            "0.3",
            "--out",
            str(tmp_path),
            "--figures",
            str(figures),
        ],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    section = json.loads((tmp_path / "bench.json").read_text())["fanin"]
    plain, throttled = section["runs"]
    for row in (plain, throttled):
        assert row["children"] == CHILDREN and row["then_runs"] == 1 and row["then_attempts"] == 1
        assert row["then_status"] == "COMPLETED" and row["then_reads"] == "children"
        # One counting write per child, each written: nothing was delivered twice, nothing given up.
        assert row["workflow_item_calls"].get("UpdateItem written") == CHILDREN
        assert row["workflow_item_calls"].get("PutItem written") == 1
        assert row["workflow_item_updates_per_child"] >= 1.0
        assert row["fan_in_seconds"] >= 0 and row["children_span_seconds"] >= 0
        # `then`'s message goes before its item, so its attempt may start a few ms before the item's
        # createdAt: the two parts of the latency need not add up in that order.
        assert row["then_written_after_seconds"] >= 0
        # The item holds 30 ids and 30 ends: over a KB, under the 400 KB item limit.
        assert 1024 < row["item_bytes"] < 400 * 1024
        assert row["wru_per_write_at_end"] == math.ceil(row["item_bytes"] / 1024)
        assert 1 <= row["wru_per_child"] <= row["wru_per_write_at_end"] * row["workflow_item_updates_per_child"]
    assert plain["throttled_attempts"] == 0 and plain["workflow_item_attempts_per_child"] == 1.0
    assert throttled["throttled_attempts"] > 0
    # Each attempt was throttled, or reached the endpoint as the last attempt of a call that did not give up.
    calls = throttled["workflow_item_calls"]
    reached = sum(n for name, n in calls.items() if name.startswith("UpdateItem") and not name.endswith("gave up"))
    assert throttled["workflow_item_attempts"] == throttled["throttled_attempts"] + reached
    assert calls.get("UpdateItem gave up", 0) == throttled["gave_up_calls"]
    written = json.loads(figures.read_text())
    assert written["kept"] is True and written["fanin"]["children"] == CHILDREN
    assert "fan-in:" in done.stdout and "throttling added" in done.stdout


def test_the_item_size_rule_counts_names_values_and_the_map_s_overhead() -> None:
    item = {"id": {"S": "ab"}, "ended": {"M": {"1": {"M": {"s": {"S": "COMPLETED"}, "v": {"N": "3"}}}}}}
    # "id" 2 + "ab" 2; "ended" 5 + map 3 + ("1" 1 + inner map (3 + "s" 1 + 9 + 1 + "v" 1 + 2 + 1) + 1)
    assert dynamodb_item_bytes(item) == 2 + 2 + 5 + 3 + 1 + (3 + 1 + 9 + 1 + 1 + 2 + 1) + 1
