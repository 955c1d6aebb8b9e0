"""The offline stack a chaos run torments: the embedded endpoint, the API, fault proxies and the workers.

The API and each worker talk to the endpoint through a fault proxy of their own.
A worker's proxy also tells when that worker has just started an attempt; the
API's proxy is also the tripwire that SIGKILLs the API at a chosen point of a
request (see `ApiKill`), after which the stack starts a new API on the same port.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path

from tools.chaos.faultproxy import FaultProxy
from tools.processes import LOOPBACK, Piece, free_port, piece_environment, start_piece

STAGE = "local"
TASKS_TABLE = f"taskproc-{STAGE}-tasks"
TASKS_QUEUE = f"taskproc-{STAGE}-tasks"
SCHEDULES_TABLE = f"taskproc-{STAGE}-schedules"


def timing_environment(max_attempts: int) -> dict[str, str]:
    """Short timings, so that backoffs, leases and redeliveries happen within a minute.

    The lease outlasts a batch of one-second tasks and is shorter than the
    visibility timeout, as the README requires: a killed worker's message comes
    back after its lease has ended.
    """
    return {
        "MAX_ATTEMPTS": str(max_attempts),
        "BACKOFF_BASE_SECONDS": "1",
        "BACKOFF_MAX_SECONDS": "2",
        "LEASE_SECONDS": "3",
        "QUEUE_VISIBILITY_TIMEOUT": "5",
        "DEFAULT_FAILURE_CHANCE": "0.2",
        "LOG_LEVEL": "INFO",
    }


class ApiKill(StrEnum):
    """Where the API dies: between the two halves of a write path, or wherever it is."""

    # The PutItem of a publish or a batch publish, after its messages were sent.
    AFTER_SEND = "after-send"
    # An operator retry's restart write, after its message was sent.
    BEFORE_RETRY_WRITE = "before-retry-write"
    # The next AWS call the API makes, whatever it is.
    ANYWHERE = "anywhere"


PUT_TARGET = "DynamoDB_20120810.PutItem"
UPDATE_TARGET = "DynamoDB_20120810.UpdateItem"
RESTART_MARK = b"#attempts = :zero"  # only an operator's retry sets the attempts back to 0


def kill_point(kill: ApiKill, target: str, body: bytes) -> bool:
    """Whether a request of the API, about to reach AWS, is where `kill` strikes."""
    if kill is ApiKill.AFTER_SEND:
        return target == PUT_TARGET
    if kill is ApiKill.BEFORE_RETRY_WRITE:
        return target == UPDATE_TARGET and RESTART_MARK in body
    return bool(target)


class ChaosStack:
    """Starts and stops the pieces; replaces killed workers."""

    def __init__(
        self, log_dir: Path, workers: int, fault_rate: float, max_attempts: int, seed: int, lost_share: float = 0.0
    ) -> None:
        self._log_dir = log_dir
        self._worker_count = workers
        self._fault_rate = fault_rate
        self._lost_share = lost_share
        self._seed = seed
        self.aws_port = free_port()
        self.api_port = free_port()
        self.aws_url = f"http://{LOOPBACK}:{self.aws_port}"
        self.api_url = f"http://{LOOPBACK}:{self.api_port}"
        self._env = piece_environment({**timing_environment(max_attempts), "AWS_PORT": str(self.aws_port)})
        self.aws: Piece | None = None
        self.api: Piece | None = None
        self.proxies: dict[Piece, FaultProxy] = {}
        self.workers: list[Piece] = []
        self.all_workers: list[Piece] = []  # killed ones too: their logs still count
        self._lock = threading.Lock()
        self._armed: ApiKill | None = None
        self.api_died = threading.Event()
        self.api_kills: Counter[str] = Counter()
        self.api_generation = 1
        self.api_proxy = FaultProxy(self.aws_url, fault_rate, seed, lost_share, tripwire=self._trip)

    def env(self, **overrides: str) -> Mapping[str, str]:
        return {**self._env, **overrides}

    def start(self) -> None:
        """Start every piece and wait until each is ready.

        Raises:
            PieceError: a piece did not start; whatever did start keeps running until `stop`.
        """
        self.aws = start_piece("aws", "aws", self.env(), self._log_dir)
        self.api_proxy.start()
        # The API and the first workers import the app at the same time; wait for them together.
        self.api = self._spawn_api()
        starting = [self._spawn_worker() for _ in range(self._worker_count)]
        self.api.wait_ready()
        for worker in starting:
            worker.wait_ready()

    def _spawn_api(self) -> Piece:
        env = self.env(PORT=str(self.api_port), AWS_ENDPOINT_URL=self.api_proxy.url)
        return Piece("api", f"api-{self.api_generation}", env, self._log_dir)

    def arm_api_kill(self, kill: ApiKill) -> None:
        """SIGKILL the API at the next request of its that `kill` names."""
        with self._lock:
            self.api_died.clear()
            self._armed = kill

    def disarm_api_kill(self) -> None:
        with self._lock:
            self._armed = None

    def _trip(self, target: str, body: bytes) -> bool:
        with self._lock:
            kill = self._armed
            if kill is None or not kill_point(kill, target, body):
                return False
            self._armed = None
            api = self.api
        if api is not None:
            api.kill()
        with self._lock:
            self.api_kills[kill.value] += 1
        self.api_died.set()
        return True

    def restart_api(self) -> Piece:
        """Start a new API on the same port, after a kill.

        Raises:
            PieceError: it did not start.
        """
        with self._lock:
            self.api_generation += 1
        api = self._spawn_api()
        api.wait_ready()
        self.api = api
        return api

    def _spawn_worker(self) -> Piece:
        with self._lock:
            number = len(self.all_workers) + 1
            proxy = FaultProxy(self.aws_url, self._fault_rate, self._seed + number, self._lost_share).start()
            worker = Piece("worker", f"worker-{number}", self.env(AWS_ENDPOINT_URL=proxy.url), self._log_dir)
            self.proxies[worker] = proxy
            self.workers.append(worker)
            self.all_workers.append(worker)
        return worker

    def faults(self) -> Counter[tuple[str, str]]:
        """Faults injected so far into every piece's calls, by (operation, kind)."""
        with self._lock:
            proxies = [*self.proxies.values(), self.api_proxy]
            return sum((proxy.snapshot() for proxy in proxies), Counter())

    def live_workers(self) -> list[Piece]:
        with self._lock:
            return [worker for worker in self.workers if worker.alive]

    def kill_and_replace(self, victim: Piece) -> Piece:
        """SIGKILL a worker and start a new one in its place.

        Raises:
            PieceError: the new worker did not start.
        """
        victim.kill()
        with self._lock:
            self.workers.remove(victim)
        self.proxies[victim].stop()  # its counts stay
        replacement = self._spawn_worker()
        replacement.wait_ready()
        return replacement

    def worker_logs(self) -> list[Path]:
        with self._lock:
            return [worker.log_path for worker in self.all_workers]

    def stop(self) -> None:
        """Stop workers, API, proxy and endpoint, in that order; kills what does not stop."""
        with self._lock:
            workers = list(self.workers)
        for worker in workers:
            worker.stop(timeout=5)
        if self.api is not None:
            self.api.stop()
        self.api_proxy.stop()
        for worker in workers:
            self.proxies[worker].stop()
        if self.aws is not None:
            self.aws.stop()
