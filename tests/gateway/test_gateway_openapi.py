"""The OpenAPI document validates as 3.1 and describes exactly the routes the app serves."""

from __future__ import annotations

from openapi_spec_validator import validate

from gateway.app import ROUTES
from gateway.errors import STATUS_FOR_CODE
from gateway.openapi import openapi_document


def test_openapi_document_is_valid_3_1() -> None:
    doc = openapi_document()
    assert doc["openapi"] == "3.1.0"
    validate(doc)


def test_every_route_is_described_and_nothing_else() -> None:
    doc = openapi_document()
    described = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    served = {(method, path) for method, path, _ in ROUTES}
    assert described == served


def test_problem_codes_in_document_match_the_code_table() -> None:
    enum = openapi_document()["components"]["schemas"]["Problem"]["properties"]["code"]["enum"]
    assert enum == sorted(STATUS_FOR_CODE)


async def test_served_document_equals_module_document(gw, session) -> None:
    async with session.get(f"{gw.url}/v1/openapi.json") as resp:
        assert resp.status == 200
        assert await resp.json() == openapi_document()
