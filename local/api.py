"""The HTTP API: Chalice's own local server (the one `chalice local` runs), in this process.

Why not `chalice local` as a subprocess: it writes the stage's environment
variables from `.chalice/config.json` over the process environment, so the
overrides the offline stack promises (`MAX_ATTEMPTS=2 make run`) would not reach
the app. Here the environment is resolved first (local.config), then the same
`LocalDevServer` serves the app, with the same request handling, on loopback.
"""

from __future__ import annotations

import importlib
import logging
import threading
import warnings
from typing import Any

from chalice.local import LocalDevServer, ThreadedHTTPServer, create_local_server

from local.config import LOOPBACK, LocalConfig, apply_environment, chalice_config

logger = logging.getLogger(__name__)

# socketserver listens with a backlog of 5: a client opening a few more connections at
# once (a load test, a burst of publishes) is reset. The backlog is read when the server
# binds, so it is set on the class before the server is created.
LISTEN_BACKLOG = 128


def silence_expected_warnings() -> None:
    """Chalice's local server warns, at the first operator request, that it cannot check an IAMAuthorizer
    and lets the request through. That is the offline stack's design (docs/offline.md: no IAM), which
    `make run`'s banner says in a line of ours; the warning would say it again in the log, as if wrong."""
    warnings.filterwarnings(
        "ignore", message="IAMAuthorizer is not a supported in local mode", category=UserWarning, module="chalice.local"
    )


class ApiError(Exception):
    """The HTTP API could not start; the message says why."""


class Api:
    """The app's routes on http://127.0.0.1:$PORT, served by a thread of this process."""

    def __init__(self, config: LocalConfig) -> None:
        self._config = config
        self._server: LocalDevServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Import the app and start serving.

        Raises:
            ApiError: the port is taken.
        """
        apply_environment(self._config)
        silence_expected_warnings()
        app_module: Any = importlib.import_module("app")
        config = chalice_config(self._config.stage, app_module.app)
        ThreadedHTTPServer.request_queue_size = LISTEN_BACKLOG
        try:
            self._server = create_local_server(app_module.app, config, LOOPBACK, self._config.port)
        except OSError as exc:
            raise ApiError(f"cannot listen on {self._config.api_url}: {exc}; set PORT to a free one") from exc
        self._thread = threading.Thread(target=self._server.server.serve_forever, name="api", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting requests; requests in progress finish on their own threads."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
