"""taskproc_client: publish taskproc tasks, wait for their results, and operate tasks and schedules.

    from taskproc_client import Client

    client = Client("http://127.0.0.1:8000")
    ref = client.publish("checksum", {"text": "hello"})
    print(ref.result(timeout=30)["digest"])

Installed apart from the service (`pip install ./client`); it imports nothing of the server's code.
"""

from taskproc_client.client import BATCH_SIZE, BatchResult, Client, TaskRef, new_task_id
from taskproc_client.errors import (
    Conflict,
    NoCredentials,
    NoRegion,
    NotFound,
    PayloadTooLarge,
    TaskCancelled,
    TaskFailed,
    TaskprocError,
    Throttled,
    Unauthorized,
    Unavailable,
    Unreachable,
    ValidationFailed,
    WaitTimeout,
)
from taskproc_client.models import (
    Backfill,
    BulkRetry,
    ChainStep,
    HistoryEntry,
    PublishAnswer,
    Schedule,
    SchedulePage,
    ScheduleSummary,
    Stats,
    Status,
    StuckPage,
    StuckTask,
    TaskPage,
    TaskSummary,
    TaskType,
    TaskView,
    Throughput,
    Workflow,
    WorkflowStatus,
    WorkflowThen,
)
from taskproc_client.retries import NO_RETRIES, RetryPolicy
from taskproc_client.transport import Response

__all__ = [
    "BATCH_SIZE",
    "NO_RETRIES",
    "Backfill",
    "BatchResult",
    "BulkRetry",
    "ChainStep",
    "Client",
    "Conflict",
    "HistoryEntry",
    "NoCredentials",
    "NoRegion",
    "NotFound",
    "PayloadTooLarge",
    "PublishAnswer",
    "Response",
    "RetryPolicy",
    "Schedule",
    "SchedulePage",
    "ScheduleSummary",
    "Stats",
    "Status",
    "StuckPage",
    "StuckTask",
    "TaskCancelled",
    "TaskFailed",
    "TaskPage",
    "TaskRef",
    "TaskSummary",
    "TaskType",
    "TaskView",
    "TaskprocError",
    "Throttled",
    "Throughput",
    "Unauthorized",
    "Unavailable",
    "Unreachable",
    "ValidationFailed",
    "WaitTimeout",
    "Workflow",
    "WorkflowStatus",
    "WorkflowThen",
    "new_task_id",
]
