"""`checksum`: a small real task type to copy. A payload model, a result, and (in tests/unit) its test."""

import hashlib
from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, Field

from chalicelib.deferred import Model
from chalicelib.registry import TaskContext, task_type

MAX_TEXT_BYTES = 64 * 1024


def _at_most_64_kib(text: str) -> str:
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid Unicode (no lone surrogate escapes)") from exc
    if size > MAX_TEXT_BYTES:
        raise ValueError(f"must be at most {MAX_TEXT_BYTES} bytes of UTF-8; it has {size}")
    return text


class ChecksumPayload(Model):
    model_config = ConfigDict(extra="forbid", strict=True)

    text: Annotated[str, AfterValidator(_at_most_64_kib)] = Field(
        description=f"The text to digest, at most {MAX_TEXT_BYTES} bytes of UTF-8.", max_length=MAX_TEXT_BYTES
    )
    algorithm: Literal["sha256", "sha1", "md5"] = "sha256"


@task_type("checksum", payload=ChecksumPayload)
def checksum(payload: ChecksumPayload, context: TaskContext) -> dict[str, str]:
    """The lowercase hex digest of the text's UTF-8 bytes."""
    digest = hashlib.new(payload.algorithm, payload.text.encode("utf-8"), usedforsecurity=False)
    return {"algorithm": payload.algorithm, "digest": digest.hexdigest()}
