"""The offline stack a chaos run torments: the embedded endpoint, the API, a fault proxy and the workers.

The API talks to the endpoint directly (its writes are what the run counts as
accepted); each worker talks to it through a fault proxy of its own, which also
tells when that worker has just started an attempt.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from tools.chaos.faultproxy import FaultProxy
from tools.processes import LOOPBACK, Piece, free_port, piece_environment, start_piece

STAGE = "local"
TASKS_TABLE = f"taskproc-{STAGE}-tasks"
TASKS_QUEUE = f"taskproc-{STAGE}-tasks"


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

    def env(self, **overrides: str) -> Mapping[str, str]:
        return {**self._env, **overrides}

    def start(self) -> None:
        """Start every piece and wait until each is ready.

        Raises:
            PieceError: a piece did not start; whatever did start keeps running until `stop`.
        """
        self.aws = start_piece("aws", "aws", self.env(), self._log_dir)
        # The API and the first workers import the app at the same time; wait for them together.
        self.api = Piece("api", "api", self.env(PORT=str(self.api_port), AWS_ENDPOINT_URL=self.aws_url), self._log_dir)
        starting = [self._spawn_worker() for _ in range(self._worker_count)]
        self.api.wait_ready()
        for worker in starting:
            worker.wait_ready()

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
        """Faults injected so far into every worker's calls, by (operation, kind)."""
        with self._lock:
            return sum((proxy.snapshot() for proxy in self.proxies.values()), Counter())

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
        for worker in workers:
            self.proxies[worker].stop()
        if self.aws is not None:
            self.aws.stop()
