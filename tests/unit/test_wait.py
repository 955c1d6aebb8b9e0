"""The long-poll's schedule and loop (chalicelib/publish/wait.py): what a wait reads, and when it stops."""

from __future__ import annotations

import itertools

import pytest

from chalicelib.publish.wait import DEFAULT_SCHEDULE, MAX_WAIT_SECONDS, PollSchedule, WaitClock, wait_for


class StillClock:
    """A clock that moves only when told; its sleep records the pause and moves it by `moves` of it."""

    def __init__(self, moves: float = 1.0) -> None:
        self.now = 0.0
        self.moves = moves
        self.pauses: list[float] = []

    def clock(self) -> WaitClock:
        return WaitClock(now=lambda: self.now, sleep=self.sleep)

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds * self.moves


def test_the_pauses_start_at_a_tenth_of_a_second_and_double_to_a_quarter() -> None:
    assert list(itertools.islice(DEFAULT_SCHEDULE.pauses(), 5)) == [0.1, 0.2, 0.25, 0.25, 0.25]


def test_a_full_wait_makes_at_most_82_reads_4_a_second_once_the_pauses_are_capped() -> None:
    assert DEFAULT_SCHEDULE.max_reads(MAX_WAIT_SECONDS) == 82
    assert DEFAULT_SCHEDULE.max_reads(MAX_WAIT_SECONDS) - DEFAULT_SCHEDULE.max_reads(MAX_WAIT_SECONDS - 1) == 4
    assert DEFAULT_SCHEDULE.max_reads(0) == 1


def test_a_done_first_read_is_answered_without_a_pause() -> None:
    time = StillClock()
    answer = wait_for(lambda: pytest.fail("read again"), lambda value: value == "done", "done", 20, time.clock())
    assert answer == "done"
    assert time.pauses == []


def test_the_loop_answers_the_read_that_found_it_done() -> None:
    time, answers = StillClock(), iter(["PENDING", "PROCESSING", "COMPLETED", "never read"])

    assert wait_for(lambda: next(answers), lambda s: s == "COMPLETED", "PENDING", 20, time.clock()) == "COMPLETED"
    assert time.pauses == [0.1, 0.2, 0.25]


def test_the_last_pause_is_cut_to_the_deadline_and_a_read_is_made_there() -> None:
    time, reads = StillClock(), []

    def read() -> int:
        reads.append(time.now)
        return len(reads)

    wait_for(read, lambda n: False, 0, 1, time.clock())

    assert time.now == pytest.approx(1.0) and reads[-1] == pytest.approx(1.0)
    assert time.pauses[-1] == pytest.approx(0.2)  # 0.1 + 0.2 + 0.25 + 0.25, then what is left
    assert len(reads) + 1 == DEFAULT_SCHEDULE.max_reads(1)


def test_a_clock_that_does_not_move_still_stops_the_wait_at_its_most_reads() -> None:
    time, reads = StillClock(moves=0), []

    wait_for(lambda: reads.append(1), lambda _: False, None, MAX_WAIT_SECONDS, time.clock())

    assert len(reads) + 1 == DEFAULT_SCHEDULE.max_reads(MAX_WAIT_SECONDS)


def test_a_read_that_fails_during_the_wait_ends_it_with_its_error() -> None:
    def read() -> str:
        raise TimeoutError("the table did not answer")

    with pytest.raises(TimeoutError):
        wait_for(read, lambda _: False, "PENDING", 5, StillClock().clock())


def test_a_slower_schedule_makes_fewer_reads() -> None:
    assert PollSchedule(first_pause=0.5, max_pause=1.0).max_reads(20) < DEFAULT_SCHEDULE.max_reads(20)
