"""One SQS queue: send (one or a batch), and delete or change visibility in batches."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import QueueError

if TYPE_CHECKING:
    from chalicelib.operate.throughput import ThroughputPlan
    from chalicelib.operate.views import QueueDepth, Throughput

logger = logging.getLogger(__name__)

SQS_BATCH_LIMIT = 10
# SendMessageBatch refuses a call whose bodies add up to more than this (the queue's
# MaximumMessageSize default, and the batch limit whatever that attribute says).
SQS_BATCH_BYTES = 256 * 1024


@dataclass(frozen=True)
class Outgoing:
    """One message for `Queue.send_batch`."""

    body: str
    delay_seconds: int = 0
    attributes: Mapping[str, str] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """What SQS counts against a batch's size: the body, and each attribute's name, type and value."""
        extra = sum(len(f"{name}String{value}".encode()) for name, value in self.attributes.items())
        return len(self.body.encode("utf-8")) + extra


def _message_attributes(attributes: Mapping[str, str]) -> dict[str, Any]:
    return {name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()}


def batch_chunks(messages: Sequence[Outgoing]) -> list[list[int]]:
    """The messages' indexes, in order, cut into SendMessageBatch calls of at most
    SQS_BATCH_LIMIT entries and SQS_BATCH_BYTES of bodies (a larger message goes alone)."""
    chunks: list[list[int]] = []
    size = 0
    for index, message in enumerate(messages):
        if not chunks or len(chunks[-1]) == SQS_BATCH_LIMIT or size + message.size > SQS_BATCH_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(index)
        size += message.size
    return chunks


@dataclass(frozen=True)
class VisibilityChange:
    message_id: str
    receipt_handle: str
    seconds: int


class Queue:
    """An SQS queue known by name; its URL is looked up once, on first use."""

    def __init__(self, client: Any, name: str) -> None:
        self._client = client
        self.name = name
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            response = self._call("get_queue_url", QueueName=self.name)
            self._url = str(response["QueueUrl"])
        return self._url

    def send(self, body: str, attributes: dict[str, str] | None = None, delay_seconds: int = 0) -> str:
        """Send one message, hidden for `delay_seconds` (at most 900), and return its MessageId.

        Raises:
            QueueError: SQS refused it after botocore's retries.
        """
        kwargs: dict[str, Any] = {"QueueUrl": self.url, "MessageBody": body}
        if delay_seconds:
            kwargs["DelaySeconds"] = delay_seconds
        if attributes:
            kwargs["MessageAttributes"] = _message_attributes(attributes)
        return str(self._call("send_message", **kwargs)["MessageId"])

    def send_batch(self, messages: Sequence[Outgoing], executor: Executor | None = None) -> list[str | None]:
        """Send messages with SendMessageBatch, its calls run on `executor` if given (else one by one).

        Returns each message's MessageId, in order, or None for a message that was not sent:
        reported in `Failed`, left out of the answer, or in a call that failed after botocore's
        retries. Raises nothing for a failed send; the caller decides what a None means.
        """
        url = self.url  # looked up once, before the calls run side by side

        def send(chunk: list[int]) -> dict[int, str]:
            entries = [self._batch_entry(index, messages[index]) for index in chunk]
            try:
                response = self._call("send_message_batch", QueueUrl=url, Entries=entries)
            except QueueError:
                logger.exception("send_message_batch failed for %d messages", len(chunk))
                return {}
            for failure in response.get("Failed", []):
                logger.error("send_message_batch refused entry %s: %s", failure.get("Id"), failure.get("Message"))
            return {int(entry["Id"]): str(entry["MessageId"]) for entry in response.get("Successful", [])}

        chunks = batch_chunks(messages)
        sent: dict[int, str] = {}
        for answer in executor.map(send, chunks) if executor else map(send, chunks):
            sent.update(answer)
        return [sent.get(index) for index in range(len(messages))]

    @staticmethod
    def _batch_entry(index: int, message: Outgoing) -> dict[str, Any]:
        entry: dict[str, Any] = {"Id": str(index), "MessageBody": message.body}
        if message.delay_seconds:
            entry["DelaySeconds"] = message.delay_seconds
        if message.attributes:
            entry["MessageAttributes"] = _message_attributes(message.attributes)
        return entry

    def depth(self) -> QueueDepth:
        """The queue's approximate depth, from one GetQueueAttributes request.

        Raises:
            QueueError: SQS did not answer.
        """
        names = {
            "visible": "ApproximateNumberOfMessages",
            "inFlight": "ApproximateNumberOfMessagesNotVisible",
            "delayed": "ApproximateNumberOfMessagesDelayed",
        }
        attributes = self._call("get_queue_attributes", QueueUrl=self.url, AttributeNames=list(names.values()))
        values = attributes.get("Attributes", {})
        from chalicelib.operate.views import QueueDepth  # only /stats asks: not on a consumer's cold start

        return QueueDepth(**{field: int(values.get(name, 0)) for field, name in names.items()}, oldestAgeSeconds=None)

    def delete(self, receipts: dict[str, str]) -> list[str]:
        """Delete messages by {message id: receipt handle}; returns the ids that were not deleted."""
        entries = [{"Id": str(n), "ReceiptHandle": handle} for n, handle in enumerate(receipts.values())]
        return self._in_batches("delete_message_batch", entries, list(receipts))

    def change_visibility(self, changes: list[VisibilityChange]) -> list[str]:
        """Set each message's visibility timeout; returns the ids that were not changed."""
        entries = [
            {"Id": str(n), "ReceiptHandle": change.receipt_handle, "VisibilityTimeout": change.seconds}
            for n, change in enumerate(changes)
        ]
        return self._in_batches("change_message_visibility_batch", entries, [c.message_id for c in changes])

    def _in_batches(self, operation: str, entries: list[dict[str, Any]], message_ids: list[str]) -> list[str]:
        failed: list[str] = []
        for start in range(0, len(entries), SQS_BATCH_LIMIT):
            chunk = entries[start : start + SQS_BATCH_LIMIT]
            try:
                response = self._call(operation, QueueUrl=self.url, Entries=chunk)
            except QueueError:
                logger.exception("%s failed for %d messages", operation, len(chunk))
                failed += [message_ids[int(entry["Id"])] for entry in chunk]
                continue
            failed += [message_ids[int(entry["Id"])] for entry in response.get("Failed", [])]
        return failed

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        try:
            return getattr(self._client, operation)(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise QueueError(f"SQS {operation} on {self.name} failed: {exc}") from exc


@dataclass(frozen=True)
class CloudWatchFigures:
    """What `GET /stats` reads from CloudWatch: queue ages by queue name, metric sums by name, and
    the throughput (None when CloudWatch did not answer, or none was asked).

    A figure without a datapoint (a new queue, a quiet day, or offline) is left out.
    """

    ages: dict[str, float]
    sums: dict[str, float]
    throughput: Throughput | None = None
    read_at: float = 0.0  # epoch seconds of the request these figures came from


class QueueAges:
    """The age of each queue's oldest message (a CloudWatch metric, not a queue attribute), the
    day's sums of a few of taskproc's own metrics and the throughput (chalicelib/operate/throughput.py),
    in one GetMetricData request."""

    METRIC = "ApproximateAgeOfOldestMessage"
    # The metric has one-minute resolution: asking more often buys nothing and costs
    # GetMetricData requests (a console refreshes `GET /stats` every few seconds).
    CACHE_SECONDS = 60.0
    AGE_WINDOW_SECONDS = 600
    SUM_WINDOW_SECONDS = 86_400
    # What one age query (Period 60 over the day) and one sum query (Period 3600) return at most.
    AGE_POINTS = SUM_WINDOW_SECONDS // 60 + 1
    SUM_POINTS = SUM_WINDOW_SECONDS // 3600 + 1

    def __init__(
        self,
        client_factory: Callable[[], Any],
        clock: Callable[[], float] = time.time,
        cache_seconds: float = CACHE_SECONDS,
        where: str = "CloudWatch",
    ) -> None:
        self.where = where  # what answers: CloudWatch, or offline the embedded endpoint's metrics sink
        self.cache_seconds = cache_seconds
        self._client_factory = client_factory
        self._client: Any = None
        self._clock = clock
        self._cached: tuple[float, tuple[Any, ...], CloudWatchFigures] | None = None

    def oldest_ages(self, queue_names: list[str]) -> dict[str, float]:
        """Seconds, by queue name, from the latest datapoint of the last 10 minutes. Never raises."""
        return self.read(queue_names).ages

    def read(
        self,
        queue_names: list[str],
        summed: list[str] | None = None,
        namespace: str = "",
        stage: str = "",
        throughput: ThroughputPlan | None = None,
    ) -> CloudWatchFigures:
        """The queues' ages, the sums over the last 24 hours of the metrics `summed` (in `namespace`,
        dimension `stage`), and `throughput`'s figures. Never raises: the figures are optional."""
        summed = summed or []
        now = self._clock()
        scopes = tuple(throughput.scopes) if throughput else ()
        key = (tuple(queue_names), tuple(summed), namespace, stage, scopes)
        if self._cached and self._cached[1] == key and now - self._cached[0] < self.cache_seconds:
            return self._cached[2]
        if self._client is None:
            self._client = self._client_factory()
        queries = [self._age_query(n, name) for n, name in enumerate(queue_names)]
        queries += [self._sum_query(n, name, namespace, stage) for n, name in enumerate(summed)]
        window = throughput.window(now) if throughput else None
        if throughput:
            queries += throughput.queries()
        # With the throughput, the request ends at the end of the current minute (chalicelib/operate/throughput.py).
        end = window.end if window else now
        start = end - (self.SUM_WINDOW_SECONDS if summed or throughput else self.AGE_WINDOW_SECONDS)
        try:
            response = self._client.get_metric_data(
                MetricDataQueries=queries,
                StartTime=datetime.fromtimestamp(start, UTC),
                EndTime=datetime.fromtimestamp(end, UTC),
                ScanBy="TimestampDescending",
            )
        except (ClientError, BotoCoreError):
            logger.warning("CloudWatch did not answer; its figures are left out", exc_info=True)
            return CloudWatchFigures({}, {}, None, now)
        ages: dict[str, float] = {}
        sums: dict[str, float] = {}
        points: dict[str, list[tuple[datetime, float]]] = {}
        oldest_age_point = datetime.fromtimestamp(now - self.AGE_WINDOW_SECONDS, UTC)
        for result in response.get("MetricDataResults", []):
            values = result.get("Values") or []
            stamps = result.get("Timestamps") or []
            query_id = result["Id"]
            kind = query_id[0]
            if kind == "q" and values:
                if not stamps or stamps[0] >= oldest_age_point:
                    ages[queue_names[int(query_id[1:])]] = float(values[0])
            elif kind == "s" and values:
                sums[summed[int(query_id[1:])]] = float(sum(values))
            else:
                points[query_id] = [(stamp, float(value)) for stamp, value in zip(stamps, values, strict=False)]
        assembled = throughput.assemble(points, window) if throughput and window else None
        figures = CloudWatchFigures(ages, sums, assembled, now)
        self._cached = (now, key, figures)
        return figures

    def _age_query(self, n: int, queue_name: str) -> dict[str, Any]:
        return {
            "Id": f"q{n}",
            "MetricStat": {
                "Metric": {
                    "Namespace": "AWS/SQS",
                    "MetricName": self.METRIC,
                    "Dimensions": [{"Name": "QueueName", "Value": queue_name}],
                },
                "Period": 60,
                "Stat": "Maximum",
            },
        }

    def _sum_query(self, n: int, metric: str, namespace: str, stage: str) -> dict[str, Any]:
        return {
            "Id": f"s{n}",
            "MetricStat": {
                "Metric": {
                    "Namespace": namespace,
                    "MetricName": metric,
                    "Dimensions": [{"Name": "stage", "Value": stage}],
                },
                "Period": 3600,
                "Stat": "Sum",
            },
        }
