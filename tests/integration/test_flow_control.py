"""Flow control end to end over moto: caps, dead slots, rates and bursts, pauses, fairness between
keys, a capped backlog that drains with nothing dead-lettered, and what a plain type pays."""

from __future__ import annotations

import heapq
import json
import random
import threading
from collections import Counter
from typing import Any

import pytest
from chalice.test import Client

from chalicelib.consume.consumer import BatchIncomplete
from chalicelib.flow.concurrency import CapReached, Semaphore
from chalicelib.flow.gate import Deferred, Gate
from chalicelib.flow.keys import concurrency_item, rate_item
from chalicelib.flow.pause import Pauses
from chalicelib.flow.rate import Gcra, RateExceeded, parse_rate
from chalicelib.handlers import REGISTRY
from chalicelib.models import Task
from chalicelib.registry import Registry, TaskType
from tests.conftest import FakeClock
from tests.integration.harness import Harness
from tests.integration.lambda_sqs import lambda_records

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def h(client: Client, runtime: Any, clock: FakeClock) -> Harness:
    registry = Registry()
    for name in REGISTRY.names():
        registry.register(REGISTRY.get(name))  # type: ignore[arg-type]
    runtime.registry = registry
    return Harness(client, runtime, clock)


class Renewals:
    """Every renewed message's delay, recorded and then dropped, so that the message shows at once:
    moto delays messages by the wall clock, which the tests' clock does not move."""

    def __init__(self, sqs: Any) -> None:
        self.delays: list[int] = []
        self.deferrals: Counter[str] = Counter()
        self.seen = threading.Event()  # set at the first renewal
        sqs.meta.events.register("before-parameter-build.sqs.SendMessage", self._strip)

    def _strip(self, params: dict[str, Any], **_: Any) -> None:
        if "taskMessageId" in (params.get("MessageAttributes") or {}):
            self.delays.append(int(params.pop("DelaySeconds", 0)))
            self.deferrals[json.loads(params["MessageBody"])["id"]] += 1
            self.seen.set()


def publish_batch(h: Harness, entries: list[dict[str, Any]]) -> None:
    response = h.client.http.post("/publish/batch", body=json.dumps({"tasks": entries}), headers=JSON)
    assert response.status_code == 200, response.body
    assert all("error" not in result for result in json.loads(response.body)["results"]), response.body


def dead_letters(h: Harness) -> int:
    return h.depth(h.rt.dead_letters.url)


# --- the semaphore: cap reached and freed; a dead slot reclaimed after its bound -------------


def test_a_cap_refuses_a_slot_while_it_is_full_and_gives_it_once_one_is_released(runtime, clock) -> None:
    semaphore, item = Semaphore(runtime.flow), concurrency_item("export")
    expiry = int(clock.now * 1000) + 60_000
    semaphore.acquire(item, "a", 2, expiry)
    semaphore.acquire(item, "b", 2, expiry)
    with pytest.raises(CapReached) as full:
        semaphore.acquire(item, "c", 2, expiry)
    assert set(full.value.slots) == {"a", "b"}
    assert semaphore.release(item, "a")
    semaphore.acquire(item, "c", 2, expiry)
    assert set(runtime.flow.get(item)["slots"]) == {"b", "c"}
    assert not semaphore.release(item, "a")  # given back once only


def test_running_counts_the_live_slots_of_a_type_s_cap_and_not_the_expired_ones(runtime, clock) -> None:
    from chalicelib.flow.concurrency import running

    semaphore, item = Semaphore(runtime.flow), concurrency_item("export")
    assert running(runtime.flow, "export") == 0
    semaphore.acquire(item, "short", 3, int(clock.now * 1000) + 10_000)
    semaphore.acquire(item, "long", 3, int(clock.now * 1000) + 60_000)
    assert running(runtime.flow, "export") == 2
    clock.advance(10)
    assert running(runtime.flow, "export") == 1  # a dead slot is not running, reclaimed or not


def test_a_dead_holder_s_slot_is_reclaimed_once_its_expiry_passes_and_not_before(runtime, clock) -> None:
    semaphore, item = Semaphore(runtime.flow), concurrency_item("export", "customer-1")
    semaphore.acquire(item, "dead", 1, int(clock.now * 1000) + 60_000)  # its consumer dies holding it
    clock.advance(59.9)
    with pytest.raises(CapReached):
        semaphore.acquire(item, "next", 1, int(clock.now * 1000) + 60_000)
    clock.advance(0.1)  # the dead-slot bound: one slot length after it was taken
    semaphore.acquire(item, "next", 1, int(clock.now * 1000) + 60_000)
    assert set(runtime.flow.get(item)["slots"]) == {"next"}


