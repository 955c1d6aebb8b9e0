"""Tags: short labels a producer puts on a task to find it again (`GET /tasks?tag=`).

A tag is 1 to 64 characters of `[A-Za-z0-9_.:=-]`: ASCII only, so characters and bytes are
the same count and a tag reads the same in a URL, a log line and a terminal; `=` and `:`
let a tag carry a key and a value (`env=prod`, `order:1234`). A task has at most 10, each
once: a repeated tag is refused rather than folded, so that the tags stored are the tags
sent. They are kept in the order given and stored as a DynamoDB list, which the listing
index's filter tests with `contains`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

MAX_TAGS = 10
MAX_TAG_LENGTH = 64
TAG_CHARACTERS = "A-Za-z0-9_.:=-"
TAG_PATTERN = f"^[{TAG_CHARACTERS}]{{1,{MAX_TAG_LENGTH}}}$"
TAG_RULE = f"1 to {MAX_TAG_LENGTH} characters of A-Z, a-z, 0-9 and _ . : = -"
_tag = re.compile(f"[{TAG_CHARACTERS}]{{1,{MAX_TAG_LENGTH}}}")
_outside = re.compile(f"[^{TAG_CHARACTERS}]")


def tag_problem(value: str) -> str | None:
    """What keeps `value` from being a tag, or None when it is one."""
    if _tag.fullmatch(value):
        return None
    if not 1 <= len(value) <= MAX_TAG_LENGTH:
        return f"must be {TAG_RULE} (this one has {len(value)})"
    found = _outside.search(value)
    assert found is not None, "a value of the right length that is not a tag holds a character outside the set"
    return f"must be {TAG_RULE} (U+{ord(found.group()):04X} at position {found.start()} is not)"


def repeated(tags: Sequence[str]) -> list[tuple[int, int]]:
    """(index, index of its first occurrence) for each tag given earlier in `tags`."""
    first: dict[str, int] = {}
    repeats = []
    for index, tag in enumerate(tags):
        if tag in first:
            repeats.append((index, first[tag]))
        else:
            first[tag] = index
    return repeats


def _checked(value: str) -> str:
    problem = tag_problem(value)
    if problem is not None:
        raise PydanticCustomError("tag", problem)
    return value


def _distinct(tags: list[str]) -> list[str]:
    """Each tag once; a repeat is named by its own index (pydantic prefixes the field's name)."""
    repeats = repeated(tags)
    if repeats:
        raise ValidationError.from_exception_data(
            "tags",
            [
                InitErrorDetails(
                    type=PydanticCustomError(
                        "repeated_tag", "repeats the tag at index {first}: each tag may be given once", {"first": first}
                    ),
                    loc=(index,),
                    input=tags[index],
                )
                for index, first in repeats
            ],
        )
    return tags


Tag = Annotated[
    str,
    StringConstraints(strict=True),
    AfterValidator(_checked),
    Field(json_schema_extra={"pattern": TAG_PATTERN, "minLength": 1, "maxLength": MAX_TAG_LENGTH}),
]
Tags = Annotated[
    list[Tag],
    Field(max_length=MAX_TAGS, json_schema_extra={"uniqueItems": True}),
    AfterValidator(_distinct),
]
