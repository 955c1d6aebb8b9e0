"""A PNG for people who would rather look than read: latency histogram and status timeline."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from tools.load.results import TaskResult


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def draw(results: list[TaskResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no screen needed
    import matplotlib.pyplot as plt

    finished = [r for r in results if r.finished_at]
    start = min((_time(r.created_at) for r in results), default=None)
    figure, (histogram, timeline) = plt.subplots(1, 2, figsize=(12, 4.5))

    for status, colour in (("COMPLETED", "tab:green"), ("FAILED", "tab:red")):
        latencies = [r.latency_seconds for r in finished if r.status == status and r.latency_seconds is not None]
        if latencies:
            histogram.hist(latencies, bins=30, alpha=0.7, color=colour, label=f"{status} ({len(latencies)})")
    histogram.set_title("publish to terminal")
    histogram.set_xlabel("seconds")
    histogram.set_ylabel("tasks")
    histogram.legend()

    if start is not None:
        for status, colour in (("COMPLETED", "tab:green"), ("FAILED", "tab:red")):
            times = sorted((_time(r.finished_at) - start).total_seconds() for r in finished if r.status == status)
            timeline.step(times, range(1, len(times) + 1), where="post", color=colour, label=status)
    timeline.set_title("terminal tasks over time")
    timeline.set_xlabel("seconds since the first publish")
    timeline.set_ylabel("tasks (cumulative)")
    timeline.legend()

    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