def test_a_capped_type_defers_the_attempt_beyond_its_cap_and_its_slot_is_freed_after_the_outcome(h) -> None:
    running, peak, lock = [0], [0], threading.Lock()
    renewals = Renewals(h.sqs)
    # The admitted two run together, and hold their slots until the third has been deferred.
    together: list[threading.Barrier | None] = [threading.Barrier(2, timeout=5)]

    def work(payload: dict[str, Any], context: Any) -> str:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        if together[0] is not None:
            together[0].wait()
            renewals.seen.wait(5)
        with lock:
            running[0] -= 1
        return "ok"

    h.rt.registry.register(TaskType("export", work, concurrency=2))
    publish_batch(h, [{"id": f"e{n}", "type": "export", "payload": {}} for n in range(3)])
    h.deliver()
    assert peak[0] == 2
    assert sum(renewals.deferrals.values()) == 1
    (deferred,) = renewals.deferrals
    assert h.task(deferred)["status"] == "PENDING" and h.task(deferred)["attempts"] == 0
    assert runtime_slots(h, "export") == {}  # both slots given back after their outcomes
    together[0] = None
    h.deliver()
    assert h.task(deferred)["status"] == "COMPLETED" and h.task(deferred)["attempts"] == 1


def runtime_slots(h: Harness, type_name: str) -> dict[str, Any]:
    return dict((h.rt.flow.get(concurrency_item(type_name)) or {}).get("slots") or {})


# --- rates: window boundaries and burst --------------------------------------------------------


def starts_in_any_window(times_ms: list[int], window_ms: int) -> int:
    """The most starts in any half-open window of `window_ms`."""
    times = sorted(times_ms)
    return max(sum(1 for t in times if start <= t < start + window_ms) for start in times)


@pytest.mark.parametrize("burst", [0, 2])
def test_a_rate_allows_n_plus_burst_starts_in_any_window_and_the_next_at_the_boundary(runtime, clock, burst) -> None:
    gcra, rate = Gcra(runtime.flow), parse_rate("4/second")
    item = rate_item("partner")
    t0 = int(clock.now * 1000)
    started: list[int] = []
    for _ in range(burst + 1):  # b + 1 at once, each counted at the time it conformed
        started.append(gcra.take(item, rate, burst).at_ms)
    assert started == [t0] * (burst + 1)
    with pytest.raises(RateExceeded) as early:
        gcra.take(item, rate, burst)
    assert early.value.wait_ms == rate.interval_ms  # the next conforming time, exactly
    # Try every 10 ms for three seconds: what conforms is at most n + b in any one-second window.
    for _ in range(300):
        clock.advance(0.01)
        try:
            taken = gcra.take(item, rate, burst)
        except RateExceeded:
            continue
        assert taken.at_ms == int(clock.now * 1000)
        started.append(taken.at_ms)
    assert starts_in_any_window(started, 1000) == 4 + burst
    assert started[burst + 1] - t0 == 250  # the first after the burst, at the boundary T
    # Another container, with no cached view, is held to the same state (its first write is refused).
    other = Gcra(runtime.flow)
    with pytest.raises(RateExceeded):
        for _ in range(burst + 2):
            other.take(item, rate, burst)


def test_a_start_whose_task_was_not_acquired_is_refunded_unless_another_came_since(runtime, clock) -> None:
    gcra, rate, item = Gcra(runtime.flow), parse_rate("1/minute"), rate_item("partner")
    written = gcra.take(item, rate, 0).tat
    gcra.refund(item, rate, written)
    gcra.take(item, rate, 0)  # the refunded turn is taken again
    with pytest.raises(RateExceeded):
        gcra.take(item, rate, 0)


def test_a_rate_limited_type_defers_its_second_start_and_runs_it_once_the_rate_allows(h) -> None:
    h.rt.registry.register(TaskType("partner", lambda payload, context: "ok", rate_limit="1/minute"))
    renewals = Renewals(h.sqs)
    publish_batch(h, [{"id": f"p{n}", "type": "partner", "payload": {}} for n in range(2)])
    h.deliver()
    (deferred,) = renewals.deferrals
    assert 60 <= renewals.delays[0] <= 120  # the next conforming time, jittered up to twice it
    h.deliver()
    assert h.task(deferred)["attempts"] == 0  # still early: deferred again, from the cache alone
    h.clock.advance(60)
    h.deliver()
    assert h.task(deferred)["status"] == "COMPLETED"


