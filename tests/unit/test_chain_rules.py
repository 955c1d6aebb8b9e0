"""The chain's rules without AWS: who is given `previous`, what a publish's `then` may hold, and the
schema of a step in the OpenAPI document."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from chalicelib.chains import check_chain, keeps_previous, openapi_schemas, step_payload
from chalicelib.models import ChainStepIn
from chalicelib.registry import Registry, TaskType

REF = "#/components/schemas/{model}"


class Declares(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str
    previous: Any


class DeclaresByAlias(BaseModel):
    before: Any = Field(alias="previous")


class Refuses(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str


class Ignores(BaseModel):
    label: str = "x"


class Allows(BaseModel):
    model_config = ConfigDict(extra="allow")


def registry() -> Registry:
    types = Registry()
    for name, model in (("declares", Declares), ("refuses", Refuses), ("ignores", Ignores), ("allows", Allows)):
        types.register(TaskType(name, lambda payload, context: None, payload=model))
    types.register(TaskType("free", lambda payload, context: None))
    return types


def test_previous_is_given_where_the_model_declares_it_or_takes_any_field_and_nowhere_else() -> None:
    assert keeps_previous(Declares) and keeps_previous(DeclaresByAlias)
    assert keeps_previous(Allows) and keeps_previous(None)
    assert not keeps_previous(Refuses) and not keeps_previous(Ignores)
    types = registry()
    assert step_payload(ChainStepIn(type="declares", payload={"label": "a"}), [1], types) == {
        "label": "a",
        "previous": [1],
    }
    assert step_payload(ChainStepIn(type="refuses", payload={"label": "a"}), [1], types) == {"label": "a"}


def test_a_step_whose_model_requires_previous_is_not_refused_for_lacking_it_but_is_for_giving_it() -> None:
    types = registry()
    assert check_chain("t", [ChainStepIn(type="declares", payload={"label": "a"})], types) == []
    (problem,) = check_chain("t", [ChainStepIn(type="declares", payload={"label": "a", "previous": 1})], types)
    assert problem.field == "then[0].payload.previous"
    (problem,) = check_chain("t", [ChainStepIn(type="declares", payload={})], types)
    assert problem.field == "then[0].payload.label"
    # A model that ignores extra fields takes a `previous` as any other: it is the client's, never replaced.
    assert check_chain("t", [ChainStepIn(type="ignores", payload={"previous": 1})], types) == []


def test_the_step_schema_of_a_type_that_declares_previous_neither_requires_nor_admits_it() -> None:
    types = registry()
    _, schemas = models_json_schema(
        [(ChainStepIn, "validation"), (Declares, "validation"), (Refuses, "validation")], ref_template=REF
    )
    added = openapi_schemas(types, schemas["$defs"], REF)
    declared = added["ChainStepDeclares"]["properties"]["payload"]["allOf"]
    assert "previous" not in declared[0]["properties"] and declared[0]["required"] == ["label"]
    assert declared[1] == {"not": {"required": ["previous"]}}
    assert added["ChainStepDeclares"]["required"] == ["type", "payload"]  # `label` is required
    assert added["ChainStepRefuses"]["properties"]["payload"]["$ref"] == REF.format(model="Refuses")
    assert added["ChainStepFree"]["required"] == ["type"]
    assert {variant["$ref"] for variant in added["ChainStepIn"]["oneOf"]} == {
        REF.format(model=f"ChainStep{name}") for name in ("Declares", "Refuses", "Ignores", "Allows", "Free")
    }
