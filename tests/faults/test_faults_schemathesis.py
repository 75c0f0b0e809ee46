"""Schemathesis against ``/v1/openapi.json`` of the real gateway process: no 500s, nothing off-schema.

The schema is read from the running process, so the document and the
behaviour are checked together. For every operation, a bounded number of
generated requests is sent twice:

* as generated (no valid signature can be guessed): every answer must be one
  the document lists, with its media type and schema;
* signed: each generated request gets a valid RFC 9421 signature by an
  enrolled tablet (POST/PUT) or station (GET) over exactly the bytes sent, so
  generated bodies and path parameters reach the code behind authentication.

The binary media types get a strategy of random bytes mixed with real
envelopes, snapshots and custody records (``schemathesis.openapi.media_type``).
``positive_data_acceptance`` is left out: a request valid by the schema is
still refused without a valid signature or envelope, which is the point.

Schemathesis' own pytest integration (``from_fixture``) does not run under
pytest 9 (it reads ``Function._nodeid``), so the operations are driven with
its Python API and Hypothesis directly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance

from gateway.openapi import openapi_document
from tablet.generator import generate_sheets
from tests.gateway.harness import World, now_ms, sign
from wire import UsbHints, make_custody

from .bed import BlockingGateway, GatewayBed

EXAMPLES = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
OPERATIONS = [(path, method.upper()) for path, item in openapi_document()["paths"].items() for method in item]


def _register_media_types(world: World) -> None:
    envelopes = [world.batch("TAB-0001", seq, generate_sheets(seq, 1, device_id="TAB-0001")) for seq in (1, 2)]
    custody = make_custody(
        station_id="ST-01",
        device_id="TAB-0001",
        pulled_at_ms=now_ms(),
        manifest_sha256=hashlib.sha256(b"").digest(),
        batches=[(1, hashlib.sha256(envelopes[0]).digest())],
        usb=UsbHints(vendor_id="04e8", product_id="6860", serial="R58"),
        station_key=world.stations["ST-01"],
    )
    media = {
        "application/vnd.sanaq.batch": envelopes,
        "application/vnd.sanaq.snapshot": [world.snapshot(version=1)],
        "application/vnd.sanaq.custody": [custody],
    }
    for name, real in media.items():
        schemathesis.openapi.media_type(name, st.one_of(st.binary(max_size=2048), st.sampled_from(real)))


@pytest.fixture(scope="module")
def live_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[World, BlockingGateway, Any]]:
    world = World.make(n_tablets=2, n_stations=1)
    bed = GatewayBed(world, tmp_path_factory.mktemp("schemathesis-gw"))
    _register_media_types(world)
    gateway = bed.start_blocking()
    try:
        schema = schemathesis.openapi.from_url(f"{gateway.url}/v1/openapi.json")
        yield world, gateway, schema
    finally:
        assert gateway.stop() == 0
        assert bed.failed_requests_logged() == 0, "the gateway logged request.failed (a 500)"


def _signed_headers(case: Any, world: World, base_url: str) -> dict[str, str]:
    kwargs = case.as_transport_kwargs(base_url=base_url)
    method, url = kwargs["method"].upper(), kwargs["url"]
    headers = dict(kwargs.get("headers") or {})
    body = kwargs.get("data", b"")
    if "?" in url or not isinstance(body, bytes | None):
        return headers
    if method in ("POST", "PUT") and headers.get("Content-Type") and body:
        signer = world.stations["ST-01"] if url.endswith("/v1/custody") else world.tablets["TAB-0001"]
        headers.update(sign(method, url, signer, body, headers["Content-Type"]))
    elif method == "GET" and not body:
        headers.update(sign(method, url, world.stations["ST-01"]))
    return headers


@pytest.mark.parametrize("signed", [False, True], ids=["as-generated", "signed"])
@pytest.mark.parametrize(("path", "method"), OPERATIONS, ids=[f"{m} {p}" for p, m in OPERATIONS])
def test_generated_requests_get_documented_answers(
    path: str, method: str, signed: bool, live_gateway: Any, fault_ledger
) -> None:
    world, gateway, schema = live_gateway
    operation = schema[path][method]

    @EXAMPLES
    @given(case=operation.as_strategy())
    def run(case: Any) -> None:
        headers = _signed_headers(case, world, gateway.url) if signed else None
        response = case.call_and_validate(
            base_url=gateway.url, headers=headers, excluded_checks=[positive_data_acceptance]
        )
        fault_ledger.add(inputs=1, crashes=int(response.status_code >= 500))

    run()