# --- pause and resume --------------------------------------------------------------------------


def test_a_pause_stops_new_starts_once_the_cached_view_sees_it_running_ones_finish_and_resume_restarts(h) -> None:
    def work(payload: dict[str, Any], context: Any) -> str:
        h.rt.pauses.pause("mail", by="ops")  # paused while this attempt runs: it still finishes
        return "ok"

    h.rt.registry.register(TaskType("mail", work))
    renewals = Renewals(h.sqs)
    publish_batch(h, [{"id": "m0", "type": "mail", "payload": {}}])
    h.deliver()
    assert h.task("m0")["status"] == "COMPLETED"
    publish_batch(h, [{"id": f"m{n}", "type": "mail", "payload": {}} for n in (1, 2)])
    h.clock.advance(h.rt.pauses.refresh_seconds)  # the container's view now sees the pause
    h.deliver()
    assert [h.task(f"m{n}")["attempts"] for n in (1, 2)] == [0, 0]
    assert set(renewals.deferrals) == {"m1", "m2"} and max(renewals.delays) <= 60
    h.rt.pauses.resume("mail", by="ops")
    h.deliver()
    assert [h.task(f"m{n}")["status"] for n in (1, 2)] == ["COMPLETED", "COMPLETED"]


# --- the backlog of a type capped at 1 ---------------------------------------------------------


def test_a_type_capped_at_1_drains_its_backlog_one_at_a_time_with_nothing_dead_lettered(h) -> None:
    running, peak, lock = [0], [0], threading.Lock()

    def work(payload: dict[str, Any], context: Any) -> str:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        threading.Event().wait(0.005)
        with lock:
            running[0] -= 1
        return "ok"

    h.rt.registry.register(TaskType("single", work, concurrency=1))
    renewals = Renewals(h.sqs)
    backlog = 40
    publish_batch(h, [{"id": f"s{n}", "type": "single", "payload": {}} for n in range(backlog)])
    receive_counts: list[int] = []
    for _ in range(2_000):
        delivery = h.deliver()
        if not delivery.records:
            break
        receive_counts += [int(r["attributes"]["ApproximateReceiveCount"]) for r in delivery.records]
    views = [h.task(f"s{n}") for n in range(backlog)]
    assert [view["status"] for view in views] == ["COMPLETED"] * backlog
    assert {view["attempts"] for view in views} == {1}
    assert dead_letters(h) == 0 and peak[0] == 1
    # Deferred more often than the queue's maxReceiveCount allows receives, yet each message was
    # received once: every deferral started a fresh message.
    assert max(renewals.deferrals.values()) > h.rt.settings.MAX_ATTEMPTS
    assert set(receive_counts) == {1}


def test_a_renewed_message_that_is_dead_lettered_is_still_the_task_s_own_and_is_queued_again(h) -> None:
    h.rt.registry.register(TaskType("single", lambda payload, context: "ok", concurrency=1))
    Renewals(h.sqs)
    h.rt.flow.update(concurrency_item("single"), "SET #slots = :slots", {":slots": {"x": 2**52}})  # held
    publish_batch(h, [{"id": "r1", "type": "single", "payload": {}}])
    h.deliver()  # renewed
    (renewed,) = lambda_records(h.sqs, h.rt.tasks_queue.url)
    assert renewed["messageAttributes"]["taskMessageId"]["stringValue"] == item_of(h, "r1")["lastMessageId"]
    h.sqs.send_message(
        QueueUrl=h.rt.dead_letters.url,
        MessageBody=renewed["body"],
        MessageAttributes={
            name: {"DataType": "String", "StringValue": value["stringValue"]}
            for name, value in renewed["messageAttributes"].items()
        },
    )
    h.deliver_dead_letters()
    assert item_of(h, "r1")["redrives"] == 1  # queued again, not taken for a stray copy


def item_of(h: Harness, task_id: str) -> dict[str, Any]:
    return h.rt.store.get_item(task_id) or {}


# --- fairness between a heavy and a light key ----------------------------------------------------


