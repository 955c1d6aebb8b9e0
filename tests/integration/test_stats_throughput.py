"""`GET /stats`' throughput and estimated counts against moto, and what one refresh costs in AWS requests."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from botocore.client import BaseClient
from chalice.test import Client

from tests.conftest import FakeClock
from tests.integration.harness import SUCCEEDS, Harness


@pytest.fixture
def h(client: Client, runtime: Any, clock: FakeClock) -> Harness:
    return Harness(client, runtime, clock)


@pytest.fixture
def requests(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Every AWS request made, as `service:Operation`."""
    made: Counter[str] = Counter()
    original = BaseClient._make_api_call

    def recorded(self: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        made[f"{self.meta.service_model.service_name}:{operation}"] += 1
        return original(self, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", recorded)
    return made


def stats(h: Harness) -> dict[str, Any]:
    response = h.client.http.get("/stats")
    assert response.status_code == 200, response.body
    return dict(json.loads(response.body))


def test_stats_answers_the_throughput_of_every_registered_type_and_says_where_each_figure_comes_from(
    h: Harness,
) -> None:
    h.publish("ran", SUCCEEDS)
    h.deliver()

    answer = stats(h)

    throughput = answer["throughput"]
    assert set(throughput) == {"perMinute", "perHour", "latency"}
    scopes = set(throughput["perMinute"]["series"])
    assert "total" in scopes and set(h.rt.registry.names()) <= scopes
    for window, buckets in (("perMinute", 60), ("perHour", 24)):
        for series in throughput[window]["series"].values():
            assert set(series) == {"completed", "failed", "retried", "accepted"}
            assert all(len(values) == buckets for values in series.values())
    assert throughput["latency"]["total"] == {
        "attemptMs": {"p50": None, "p95": None, "p99": None},  # moto ingests no EMF line
        "endToEndMs": {"p50": None, "p95": None, "p99": None},
    }
    assert set(answer["counts"]) == {"PENDING", "PROCESSING", "RETRYING", "COMPLETED", "FAILED", "CANCELLED"}
    for name in ("throughput.perMinute", "throughput.perHour", "throughput.latency", "oldestWaitingSeconds"):
        assert answer["sources"][name]["exact"] is False
        assert answer["sources"][name]["source"]
    assert "CloudWatch" in answer["sources"]["throughput.perMinute"]["source"]
    assert "cached up to 60 s" in answer["sources"]["counts.COMPLETED"]["source"]
    assert answer["oldestWaitingSeconds"] is None


def test_a_refresh_makes_one_get_metric_data_request_and_a_refresh_inside_the_minute_none(
    h: Harness, requests: Counter[str]
) -> None:
    stats(h)
    uncached = Counter(requests)
    requests.clear()
    h.clock.advance(30)
    stats(h)
    cached = Counter(requests)
    requests.clear()
    h.clock.advance(31)
    stats(h)

    assert uncached["cloudwatch:GetMetricData"] == 1
    assert cached["cloudwatch:GetMetricData"] == 0
    assert requests["cloudwatch:GetMetricData"] == 1  # a minute on, asked again
    # the rest is asked at every refresh (the queue URLs only at the container's first)
    assert requests - cached == Counter({"cloudwatch:GetMetricData": 1})
    assert uncached - requests == Counter({"sqs:GetQueueUrl": 4})
    assert cached["sqs:GetQueueAttributes"] == 4


def test_pending_counts_the_messages_due_and_delayed_and_processing_leaves_out_the_retries_backing_off(
    h: Harness,
) -> None:
    response = h.client.http.post(
        "/publish",
        body=json.dumps({"id": "later", "payload": SUCCEEDS, "delaySeconds": 600}),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 201
    h.publish("now", SUCCEEDS)
    h.publish("backing-off", {"simulation": {"failureChance": 1}})
    h.deliver()  # runs now, fails backing-off once: its message hides through the backoff

    answer = stats(h)

    assert answer["counts"]["PENDING"] == 1  # later, delayed
    assert answer["counts"]["RETRYING"] == 1
    assert answer["counts"]["PROCESSING"] == 0  # backing-off's hidden message is the RETRYING one
    assert answer["queues"]["tasks"]["inFlight"] == 1
