"""Pausing and resuming a type in the flow table: the write, its history, and the consumers' cached view."""

from __future__ import annotations

from chalicelib.flow.pause import PAUSES_KEY, Pauses


def test_a_pause_is_seen_by_a_new_reader_and_by_a_cached_one_once_its_view_is_refreshed(runtime, clock) -> None:
    consumer = Pauses(runtime.flow, refresh_seconds=5, clock=clock)
    assert not consumer.is_paused("checksum")  # read now, cached for 5 s
    pause = runtime.pauses.pause("checksum", by="arn:aws:iam::1:user/ops")
    assert pause.by == "arn:aws:iam::1:user/ops"
    assert Pauses(runtime.flow, clock=clock).is_paused("checksum")
    assert not consumer.is_paused("checksum")  # its view is at most 5 s old
    clock.advance(5)
    assert consumer.is_paused("checksum")
    assert not consumer.is_paused("simulate")


def test_pause_twice_keeps_the_first_and_resume_removes_it_each_change_in_the_history(runtime, clock) -> None:
    first = runtime.pauses.pause("checksum", by="alice")
    clock.advance(1)
    again = runtime.pauses.pause("checksum", by="bob")
    assert again == first
    runtime.pauses.pause("simulate", by="bob")
    runtime.pauses.resume("checksum", by="carol")
    runtime.pauses.resume("checksum", by="carol")
    assert set(runtime.pauses.all()) == {"simulate"}
    history = runtime.pauses.history()
    assert [(e["action"], e["type"], e["by"], e.get("changed", True)) for e in history] == [
        ("pause", "checksum", "alice", True),
        ("pause", "checksum", "bob", False),
        ("pause", "simulate", "bob", True),
        ("resume", "checksum", "carol", True),
        ("resume", "checksum", "carol", False),
    ]
    assert runtime.flow.get(PAUSES_KEY) is not None


def test_a_type_name_is_data_in_the_expression_never_a_path(runtime) -> None:
    odd = "a-b_c"
    runtime.pauses.pause(odd, by="x")
    assert set(runtime.pauses.all()) == {odd}
