"""The task types this deployment runs. Importing this package registers them.

To add a type, write a module beside these and import it below.
"""

from __future__ import annotations

from chalicelib.handlers import callback, checksum, limited, simulate, steps
from chalicelib.registry import REGISTRY

__all__ = ["REGISTRY", "callback", "checksum", "limited", "simulate", "steps"]
