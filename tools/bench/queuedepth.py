"""The embedded endpoint's SQS cost per call by queue depth, with one variant of the moto patch.

`python -m tools.bench.queuedepth --variant atomic|embedded` prints one JSON line: per
depth, the median wall time of SendMessage, ReceiveMessage of 10 and
DeleteMessageBatch of 10, each a real HTTP call to moto's server in this process.
Each variant runs in its own interpreter (`measure_in_subprocess`), because the
patches change moto's classes for the whole process: that is how `make bench`
shows before and after side by side in one run.

The queue is filled to its depth inside moto's memory (the messages SendMessage
would leave there), not through the API: filling 10,000 messages one call at a
time costs minutes with the unpatched scans, and it is not what is measured.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any

import boto3

VARIANTS = ("atomic", "embedded")
DEPTHS = (0, 1_000, 10_000)
ACCOUNT = "123456789012"
REGION = "us-east-1"
# In flight for the whole measurement: a received batch is deleted, never redelivered.
VISIBILITY_SECONDS = 600


def install(variant: str) -> None:
    """Patch moto as the embedded endpoint of `variant` does.

    Raises:
        ValueError: an unknown variant.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
    from local import embedded_sqs

    if variant == "atomic":
        embedded_sqs.make_receives_atomic()
    else:
        embedded_sqs.install()


def fill(queue_name: str, count: int) -> None:
    """Put `count` more sent messages in moto's queue directly, as SendMessage leaves them."""
    from moto.sqs.models import Message, sqs_backends

    queue = sqs_backends[ACCOUNT][REGION].get_queue(queue_name)
    for _ in range(count):
        message = Message(str(uuid.uuid4()), "x" * 200)
        message.mark_sent()
        queue._messages.append(message)


def _timed(call: Any, **kwargs: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = call(**kwargs)
    return (time.perf_counter() - started) * 1000, result


def measure(depths: tuple[int, ...], reps: int) -> list[dict[str, Any]]:
    """Median milliseconds per call at each depth, over `reps` calls of each kind."""
    from moto.server import ThreadedMotoServer

    from tools.stack import free_port

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    sqs = boto3.client(
        "sqs",
        endpoint_url=f"http://{host}:{port}",
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    rows = []
    try:
        for depth in depths:
            name = f"depth-{depth}"
            url = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": str(VISIBILITY_SECONDS)})[
                "QueueUrl"
            ]
            fill(name, depth)
            # One of each first: connections and code paths warm, outside the figures.
            sqs.send_message(QueueUrl=url, MessageBody="warm")
            sends, receives, deletes = [], [], []
            for _ in range(reps):
                sends.append(_timed(sqs.send_message, QueueUrl=url, MessageBody="x" * 200)[0])
            for _ in range(reps):
                fill(name, 10)  # what this receive takes: the depth stays as it was
                elapsed, response = _timed(sqs.receive_message, QueueUrl=url, MaxNumberOfMessages=10)
                receives.append(elapsed)
                entries = [
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(response["Messages"])
                ]
                assert len(entries) == 10, f"a receive at depth {depth} took {len(entries)} messages"
                elapsed, result = _timed(sqs.delete_message_batch, QueueUrl=url, Entries=entries)
                assert not result.get("Failed"), result["Failed"]
                deletes.append(elapsed)
            rows.append(
                {
                    "depth": depth,
                    "send_ms": statistics.median(sends),
                    "receive_ms": statistics.median(receives),
                    "delete_ms": statistics.median(deletes),
                    "reps": reps,
                }
            )
            sqs.delete_queue(QueueUrl=url)
    finally:
        server.stop()
    return rows


def measure_in_subprocess(
    variant: str, depths: tuple[int, ...], reps: int, timeout: float = 900
) -> list[dict[str, Any]]:
    """`measure` with one variant's patch, in a fresh interpreter.

    Raises:
        subprocess.CalledProcessError: the measurement failed (its output says why).
    """
    from tools.stack import PROJECT_DIR

    args = [sys.executable, "-m", "tools.bench.queuedepth", "--variant", variant, "--reps", str(reps)]
    args += ["--depths", ",".join(str(depth) for depth in depths)]
    done = subprocess.run(args, cwd=PROJECT_DIR, capture_output=True, text=True, timeout=timeout, check=True)
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.queuedepth", description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", choices=VARIANTS, default="embedded")
    parser.add_argument("--depths", default=",".join(str(depth) for depth in DEPTHS))
    parser.add_argument("--reps", type=int, default=15)
    args = parser.parse_args(argv)
    install(args.variant)
    depths = tuple(int(depth) for depth in args.depths.split(","))
    print(json.dumps(measure(depths, args.reps)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
