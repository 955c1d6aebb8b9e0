"""`make run`: the three pieces as child processes of one supervisor, started together, stopped in order.

Each piece runs in its own process (`python -m local <piece> --supervised`), so
the endpoint, the API and the consumers each get a core instead of sharing one
interpreter lock. The supervisor relays their output with the piece's name in
front, prints the URLs and a few commands once all three are up, and on Ctrl-C or
SIGTERM stops the worker first (its in-flight batches finish against a live
endpoint), then the API, then the endpoint.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from local.config import LocalConfig
from local.lifecycle import SUPERVISOR_STOP, ignore_terminating_signals
from local.metrics_sink import METRICS_FILE_VARIABLE, is_emf

PIECES = ("aws", "api", "worker", "console")
STOP_ORDER = ("console", "worker", "api", "aws")
START_TIMEOUT_SECONDS = 120.0
# The worker may need its drain time (local.worker.DRAIN_SECONDS) plus a margin.
STOP_TIMEOUT_SECONDS = {"console": 5.0, "worker": 35.0, "api": 10.0, "aws": 10.0}
POLL_SECONDS = 0.2


class StartError(Exception):
    """A piece exited, or did not become ready in time, while the stack was starting."""


@dataclass
class Child:
    """One piece's process and what its output has told so far."""

    piece: str
    process: subprocess.Popen[str]
    ready: threading.Event = field(default_factory=threading.Event)
    ready_detail: str = ""
    relay: threading.Thread | None = None

    def alive(self) -> bool:
        return self.process.poll() is None


def _relay(child: Child, stream: IO[str], out: IO[str], lock: threading.Lock, metrics: IO[str] | None = None) -> None:
    # The ready lines are the supervisor's to summarise; EMF blobs go to the metrics file, which the
    # embedded endpoint answers GetMetricData from (local/metrics_sink.py); everything else is passed on.
    marker = f"{child.piece} ready: "
    for line in stream:
        if line.startswith(marker) and not child.ready.is_set():
            child.ready_detail = line[len(marker) :].strip()
            child.ready.set()
            continue
        if metrics is not None and is_emf(line):
            with lock:
                metrics.write(line if line.endswith("\n") else line + "\n")
                metrics.flush()
            continue
        with lock:
            out.write(f"[{child.piece:6}] {line}")
            out.flush()


def child_environment(config: LocalConfig) -> dict[str, str]:
    """The pieces' environment: this one, with the embedded endpoint as the only endpoint."""
    env = dict(os.environ)
    env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{config.aws_port}"
    env["PYTHONUNBUFFERED"] = "1"
    env["STAGE"] = config.stage
    if not env.get("CALLBACK_SIGNING_SECRET"):
        env["CALLBACK_SIGNING_SECRET"] = made_callback_secret(callback_secret_file(config))
    env[METRICS_FILE_VARIABLE] = str(metrics_file(config))
    if env.get("SCHEDULE_TIME_SCALE") and not env.get("SCHEDULE_CLOCK_ORIGIN"):
        # One origin for every piece, so the API and the worker read the same scaled schedule time.
        env["SCHEDULE_CLOCK_ORIGIN"] = repr(time.time())
    return env


# Where `make run` writes the callback signing secret it made, for receivers to read (docs/workflows.md).
CALLBACK_SECRET_DIRECTORY = Path(tempfile.gettempdir())


def callback_secret_file(config: LocalConfig) -> Path:
    """The file of the secret a run on this API port made: runs side by side keep theirs apart."""
    return CALLBACK_SECRET_DIRECTORY / f"taskproc-{config.stage}-{config.port}-callback-secret"


def metrics_file(config: LocalConfig) -> Path:
    """Where this run's EMF lines go (METRICS_FILE, else one file per stage and API port): the embedded
    endpoint answers GetMetricData from it, and it is there to read after the run."""
    named = os.environ.get(METRICS_FILE_VARIABLE)
    return Path(named) if named else CALLBACK_SECRET_DIRECTORY / f"taskproc-{config.stage}-{config.port}-metrics.jsonl"


def callback_secret_line(config: LocalConfig) -> str:
    """The banner's line on the secret this run signs callbacks with (the pieces' environment holds it)."""
    if os.environ.get("CALLBACK_SIGNING_SECRET"):
        return "Callbacks are signed with the CALLBACK_SIGNING_SECRET given."
    return f"Callbacks are signed with a CALLBACK_SIGNING_SECRET made for this run, in {callback_secret_file(config)}"


def made_callback_secret(path: Path) -> str:
    """A fresh secret for this run's callbacks, written to `path`, readable by this user only."""
    secret = secrets.token_hex(32)
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(secret)
    return secret