def drain_times(
    runtime: Any, clock: FakeClock, heavy: int, light: int, seed: int, seconds: float = 2.0
) -> dict[str, float]:
    """A discrete-event run of the real gate (its items in moto): every task arrives at 0, runs
    `seconds` once admitted, and a deferred one comes back after the gate's delay. Returns when
    each key's last task finished, relative to the start."""
    task_type = TaskType("sync", lambda payload, context: "ok", concurrency=4, concurrency_key="c", key_concurrency=1)
    gate = Gate.build(runtime.flow, Pauses(runtime.flow, clock=clock), 60, random.Random(seed))
    t0 = clock.now
    events: list[tuple[float, int, str, Any]] = []
    for n in range(heavy):
        events.append((t0, n, "arrive", (Task(id=f"h{n}", payload={"c": "heavy"}), 0)))
    for n in range(light):
        events.append((t0, heavy + n, "arrive", (Task(id=f"l{n}", payload={"c": "light"}), 0)))
    heapq.heapify(events)
    finished: dict[str, float] = {}
    seq = len(events)
    while events:
        at, _, kind, value = heapq.heappop(events)
        clock.now = at
        seq += 1
        if kind == "done":
            task, admission = value
            gate.release(admission, seconds * 1000)
            key = task.payload["c"]
            finished[key] = max(finished.get(key, 0.0), at - t0)
            continue
        task, deferrals = value
        try:
            admission = gate.admit(task, task_type, f"holder-{seq}")
        except Deferred as deferred:
            heapq.heappush(events, (at + gate.delay_seconds(deferred, deferrals), seq, "arrive", (task, deferrals + 1)))
            continue
        heapq.heappush(events, (at + seconds, seq, "done", (task, admission)))
    return finished


def test_a_light_key_drains_as_fast_beside_a_heavy_key_s_backlog_as_alone(runtime, clock) -> None:
    # Small enough for every run of the suite; docs/architecture.md quotes a run with 200 heavy tasks.
    seeds = range(2)
    alone = [drain_times(runtime, clock, heavy=0, light=5, seed=seed)["light"] for seed in seeds]
    beside = [drain_times(runtime, clock, heavy=40, light=5, seed=seed) for seed in seeds]
    light = [run["light"] for run in beside]
    # Five 2 s tasks one at a time take 10 s; the deferrals' spread adds to it, the heavy key does not.
    assert min(light) >= 10 and sum(light) <= sum(alone) * 1.5 + 5 * len(seeds), (alone, light)
    # 40 tasks of 2 s, one at a time: the heavy key is held to its own cap, never the light key's.
    assert min(run["heavy"] for run in beside) >= 80


# --- key validation ------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["", "k" * 129, "é" * 65, "a\u202eb", "a\nb", 5, None, ["k"]])
def test_a_publish_with_a_key_that_breaks_the_rule_answers_400_naming_key(h, key) -> None:
    body = {"id": "k1", "payload": {"simulation": {"failureChance": 0}}, "key": key}
    response = h.client.http.post("/publish", body=json.dumps(body), headers=JSON)
    assert response.status_code == 400, response.body
    assert [d["field"] for d in json.loads(response.body)["error"]["details"]] == ["key"]
    batch = h.client.http.post("/publish/batch", body=json.dumps({"tasks": [body]}), headers=JSON)
    (result,) = json.loads(batch.body)["results"]
    assert [d["field"] for d in result["error"]["details"]] == ["key"]


def test_post_tasks_takes_its_key_as_a_query_parameter_and_refuses_a_bad_one_naming_key(h) -> None:
    bad = h.client.http.post("/tasks?key=" + "k" * 129, body=json.dumps({}), headers=JSON)
    assert bad.status_code == 400 and json.loads(bad.body)["error"]["details"][0]["field"] == "key"
    good = h.client.http.post("/tasks?key=customer-1", body=json.dumps({}), headers=JSON)
    assert good.status_code == 201
    assert h.task(json.loads(good.body)["id"])["key"] == "customer-1"


