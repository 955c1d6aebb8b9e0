"""The flow key of a task: whose turn a per-key cap or rate counts it in.

A publish may name the key itself (`key`, whose rule is `models.key_problem`); otherwise a type with
`concurrency_key="customer.id"` reads it from the payload. The explicit key wins. A key
goes into a flow item's key (`concurrency#<type>#<key>`, `rate#<type>#<key>`), so it is
bounded: a payload value that breaks the rule (too long, a control character, not a
string or number) is replaced by a digest of its JSON, which still gives one key per value.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from chalicelib.models import key_problem

DIGEST_PREFIX = "sha256:"
# A dotted path of payload field names: "customer.id".
_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*$")


def path_problem(path: str) -> str | None:
    """What keeps `path` from being a `concurrency_key` (a dotted payload path), or None."""
    return None if _PATH.match(path) else "must be a dotted path of payload field names, e.g. 'customer.id'"


def payload_key(payload: dict[str, Any], path: str) -> str | None:
    """The flow key at `path` in the payload, bounded; None when the payload has no value there."""
    value: Any = payload
    for name in path.split("."):
        if not isinstance(value, dict) or name not in value:
            return None
        value = value[name]
    if value is None:
        return None
    if isinstance(value, str) and key_problem(value) is None:
        return value
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    if not isinstance(value, str | dict | list) and key_problem(text) is None:
        return text  # a number or a boolean, as JSON spells it
    return DIGEST_PREFIX + hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()


def concurrency_item(type_name: str, key: str | None = None) -> str:
    """The semaphore item of a type's cap, or of one key's cap within it."""
    return f"concurrency#{type_name}" if key is None else f"concurrency#{type_name}#{key}"


def rate_item(type_name: str, key: str | None = None) -> str:
    """The GCRA item of a type's rate limit, or of one key's rate within it."""
    return f"rate#{type_name}" if key is None else f"rate#{type_name}#{key}"
