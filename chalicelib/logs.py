"""One JSON line per task event, so logs can be queried by task id."""

from __future__ import annotations

import json
import logging
from typing import Any

# A child of the app's own logger: Chalice sets `taskproc` to ERROR (DEBUG with app.debug)
# and prints it to stdout, which CloudWatch collects; task events are INFO and must pass.
EVENTS_LOGGER = "taskproc.tasks"
logger = logging.getLogger(EVENTS_LOGGER)
logger.setLevel(logging.INFO)


def log_event(event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log `event` with its fields (task id, attempt, message id, ...) as one JSON object."""
    record = {"event": event, **{key: value for key, value in fields.items() if value is not None}}
    logger.log(level, json.dumps(record, default=str, ensure_ascii=False))
