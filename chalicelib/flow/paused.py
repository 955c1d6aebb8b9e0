"""The pause policy: a paused type starts no attempt (chalicelib/flow/pause.py keeps the word).

    POST /types/checksum/pause   ->  checksum's next deliveries are deferred, within 5 s
    POST /types/checksum/resume  ->  they start again at their next look, within 65 s

It applies to every type, because any type may be paused: its cost is the view's one cached
read per container every `refresh_seconds`, nothing per attempt. A deferred task looks again
after 5 s, then less often, but at least once a minute (`MAX_WAIT_MS`), so a resumed type starts
within a minute and the view's refresh. What it cannot promise: attempts acquired before a
container's view saw the pause still run (at most `refresh_seconds` of them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from chalicelib.errors import StoreError
from chalicelib.flow.pause import Pauses
from chalicelib.flow.policy import Attempt, Deferred, Held

if TYPE_CHECKING:
    from chalicelib.registry import TaskType

# A paused task looks again at least this often, so that a resume takes effect within it.
MAX_WAIT_MS = 60_000


class PausePolicy:
    name: ClassVar[str] = "paused"
    options: ClassVar[frozenset[str]] = frozenset()  # an operator's word, not an option

    def __init__(self, pauses: Pauses) -> None:
        self._pauses = pauses

    def applies(self, task_type: TaskType) -> bool:
        return True

    def before(self, attempt: Attempt) -> Held | None:
        wait_ms = int(self._pauses.refresh_seconds * 1000)
        try:
            paused = self._pauses.is_paused(attempt.task_type.name)
        except StoreError:
            # The operator's word cannot be read: wait for it rather than run what may be paused.
            raise Deferred("pause_unknown", wait_ms, MAX_WAIT_MS) from None
        if paused:
            raise Deferred(self.name, wait_ms, MAX_WAIT_MS)
        return None

    def after(self, held: Held, elapsed_ms: float | None) -> None:
        """Nothing to give back."""