def test_an_explicit_key_travels_with_the_message_is_stored_and_wins_over_the_payload_path(h) -> None:
    h.rt.registry.register(
        TaskType("sync", lambda payload, context: "ok", concurrency_key="customer.id", key_concurrency=1)
    )
    h.rt.flow.update(concurrency_item("sync", "vip"), "SET #slots = :slots", {":slots": {"x": 2**52}})  # full
    renewals = Renewals(h.sqs)
    publish_batch(
        h,
        [
            {"id": "k-explicit", "type": "sync", "payload": {"customer": {"id": "c1"}}, "key": "vip"},
            {"id": "k-path", "type": "sync", "payload": {"customer": {"id": "vip"}}},
            {"id": "k-other", "type": "sync", "payload": {"customer": {"id": "c2"}}},
        ],
    )
    h.deliver()
    assert set(renewals.deferrals) == {"k-explicit", "k-path"}  # both counted under the key "vip"
    assert h.task("k-other")["status"] == "COMPLETED"
    assert item_of(h, "k-explicit")["key"] == "vip" and h.task("k-explicit")["key"] == "vip"
    assert "key" not in item_of(h, "k-path")


# --- what a plain type pays ---------------------------------------------------------------------


def test_a_plain_type_makes_no_flow_request_per_task_beyond_the_cached_pause_view(h) -> None:
    calls: Counter[tuple[str, str]] = Counter()

    def count(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls[(model.name, params.get("TableName") or params.get("QueueUrl", "").rsplit("/", 1)[-1])] += 1

    publish_batch(h, [{"id": f"plain{n}", "payload": {"simulation": {"failureChance": 0}}} for n in range(10)])
    records = lambda_records(h.sqs, h.rt.tasks_queue.url)
    assert len(records) == 10
    h.rt.store.client.meta.events.register("before-parameter-build", count)
    h.sqs.meta.events.register("before-parameter-build", count)
    h.client.lambda_.invoke("process_tasks", {"Records": records})
    h.clock.advance(1)
    h.client.lambda_.invoke("process_tasks", {"Records": []})
    assert calls == {
        ("UpdateItem", h.rt.settings.TASKS_TABLE): 20,  # acquire and complete, as before the gate
        ("GetItem", h.rt.settings.FLOW_TABLE): 1,  # the pause view, once for the container
    }, calls


def test_a_capped_task_whose_flow_table_does_not_answer_waits_renewed_rather_than_running_unchecked(h) -> None:
    from tests.integration.faults import inject_errors

    h.rt.registry.register(TaskType("export", lambda payload, context: "ok", concurrency=1))
    renewals = Renewals(h.sqs)
    publish_batch(h, [{"id": "x1", "type": "export", "payload": {}}])
    with inject_errors(h.rt.flow._client, "UpdateItem", status=400, code="ValidationException", times=1):
        h.deliver()
    assert renewals.deferrals == {"x1": 1} and h.task("x1")["attempts"] == 0
    h.deliver()
    assert h.task("x1")["status"] == "COMPLETED" and runtime_slots(h, "export") == {}


def test_a_heartbeating_type_s_slot_lasts_its_timeout_and_a_margin_and_a_plain_one_s_its_lease() -> None:
    from chalicelib.flow.concurrency import SLOT_MARGIN_SECONDS, slot_seconds

    long = TaskType("long", lambda payload, context: "ok", timeout_seconds=600, heartbeat_seconds=10, concurrency=1)
    plain = TaskType("short", lambda payload, context: "ok", concurrency=1)
    assert slot_seconds(long, 60) == 600 + SLOT_MARGIN_SECONDS
    assert slot_seconds(plain, 60) == 60


def test_what_the_gate_took_is_given_back_when_the_lease_is_refused(h) -> None:
    h.rt.registry.register(TaskType("export", lambda payload, context: "ok", concurrency=1, rate_limit="1/hour"))
    publish_batch(h, [{"id": "busy", "type": "export", "payload": {}}, {"id": "next", "type": "export", "payload": {}}])
    h.rt.store.acquire(Task(id="busy", type="export", payload={}), "elsewhere", "m-0", 3, 60)  # leased elsewhere
    records = lambda_records(h.sqs, h.rt.tasks_queue.url)
    busy = [r for r in records if json.loads(r["body"])["id"] == "busy"]
    with pytest.raises(BatchIncomplete):  # admitted, then refused the lease: it comes back later
        h.client.lambda_.invoke("process_tasks", {"Records": busy})
    assert runtime_slots(h, "export") == {}
    follow = [r for r in records if json.loads(r["body"])["id"] == "next"]
    h.client.lambda_.invoke("process_tasks", {"Records": follow})
    assert h.task("next")["status"] == "COMPLETED"  # the refunded start, and the freed slot, were its own
