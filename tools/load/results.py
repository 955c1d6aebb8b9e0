"""What the load test learns of one task: shared by the run and its chart, which import nothing of each other."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TaskResult:
    id: str
    status: str
    attempts: int
    max_attempts: int
    created_at: str
    finished_at: str | None
    latency_seconds: float | None
    last_error: str | None
