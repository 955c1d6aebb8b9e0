"""The pieces of the offline stack, each run until its `stop` event is set.

Each returns the process's exit code and prints its ready line once it serves.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from local.api import Api
from local.aws import EmbeddedAws, provision
from local.config import LocalConfig
from local.lifecycle import announce_ready
from local.metrics_sink import METRICS_FILE_VARIABLE
from local.metrics_sink import install as install_metrics_sink
from local.worker import Worker

logger = logging.getLogger(__name__)

# The main thread waits in short steps so that signal handlers run promptly.
WAIT_STEP_SECONDS = 0.5


def _wait(stop: threading.Event) -> None:
    while not stop.wait(WAIT_STEP_SECONDS):
        pass


def run_aws(config: LocalConfig, stop: threading.Event) -> int:
    """The embedded endpoint with the stack of infra/resources.yaml on it.

    Raises:
        EndpointError: the port is taken or the stack cannot be created.
    """
    aws = EmbeddedAws(config.aws_port)
    metrics = os.environ.get(METRICS_FILE_VARIABLE)
    if metrics:  # `make run` sets it; a piece started alone answers GetMetricData as moto does
        install_metrics_sink(Path(metrics))
    aws.start()
    try:
        resources = provision(config)
        announce_ready(
            "aws",
            f"{aws.url}, in memory; queues {', '.join(resources.task_queues)} -> {resources.dead_letter_queue} "
            f"after {resources.max_receive_count} receives; table {resources.table}",
        )
        _wait(stop)
    finally:
        aws.stop()
    return 0


def run_api(config: LocalConfig, stop: threading.Event) -> int:
    """The HTTP API against `config.endpoint_url`.

    Raises:
        ApiError: the port is taken.
    """
    api = Api(config)
    api.start()
    announce_ready("api", f"{config.api_url} (AWS at {config.endpoint_url})")
    try:
        _wait(stop)
    finally:
        api.stop()
    return 0


def run_worker(config: LocalConfig, stop: threading.Event) -> int:
    """The SQS consumers against `config.endpoint_url`; in-flight batches finish before it exits.

    Raises:
        SettingsError: the app's settings are invalid.
    """
    worker = Worker(config, stop)
    if not worker.start():
        return 0
    queues = ", ".join(f"{p.mapping.queue_name} x{p.mapping.concurrency}" for p in worker.pollers)
    announce_ready("worker", f"polling {queues} at {config.endpoint_url}")
    _wait(stop)
    logger.info("stopping: finishing in-flight batches")
    if not worker.drain():
        logger.warning("batches still running were left to their visibility timeout")
        return 1
    return 0


def run_console(config: LocalConfig, stop: threading.Event) -> int:
    """The operator console (`taskctl console`) against the offline API, on 127.0.0.1:CONSOLE_PORT."""
    from taskctl.client import ApiClient  # the console is the CLI's; only this piece needs it
    from taskctl.console import running

    try:
        with running(ApiClient(config.api_url, sign=False), config.console_port) as server:
            announce_ready("console", f"{server.url} (against {config.api_url})")
            _wait(stop)
    except OSError as exc:  # only binding the port raises it: waiting does not
        logger.error("console port %d is not free (%s); set CONSOLE_PORT to a free one", config.console_port, exc)
        return 2
    return 0
