"""The base of taskproc's own models: each is built on its first use, not when its module is imported.

pydantic builds a model's validator and serializer when the class is defined, and every function
imports every model module (app.py and the consumer need `chalicelib.models`), so a consumer's
cold start paid for building the API's and the operator's answers it never sends. With
`defer_build` each model is built the first time it validates or serializes, in the function
that uses it (tools/bench/coldstart.py measures the difference; tests/unit/test_cold_start.py
keeps it).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    """A pydantic model built on first use; its subclasses' own `model_config` is merged with this."""

    model_config = ConfigDict(defer_build=True)
