"""`then` fuzzed by hand: chains of any length, of known, unknown and reserved types, with payloads that
fit their type or break one rule, sent to the running API. Each is accepted exactly when every step is
valid, and otherwise refused with a 400 naming the first broken step's field; the view of an accepted
task lists its steps, all `waiting`.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzz.conftest import FUZZ_EXAMPLES, STATUSES

TIMEOUT_SECONDS = 10
JSON = {"Content-Type": "application/json"}

# (step, the field a refusal names or None when the step is valid), each verdict known by construction.
VALID_STEPS = st.sampled_from(
    [
        {"type": "simulate"},
        {"type": "simulate", "payload": {}},
        {"type": "simulate", "payload": {"simulation": {"failureChance": 0}, "note": "é"}},
        {"type": "checksum", "payload": {"text": "abc"}},
        {"type": "steps", "payload": {"steps": 2}},
    ]
).map(lambda step: (step, None))
INVALID_STEPS = st.sampled_from(
    [
        ({"type": "nope"}, "type"),
        ({"type": "callback"}, "type"),
        ({"type": ""}, "type"),
        ({"type": 7}, "type"),
        ({}, "type"),
        ({"type": "simulate", "payload": {"previous": 1}}, "payload.previous"),
        ({"type": "simulate", "payload": {"simulation": {"failureChance": 2}}}, "payload.simulation.failureChance"),
        ({"type": "checksum", "payload": {}}, "payload.text"),
        ({"type": "simulate", "payload": []}, "payload"),
        ({"type": "simulate", "extra": True}, "extra"),
    ]
)
CHAINS = st.lists(st.one_of(VALID_STEPS, VALID_STEPS, INVALID_STEPS), min_size=0, max_size=12)


def _publish(api_url: str, body: dict[str, Any]) -> requests.Response:
    response = requests.post(f"{api_url}/publish", data=json.dumps(body), headers=JSON, timeout=TIMEOUT_SECONDS)
    STATUSES[f"POST /publish {response.status_code}"] += 1
    assert response.status_code < 500, response.text[:500]
    return response


@given(chain=CHAINS)
@settings(max_examples=FUZZ_EXAMPLES * 2, deadline=None, database=None, derandomize=True)
def test_a_chain_is_accepted_exactly_when_every_step_is_valid_and_else_refused_naming_a_broken_step(
    api_url: str, chain: list[tuple[dict[str, Any], str | None]]
) -> None:
    task_id = f"chain-{uuid.uuid4().hex}"
    steps = [step for step, _ in chain]
    response = _publish(api_url, {"id": task_id, "payload": {}, "then": steps})
    broken = {f"then[{index}].{field}" for index, (_, field) in enumerate(chain) if field is not None}
    if not 1 <= len(chain) <= 10:
        assert response.status_code == 400, response.text
        assert "then" in {detail["field"] for detail in response.json()["error"]["details"]}, response.text
    elif broken:
        assert response.status_code == 400, response.text
        fields = {detail["field"] for detail in response.json()["error"]["details"]}
        assert fields & broken and fields <= broken, (fields, broken)
    else:
        assert response.status_code == 201, response.text
        shown = requests.get(f"{api_url}/tasks/{task_id}", timeout=TIMEOUT_SECONDS).json()["then"]
        assert shown == [
            {"id": f"{task_id}/then/{n}", "type": step["type"], "state": "waiting"}
            for n, step in enumerate(steps, start=1)
        ]


@given(length=st.integers(min_value=240, max_value=256), steps=st.integers(min_value=1, max_value=10))
@settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, derandomize=True)
def test_an_id_with_a_chain_is_taken_when_it_leaves_room_for_a_tenth_step_and_else_refused_naming_id(
    api_url: str, length: int, steps: int
) -> None:
    task_id = uuid.uuid4().hex + "x" * (length - 32)
    response = _publish(api_url, {"id": task_id, "payload": {}, "then": [{"type": "simulate"}] * steps})
    if length + len("/then/10") <= 256:
        assert response.status_code == 201, response.text
    else:
        assert response.status_code == 400, response.text
        assert [detail["field"] for detail in response.json()["error"]["details"]] == ["id"], response.text
