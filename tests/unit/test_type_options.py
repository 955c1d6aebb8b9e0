"""A task type's options as GET /types shows them: camelCase JSON, the options not given left out."""

from __future__ import annotations

import json

from chalicelib.handlers import REGISTRY
from chalicelib.registry import Backoff, TaskType


def handler(payload: object, context: object) -> None:
    return None


def test_every_option_given_is_shown_in_camel_case_and_is_json() -> None:
    task_type = TaskType(
        "long", handler, max_attempts=4, timeout_seconds=30, backoff=Backoff(2, 60), heartbeat_seconds=5
    )

    options = task_type.options()

    assert options == {
        "maxAttempts": 4,
        "timeoutSeconds": 30,
        "backoff": {"baseSeconds": 2, "maxSeconds": 60},
        "heartbeatSeconds": 5,
    }
    assert json.loads(json.dumps(options)) == options


def test_a_type_with_no_options_shows_none_and_the_built_ins_show_their_own() -> None:
    assert TaskType("plain", handler).options() == {}
    assert REGISTRY.get("steps").options() == {"timeoutSeconds": 12, "heartbeatSeconds": 2}  # type: ignore[union-attr]
