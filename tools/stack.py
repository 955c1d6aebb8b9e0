"""Start the offline stack (`python -m local run`) in a subprocess on free ports, for the tools."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from local.config import PROJECT_DIR
from local.launcher import RunningStack, free_port
from local.launcher import offline_stack as launch_stack

__all__ = ["PROJECT_DIR", "RunningStack", "free_port", "offline_stack"]


@contextmanager
def offline_stack(log: Path, **overrides: str) -> Iterator[RunningStack]:
    """Run the whole offline stack until the block ends; `overrides` are environment variables.

    Raises:
        LaunchError: it did not print its ready line in time (its log says why).
    """
    env = {name: value for name, value in os.environ.items() if name != "AWS_ENDPOINT_URL"}
    with launch_stack(log, {**env, **overrides}) as stack:
        yield stack