class Supervisor:
    def __init__(self, config: LocalConfig, stop: threading.Event, out: IO[str] = sys.stdout) -> None:
        self._config = config
        self._stop = stop
        self._out = out
        self._lock = threading.Lock()
        self.children: dict[str, Child] = {}
        self._metrics: IO[str] | None = None

    def start(self) -> None:
        """Start every piece and wait until each has printed its ready line.

        Raises:
            StartError: a piece exited or was not ready in time (or `stop` was set first).
        """
        env = child_environment(self._config)
        # A new run starts the file again: the embedded AWS's data, which the metrics describe, is new too.
        self._metrics = Path(env[METRICS_FILE_VARIABLE]).open("w", encoding="utf-8")  # noqa: SIM115 - closed at shutdown
        # All are spawned before any relay thread starts: preexec_fn runs between fork and exec.
        for piece in PIECES:
            process = subprocess.Popen(
                [sys.executable, "-m", "local", piece, "--supervised"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
                bufsize=1,
                preexec_fn=ignore_terminating_signals,
            )
            self.children[piece] = Child(piece, process)
        for child in self.children.values():
            assert child.process.stdout is not None
            child.relay = threading.Thread(
                target=_relay,
                args=(child, child.process.stdout, self._out, self._lock, self._metrics),
                name=f"relay-{child.piece}",
                daemon=True,
            )
            child.relay.start()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not all(child.ready.is_set() for child in self.children.values()):
            for child in self.children.values():
                if not child.alive():
                    raise StartError(f"{child.piece} exited with code {child.process.returncode} while starting")
            if self._stop.is_set():
                raise StartError("stopped while starting")
            if time.monotonic() > deadline:
                waiting = [c.piece for c in self.children.values() if not c.ready.is_set()]
                raise StartError(f"not ready after {START_TIMEOUT_SECONDS:.0f} s: {', '.join(waiting)}")
            self._stop.wait(POLL_SECONDS)

    def watch(self) -> int:
        """Wait for `stop`, or for a piece to exit on its own; returns 0, or 1 when a piece died."""
        while not self._stop.wait(POLL_SECONDS):
            for child in self.children.values():
                if not child.alive():
                    self.say(f"{child.piece} exited with code {child.process.returncode}; stopping everything")
                    return 1
        return 0

    def shutdown(self) -> None:
        """Stop the pieces in order: SIGUSR1, then SIGKILL past the piece's stop timeout."""
        for piece in STOP_ORDER:
            child = self.children.get(piece)
            if child is None:
                continue
            if child.alive():
                child.process.send_signal(SUPERVISOR_STOP)
            try:
                child.process.wait(STOP_TIMEOUT_SECONDS[piece])
            except subprocess.TimeoutExpired:
                self.say(f"{piece} did not stop within {STOP_TIMEOUT_SECONDS[piece]:.0f} s; killing it")
                child.process.kill()
                child.process.wait()
            if child.relay is not None:
                child.relay.join(2)
        if self._metrics is not None:
            with self._lock:
                self._metrics.close()
            self._metrics = None

    def say(self, text: str) -> None:
        with self._lock:
            self._out.write(text + "\n")
            self._out.flush()


def banner(config: LocalConfig, children: dict[str, Child]) -> str:
    """The URLs, a few commands to paste, and the ready line."""
    api = config.api_url
    json_header = "-H 'Content-Type: application/json'"
    lines = [
        "",
        f"taskproc, stage {config.stage}, on this machine:",
        f"  API       {api}  (OpenAPI document: {api}/openapi.json)",
        f"  AWS       {children['aws'].ready_detail}",
        f"  consumers {children['worker'].ready_detail}",
        f"  console   {children['console'].ready_detail}",
        "  The routes IAM guards on AWS answer any caller here: the offline stack checks no credentials.",
        "",
        "For taskctl and the README's commands, in another terminal:",
        f"  export TASKPROC_URL={api}",
        "",
        "Try:",
        f'  curl -s -X POST {api}/publish {json_header} -d \'{{"id": "task-001", "payload": {{}}}}\'',
        f"  curl -s {api}/tasks/task-001",
        f'  curl -s -X POST {api}/tasks {json_header} -d \'{{"message": "ERROR"}}\'',
        "",
        callback_secret_line(config),
        f"Metrics (EMF) go to {metrics_file(config)}; GET /stats reads them back.",
        "",
        "taskproc is ready; Ctrl-C stops everything (the embedded AWS keeps all data in memory: it goes too).",
    ]
    return "\n".join(lines)


def run(config: LocalConfig, stop: threading.Event) -> int:
    """Start everything, print the banner, wait for Ctrl-C or SIGTERM, stop everything."""
    supervisor = Supervisor(config, stop)
    started = time.monotonic()
    code = 0
    try:
        supervisor.start()
        supervisor.say(banner(config, supervisor.children))
        supervisor.say(f"(up in {time.monotonic() - started:.1f} s)")
        code = supervisor.watch()
    except StartError as exc:
        supervisor.say(f"taskproc did not start: {exc}")
        code = 1
    finally:
        supervisor.say("stopping: console, worker, then API, then AWS")
        supervisor.shutdown()
        supervisor.say("stopped")
    return code
