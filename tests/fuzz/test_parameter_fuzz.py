"""Every parameter of every route, operator routes included, fed any Unicode text: never a 5xx.

The schema-driven fuzzer (test_openapi_fuzz.py) builds values from each parameter's
schema, so an integer parameter gets integers and a negative case now and then; the
text a client can really put in a query string (`limit=²`, `limit=٣`, `limit=1e3`,
an id of emoji, bytes that are not UTF-8, parameters nobody declared) is what this
adds. Each route's parameters come from the served OpenAPI document, and the document
is checked to name every route the app has, so a new route or parameter is fuzzed
without an edit here.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import quote, quote_from_bytes

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.openapi import openapi_document
from chalicelib.publish.wait import MAX_WAIT_SECONDS
from tests.fuzz.conftest import FUZZ_EXAMPLES, STATUSES

TIMEOUT_SECONDS = 10
# A long-poll (`waitSeconds`) on an id another test published never ends here (no consumer runs):
# it rightly takes its whole wait.
LONGEST_ANSWER_SECONDS = TIMEOUT_SECONDS + MAX_WAIT_SECONDS
JSON = {"Content-Type": "application/json"}
METHODS = ("get", "post", "put", "patch", "delete")

# Any code point UTF-8 can carry (every one but the surrogates), controls and NUL included.
ANY_TEXT = st.text(st.characters(codec="utf-8"), max_size=40)
# Digits to Unicode, and to str.isdigit: superscripts and circled digits (which int() refuses) and
# the decimal digits of other scripts (which int() reads), alone or among ASCII digits.
_CODE_POINTS = [chr(code) for code in range(0x110000) if chr(code).isdigit()]
NOT_DECIMAL_DIGITS = [char for char in _CODE_POINTS if not char.isdecimal()]
OTHER_SCRIPT_DIGITS = [char for char in _CODE_POINTS if char.isdecimal() and not char.isascii()]
UNICODE_DIGITS = st.text(
    st.one_of(st.sampled_from(NOT_DECIMAL_DIGITS), st.sampled_from(OTHER_SCRIPT_DIGITS), st.sampled_from("0123456789")),
    min_size=1,
    max_size=3,
)
# The spellings int() or float() would take that a query number must not.
NUMBER_SPELLINGS = st.one_of(
    st.integers().map(str),
    st.floats().map(repr),
    st.sampled_from(["", " 5", "5 ", "+5", "5.0", "1e3", "0x10", "1_0", "-0", "9" * 5000, "5\n"]),
)
# Bytes sent percent-encoded as they are: often not UTF-8 at all.
RAW_BYTES = st.binary(min_size=1, max_size=20)
FUZZED: st.SearchStrategy[str | bytes] = st.one_of(ANY_TEXT, UNICODE_DIGITS, NUMBER_SPELLINGS, RAW_BYTES)
# Stands for the parameters no route declares, as one more parameter to aim at.
UNDECLARED = "(undeclared)"
# Sent in every parameter on every run, whatever the random examples draw: the known classes of
# trouble (digits int() refuses or reads, spellings of numbers, controls, bidi, astral characters,
# bytes that are not UTF-8 or encode a surrogate, a value far longer than any rule allows).
HOSTILE: list[str | bytes] = [
    "\u00b2",  # superscript two: `limit=²` was a 500
    "\u0663",  # Arabic-Indic three
    "\uff15",  # fullwidth five
    "\u2460",  # circled one
    "\u216b",  # Roman numeral twelve
    "1e3",
    "5.0",
    " 5",
    "+5",
    "-1",
    "0x10",
    "",
    "9" * 5000,
    "\x00",
    "\x1b[31m",
    "\u202eevil",
    "\U0001f600" * 3,
    "%",
    "a/b",
    "\r\n",
    "\u00e9" * 2000,
    b"\xff\xfe",
    b"\xed\xa0\x80",
]


def encoded(value: str | bytes) -> str:
    """Text as percent-encoded UTF-8; bytes percent-encoded as they are."""
    return quote_from_bytes(value, safe="") if isinstance(value, bytes) else quote(value, safe="")


def valid_values(schema: dict[str, Any]) -> list[Any]:
    if "enum" in schema:
        return list(schema["enum"])
    if schema.get("type") == "integer":
        return [schema.get("minimum", 1), schema.get("maximum", 1)]
    return []


def operations() -> list[tuple[str, str, list[dict[str, Any]]]]:
    document = openapi_document()
    return [
        (method.upper(), path, operation.get("parameters", []))
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


# The body of each route that takes one: valid, so that the request gets past the body to its parameters.
def body_of(method: str, path: str) -> dict[str, Any] | None:
    bodies: dict[tuple[str, str], dict[str, Any]] = {
        ("POST", "/publish"): {"id": f"param-fuzz-{uuid.uuid4().hex}", "payload": {}},
        ("POST", "/publish/batch"): {"tasks": [{"id": f"param-fuzz-{uuid.uuid4().hex}", "payload": {}}]},
        ("POST", "/tasks"): {"simulation": {"failureChance": 0}},
        ("POST", "/retries"): {"status": "FAILED", "dryRun": True},
    }
    return bodies.get((method, path))


@st.composite
def requests_for(draw: st.DrawFn, path: str, parameters: list[dict[str, Any]]) -> tuple[str, str]:
    """A path with its parameters filled and a query string, one parameter (or an undeclared one) fuzzed.

    The others get a valid value where one is known, so that the fuzzed one's rule is reached.
    """
    target = draw(st.sampled_from([parameter["name"] for parameter in parameters] + [UNDECLARED]))
    filled = path
    query: list[tuple[str, str | bytes]] = []
    for parameter in parameters:
        valid = [str(value) for value in valid_values(parameter.get("schema", {}))]
        value = draw(FUZZED if parameter["name"] == target or not valid else st.sampled_from(valid))
        if parameter["in"] == "path":
            # An empty segment is another route (or none); an id has at least one character.
            filled = filled.replace("{" + parameter["name"] + "}", encoded(value) or "x")
        elif parameter.get("required") or parameter["name"] == target or draw(st.booleans()):
            query.append((parameter["name"], value))
    if target == UNDECLARED:
        query += draw(st.lists(st.tuples(ANY_TEXT.filter(bool), FUZZED), min_size=1, max_size=2))
    return filled, "&".join(f"{encoded(name)}={encoded(value)}" for name, value in query)


def assert_answered_in_the_error_shape(response: requests.Response) -> None:
    assert response.status_code < 500, f"{response.status_code} {response.request.url}: {response.text[:300]}"
    if response.status_code >= 400 and response.status_code != 405:  # 405: Chalice answers a method, not the app
        body = response.json()
        assert set(body) == {"error"}, body
        assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
        assert all(set(detail) == {"field", "message"} for detail in body["error"]["details"]), body


def test_the_document_names_every_route_and_method_of_the_app() -> None:
    import app

    routes = {(method, path) for path, entry in app.app.routes.items() for method in entry}
    documented = {(method, path) for method, path, _ in operations()}
    assert routes == documented


@pytest.mark.parametrize(("method", "path", "parameters"), operations(), ids=[f"{m} {p}" for m, p, _ in operations()])
def test_any_text_in_any_parameter_is_answered_below_500(
    api_url: str, method: str, path: str, parameters: list[dict[str, Any]]
) -> None:
    @settings(
        # A route that declares no parameter has only undeclared ones to aim at: fewer examples.
        max_examples=FUZZ_EXAMPLES if parameters else max(5, FUZZ_EXAMPLES // 4),
        deadline=timedelta(seconds=LONGEST_ANSWER_SECONDS),
        derandomize=True,  # the same examples on every run of `make test`
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(request=requests_for(path, parameters))
    def answered(request: tuple[str, str]) -> None:
        send(api_url, method, path, *request)

    answered()


@pytest.mark.parametrize(("method", "path", "parameters"), operations(), ids=[f"{m} {p}" for m, p, _ in operations()])
def test_each_hostile_value_in_each_parameter_is_answered_below_500(
    api_url: str, method: str, path: str, parameters: list[dict[str, Any]]
) -> None:
    for target in [parameter["name"] for parameter in parameters]:
        for value in HOSTILE:
            filled, query = path, []
            for parameter in parameters:
                valid = [str(option) for option in valid_values(parameter.get("schema", {}))]
                chosen = value if parameter["name"] == target else (valid[0] if valid else "x")
                if parameter["in"] == "path":
                    filled = filled.replace("{" + parameter["name"] + "}", encoded(chosen) or "x")
                elif parameter.get("required") or parameter["name"] == target:
                    query.append(f"{parameter['name']}={encoded(chosen)}")
            send(api_url, method, path, filled, "&".join(query))
    # Undeclared parameters, all in one request: each hostile value as a name, then as a value.
    filled = path
    for parameter in parameters:
        if parameter["in"] == "path":
            filled = filled.replace("{" + parameter["name"] + "}", "x")
    declared = [
        f"{parameter['name']}={encoded(str(valid_values(parameter.get('schema', {}))[0]))}"
        for parameter in parameters
        if parameter["in"] == "query" and parameter.get("required")
    ]
    send(api_url, method, path, filled, "&".join(declared + [f"{encoded(value) or 'x'}=1" for value in HOSTILE]))
    send(api_url, method, path, filled, "&".join(declared + [f"extra{n}={encoded(v)}" for n, v in enumerate(HOSTILE)]))


def send(api_url: str, method: str, path: str, filled: str, query: str) -> None:
    """One request to the route `path`, its parameters already in `filled` and `query`; checked and counted."""
    response = requests.request(
        method,
        f"{api_url}{filled}" + (f"?{query}" if query else ""),
        json=body_of(method, path),
        headers=JSON,
        timeout=LONGEST_ANSWER_SECONDS,
    )
    STATUSES[f"{method} {path} {response.status_code}"] += 1
    assert_answered_in_the_error_shape(response)
