"""Property tests against the live gateway process: mutated headers, envelopes and custody records.

Hypothesis mutates what an attacker on the network controls -- the four
signature-related header fields, the envelope bytes, a station's custody
record -- and sends each example to one real ``python -m gateway serve`` on
loopback. Every answer must be a documented refusal (problem+json with a
known code and ``server_time_ms``) or, only when the mutation changed nothing
that is signed, a 200 with a receipt that verifies; never a 5xx, never an
accepted body other than the honest one. The codecs themselves are fuzzed in
``tests/wire/test_wire_fuzz.py`` (envelopes, manifests, documents) and FAT
images in ``tests/usb_ingest/test_usb_core_volume.py``; not repeated here.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.errors import STATUS_FOR_CODE
from tablet.generator import generate_sheets
from tests.gateway.harness import World, now_ms, sign
from wire import UsbHints, decode_envelope, make_custody, parse_receipt

from .bed import BlockingGateway, GatewayBed

BATCH = "application/vnd.sanaq.batch"
CUSTODY = "application/vnd.sanaq.custody"
FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@dataclass
class Live:
    world: World
    gateway: BlockingGateway
    seqs: Iterator[int]

    @property
    def authority(self) -> str:
        return self.gateway.url.removeprefix("http://")

    def exchange(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        host, port = self.authority.split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            for name, value in headers.items():
                conn.putheader(name, value)
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            raw = resp.read()
            try:
                return resp.status, json.loads(raw)
            except ValueError:
                return resp.status, raw
        finally:
            conn.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    world = World.make(n_tablets=3, n_stations=1)
    bed = GatewayBed(world, tmp_path_factory.mktemp("fuzz-gw"))
    gateway = bed.start_blocking()
    try:
        yield Live(world, gateway, itertools.count(1))
    finally:
        assert gateway.stop() == 0
        assert bed.failed_requests_logged() == 0, "the gateway logged request.failed (a 500)"


def check_refusal(status: int, body: Any) -> None:
    assert status < 500, (status, body)
    assert isinstance(body, dict), (status, body)
    assert body["code"] in STATUS_FOR_CODE and STATUS_FOR_CODE[body["code"]] == status, body
    assert isinstance(body["server_time_ms"], int)


FIELDS = ("Signature-Input", "Signature", "Content-Digest", "Content-Type")
_printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=200)


Mutation = tuple[str, str, str, int]


@st.composite
def header_mutation(draw: st.DrawFn) -> Mutation:
    """(field, kind, junk, position): replace with printable junk, cut, flip a character, double, drop."""
    field = draw(st.sampled_from(FIELDS))
    kind = draw(st.sampled_from(["replace", "cut", "flip", "double", "drop"]))
    return field, kind, draw(_printable), draw(st.integers(0, 400))


def mutate(value: str, kind: str, junk: str, n: int) -> str | None:
    at = n % (len(value) + 1)
    if kind == "replace":
        return junk
    if kind == "cut":
        return value[:at]
    if kind == "flip":
        if not value:
            return junk
        i = at % len(value)
        return value[:i] + chr((ord(value[i]) - 0x20 + 1) % 95 + 0x20) + value[i + 1 :]
    if kind == "double":
        return value + ", " + value
    return None


@FUZZ
@given(mutations=st.lists(header_mutation(), min_size=1, max_size=3))
def test_mutated_signature_headers_are_refused_cleanly(live: Live, mutations: list[Mutation], fault_ledger) -> None:
    seq = next(live.seqs)
    envelope = live.world.batch("TAB-0001", seq, generate_sheets(seq, 1, device_id="TAB-0001"))
    url = f"{live.gateway.url}/v1/batches"
    headers = sign("POST", url, live.world.tablets["TAB-0001"], envelope, BATCH)
    original = dict(headers)
    for field, kind, junk, n in mutations:
        new = mutate(headers.get(field, ""), kind, junk, n)
        if new is None:
            headers.pop(field, None)
        else:
            headers[field] = new
    status, body = live.exchange("POST", "/v1/batches", headers, envelope)
    forgery = headers != original and not _equivalent(headers, original)
    fault_ledger.add(inputs=1, crashes=int(status >= 500), forgeries_tried=int(forgery))
    if status == 200:
        # only a mutation that left every covered value as signed can pass
        fault_ledger.add(forgeries=int(forgery))
        assert parse_receipt(base64.b64decode(body["receipt"]), live.world.gateway_keys).seq == seq
        return
    check_refusal(status, body)


def _equivalent(a: dict[str, str], b: dict[str, str]) -> bool:
    return {k: v.strip(" \t") for k, v in a.items()} == {k: v.strip(" \t") for k, v in b.items()}


@st.composite
def byte_edits(draw: st.DrawFn) -> list[tuple[int, int]]:
    return draw(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=6))


@FUZZ
@given(edits=byte_edits(), cut=st.one_of(st.none(), st.integers(0, 10_000)), signer=st.sampled_from(["tab", "st"]))
def test_mutated_envelopes_are_refused_unless_unchanged(
    live: Live, edits: list[tuple[int, int]], cut: int | None, signer: str, fault_ledger
) -> None:
    seq = next(live.seqs) + 100_000
    honest = live.world.batch("TAB-0002", seq, generate_sheets(seq, 1, device_id="TAB-0002"))
    body = bytearray(honest)
    for at, value in edits:
        body[at % len(body)] = value
    if cut is not None:
        body = body[: cut % (len(body) + 1)]
    sent = bytes(body)
    key = live.world.tablets["TAB-0002"] if signer == "tab" else live.world.stations["ST-01"]
    url = f"{live.gateway.url}/v1/batches"
    status, answer = live.exchange("POST", "/v1/batches", sign("POST", url, key, sent, BATCH), sent)
    forged = status == 200 and sent != honest
    fault_ledger.add(inputs=1, crashes=int(status >= 500), forgeries_tried=int(sent != honest), forgeries=int(forged))
    if status == 200:
        assert sent == honest
        assert answer["batch_hash"] == decode_envelope(honest).batch_hash.hex()
        return
    check_refusal(status, answer)


@FUZZ
@given(edits=byte_edits(), batches=st.lists(st.integers(1, 2**53 - 1), max_size=20, unique=True))
def test_mutated_custody_records_are_refused_cleanly(
    live: Live, edits: list[tuple[int, int]], batches: list[int], fault_ledger
) -> None:
    station = live.world.stations["ST-01"]
    record = make_custody(
        station_id="ST-01",
        device_id="TAB-0003",
        pulled_at_ms=now_ms(),
        manifest_sha256=hashlib.sha256(b"m").digest(),
        batches=[(s, hashlib.sha256(s.to_bytes(8, "big")).digest()) for s in sorted(batches)],
        usb=UsbHints(vendor_id="04e8", product_id="6860", serial="R58N30ABCDE"),
        station_key=station,
    )
    body = bytearray(record)
    for at, value in edits:
        body[at % len(body)] = value
    sent = bytes(body)
    url = f"{live.gateway.url}/v1/custody"
    status, answer = live.exchange("POST", "/v1/custody", sign("POST", url, station, sent, CUSTODY), sent)
    fault_ledger.add(inputs=1, crashes=int(status >= 500), forgeries_tried=int(sent != record),
                     forgeries=int(status == 200 and sent != record))
    if status == 200:
        assert sent == record
        return
    check_refusal(status, answer)


def test_fuzz_module_uses_a_real_process(live: Live) -> None:
    assert live.gateway.proc.poll() is None
    assert Path(f"/proc/{live.gateway.proc.pid}").exists()
