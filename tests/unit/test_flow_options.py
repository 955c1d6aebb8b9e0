"""The flow options of `@task_type`: each rule refused at import naming the type and the rule,
`options()` as GET /types shows them, and the deferral's delay."""

from __future__ import annotations

import random
from typing import Any

import pytest

from chalicelib.flow.gate import Gate, flow_key
from chalicelib.flow.keys import DIGEST_PREFIX, payload_key
from chalicelib.flow.policy import Deferred
from chalicelib.flow.rate import parse_rate
from chalicelib.models import Task
from chalicelib.registry import RegistrationError, Registry, TaskType, task_type


def register(**options: Any) -> None:
    task_type("flowing", registry=Registry(), **options)(lambda payload, context: None)


@pytest.mark.parametrize(
    ("options", "rule"),
    [
        ({"concurrency": 0}, "concurrency must be a whole number from 1 to 1000"),
        ({"concurrency": 1.5}, "concurrency must be a whole number"),
        ({"concurrency": True}, "concurrency must be a whole number"),
        ({"key_concurrency": 1001}, "key_concurrency must be a whole number from 1 to 1000"),
        ({"concurrency_key": "customer..id", "key_concurrency": 1}, "concurrency_key must be a dotted path"),
        ({"concurrency_key": "customer.id"}, "concurrency_key needs key_concurrency or key_rate_limit"),
        ({"rate_limit": "100/day"}, "rate_limit must be '<n>/<second|minute|hour>'"),
        ({"rate_limit": "0/second"}, "rate_limit must be"),
        ({"rate_limit": "1001/second"}, "rate_limit must be"),
        ({"key_rate_limit": "ten/minute"}, "key_rate_limit must be"),
        ({"rate_burst": 3}, "rate_burst needs rate_limit or key_rate_limit"),
        ({"rate_limit": "1/second", "rate_burst": -1}, "rate_burst must be a whole number from 0"),
    ],
)
def test_a_flow_option_that_breaks_its_rule_is_refused_at_import_naming_the_type_and_the_rule(
    options: dict[str, Any], rule: str
) -> None:
    with pytest.raises(RegistrationError) as refused:
        register(**options)
    assert str(refused.value).startswith("task type 'flowing': ")
    assert rule in str(refused.value)


def test_options_give_every_option_the_type_sets_in_camel_case_and_leave_out_the_rest() -> None:
    plain = TaskType("plain", lambda payload, context: None)
    assert plain.options() == {}
    limited = TaskType(
        "sync",
        lambda payload, context: None,
        max_attempts=2,
        timeout_seconds=5,
        concurrency=5,
        concurrency_key="customer.id",
        key_concurrency=1,
        rate_limit="100/minute",
        key_rate_limit="1/second",
    )
    assert limited.options() == {
        "maxAttempts": 2,
        "timeoutSeconds": 5,
        "concurrency": 5,
        "concurrencyKey": "customer.id",
        "keyConcurrency": 1,
        "rateLimit": "100/minute",
        "keyRateLimit": "1/second",
        "rateBurst": 0,  # the default, shown where a rate applies
    }


def test_a_rate_s_interval_is_rounded_up_so_it_never_allows_more_than_n_a_window() -> None:
    assert parse_rate("3/second").interval_ms == 334
    assert parse_rate("100/minute").interval_ms == 600
    assert parse_rate("1000/second").interval_ms == 1


def test_the_explicit_key_wins_over_the_payload_path_and_a_payload_value_is_bounded() -> None:
    keyed = TaskType("sync", lambda payload, context: None, concurrency_key="customer.id", key_concurrency=1)
    payload = {"customer": {"id": "c1"}}
    assert flow_key(Task(id="t", payload=payload, key="vip"), keyed) == "vip"
    assert flow_key(Task(id="t", payload=payload), keyed) == "c1"
    assert flow_key(Task(id="t", payload={}), keyed) is None
    assert payload_key({"customer": {"id": 42}}, "customer.id") == "42"
    long = payload_key({"customer": {"id": "x" * 200}}, "customer.id")
    assert long is not None and long.startswith(DIGEST_PREFIX) and len(long) <= 128
    assert payload_key({"customer": {"id": "x" * 200}}, "customer.id") == long  # one key per value


def test_a_deferral_waits_at_least_its_estimate_and_spreads_wider_with_each_earlier_deferral() -> None:
    gate = Gate([], table=None, rng=random.Random(3))  # type: ignore[arg-type]
    deferred = Deferred("concurrency", 2_000)
    first = [gate.delay_seconds(deferred, 0) for _ in range(200)]
    later = [gate.delay_seconds(deferred, 4) for _ in range(200)]
    assert min(first) >= 2 and max(first) <= 4
    assert min(later) >= 2 and max(later) <= 64 and max(later) > 4 * max(first)
    capped = Deferred("paused", 5_000, max_wait_ms=60_000)
    assert max(gate.delay_seconds(capped, 10) for _ in range(200)) <= 60
    assert gate.delay_seconds(Deferred("rate", 3_600_000), 0) == 900  # SQS's longest delay: it looks again
