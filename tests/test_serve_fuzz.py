"""A property-based fuzz of the service's OpenAPI document: no request, valid or not, is answered with a 500.

Bodies come from each route's own JSON schema in /openapi.json (`from_schema`:
the part of JSON Schema that pydantic writes for these bodies), from those with
one field replaced by any JSON value, and from any JSON value at all. Bounded: `EXAMPLES` bodies per route, against a
real server with small limits (so that every valid body is cheap to answer).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.serve_runs import serving, train_runs

EXAMPLES = 60
SMALL = ["--max-length", "40", "--max-beam", "4", "--max-samples", "3", "--max-texts", "4", "--max-text-chars", "60",
         "--max-batch", "8", "--max-wait-ms", "2", "--max-audio-seconds", "2", "--max-image-pixels", "4096"]
NAMES = ["lm", "classify", "tag", "seq2seq", "caption", "speech", "video"]

json_values = st.recursive(  # JSON has no NaN or infinity (test_serve sends those as raw text)
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Any]]]:
    runs = train_runs(tmp_path_factory.mktemp("serve-fuzz"), NAMES)
    with serving([runs.run(name) for name in NAMES], *SMALL) as url:
        yield url, httpx.get(f"{url}/openapi.json").json()


def from_schema(schema: dict[str, Any], document: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values valid under `schema` (references into `document`'s components resolved): objects with their
    required properties and any of the others, anyOf, and the types with their bounds; absent bounds are wide."""
    if "$ref" in schema:
        return from_schema(document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]], document)
    if "anyOf" in schema:
        return st.one_of([from_schema(option, document) for option in schema["anyOf"]])
    kind = schema.get("type")
    if kind == "object":
        properties = {name: from_schema(value, document) for name, value in schema.get("properties", {}).items()}
        required = set(schema.get("required", ()))
        return st.fixed_dictionaries({name: value for name, value in properties.items() if name in required},
                                     optional={name: value for name, value in properties.items()
                                               if name not in required})
    if kind == "array":
        items = from_schema(schema.get("items", {}), document) if schema.get("items") else json_values
        return st.lists(items, min_size=schema.get("minItems", 0), max_size=max(schema.get("minItems", 0), 5))
    if kind == "string":
        return st.text(min_size=schema.get("minLength", 0), max_size=schema.get("maxLength", 30))
    if kind == "integer":
        return st.integers(min_value=schema.get("minimum"), max_value=schema.get("maximum"))
    if kind == "number":
        return st.floats(min_value=schema.get("minimum"), max_value=schema.get("maximum"), allow_nan=False,
                         allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    return json_values


def json_routes(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(path, body schema) of each route that takes JSON."""
    found = []
    for path, methods in document["paths"].items():
        body = methods.get("post", {}).get("requestBody", {}).get("content", {}).get("application/json")
        if body is not None:
            found.append((path, body["schema"]))
    return found


def bodies(schema: dict[str, Any], document: dict[str, Any]) -> st.SearchStrategy[Any]:
    valid = from_schema(schema, document)
    mutated = st.tuples(valid, st.text(max_size=12), json_values).map(
        lambda parts: {**parts[0], parts[1]: parts[2]} if isinstance(parts[0], dict) else parts[0])
    return st.one_of(valid, mutated, json_values)


def check(url: str, path: str, body: Any) -> None:
    response = httpx.post(f"{url}{path}", json=body, timeout=60)
    assert response.status_code < 500, f"{path} {body!r}: {response.status_code} {response.text[:300]}"
    if response.headers["content-type"].startswith("text/event-stream"):
        assert "event: error" not in response.text, f"{path} {body!r}: {response.text[-300:]}"
        return
    answer = response.json()
    if response.status_code >= 400:
        assert isinstance(answer.get("error"), str) and "Traceback" not in answer["error"]


def test_the_document_covers_every_json_route(served: tuple[str, dict[str, Any]]) -> None:
    paths = {path for path, _ in json_routes(served[1])}
    assert {f"/v1/models/{name}/predict" for name in NAMES} | {"/v1/models/seq2seq/reply"} == paths


@pytest.mark.parametrize("route", range(len(NAMES) + 1))
def test_no_body_is_answered_with_a_500(served: tuple[str, dict[str, Any]], route: int) -> None:
    url, document = served
    path, schema = json_routes(document)[route]

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(bodies(schema, document))
    def fuzz(body: Any) -> None:
        check(url, path, body)

    fuzz()
