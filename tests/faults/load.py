"""A simulated fleet that keeps its evidence outside the system under test.

Each tablet task posts its pre-sealed batches in seq order with fresh request
signatures, retrying until it holds a receipt. Every receipt a client receives
is written at once to ``ReceiptBook`` (in memory and a JSON-lines file in the
test's temp directory), never read back from the gateway; the checks compare
the census store with this book afterwards.

``Link`` is the address of the gateway generation in service. The test that
kills the gateway marks it down *before* the SIGKILL and publishes the next
generation after the restart; a client whose connection breaks while the link
is marked up fails the test (the gateway dropped a connection on its own),
otherwise it waits for the next generation. Nothing here sleeps for timing.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from nacl.signing import SigningKey

from tests.gateway.harness import World, sign
from wire import decode_envelope, parse_receipt

__all__ = ["BATCH", "Answer", "Link", "ReceiptBook", "TabletLoad", "fleet_envelopes", "post_envelope"]

BATCH = "application/vnd.sanaq.batch"


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: dict[str, Any]
    retry_after: str | None


async def post_envelope(session: aiohttp.ClientSession, url: str, envelope: bytes, key: SigningKey) -> Answer:
    target = f"{url}/v1/batches"
    headers = sign("POST", target, key, envelope, BATCH)
    async with session.post(target, data=envelope, headers=headers) as resp:
        body = await resp.json(content_type=None)
        return Answer(resp.status, body, resp.headers.get("Retry-After"))


class Link:
    def __init__(self, url: str) -> None:
        self.url = url
        self.generation = 0
        self.up = True
        self._changed = asyncio.Condition()

    def mark_down(self) -> None:
        self.up = False

    async def publish(self, url: str) -> None:
        async with self._changed:
            self.url = url
            self.generation += 1
            self.up = True
            self._changed.notify_all()

    async def wait_newer(self, generation: int) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.generation > generation)


@dataclass
class ReceiptBook:
    """Receipts as the clients received them: (device, seq) -> receipt bytes; appended to ``path``."""

    path: Path
    gateway_keys: dict[bytes, bytes]
    receipts: dict[tuple[str, int], bytes] = field(default_factory=dict)
    statuses: Counter[int] = field(default_factory=Counter)
    requests: int = 0
    listeners: list[Callable[[int], None]] = field(default_factory=list)

    def record(self, device_id: str, seq: int, answer: Answer) -> None:
        self.requests += 1
        self.statuses[answer.status] += 1
        if answer.status != 200:
            return
        raw = base64.b64decode(answer.body["receipt"])
        receipt = parse_receipt(raw, self.gateway_keys)  # a client keeps only receipts that verify
        assert (receipt.device_id, receipt.seq) == (device_id, seq), answer.body
        held = self.receipts.get((device_id, seq))
        assert held is None or held == raw, f"two different receipts for {device_id}/{seq}"
        self.receipts[(device_id, seq)] = raw
        with self.path.open("a") as f:
            f.write(json.dumps({"device_id": device_id, "seq": seq, "receipt": answer.body["receipt"]}) + "\n")
        for listener in self.listeners:
            listener(len(self.receipts))

    def from_file(self) -> dict[tuple[str, int], bytes]:
        out: dict[tuple[str, int], bytes] = {}
        for line in self.path.read_text().splitlines():
            rec = json.loads(line)
            out[(rec["device_id"], rec["seq"])] = base64.b64decode(rec["receipt"])
        return out


def fleet_envelopes(
    world: World, batches_per_tablet: int, sheets: Callable[[str, int], list[Any]]
) -> dict[str, list[bytes]]:
    """device id -> its envelopes, seq 1..n, sealed once (a tablet never re-seals)."""
    return {d: [world.batch(d, seq, sheets(d, seq)) for seq in range(1, batches_per_tablet + 1)] for d in world.tablets}


@dataclass
class TabletLoad:
    """One tablet posting ``envelopes[i]`` as seq ``i + 1`` until each is receipted."""

    device_id: str
    key: SigningKey
    envelopes: list[bytes]
    book: ReceiptBook
    link: Link
    retryable: frozenset[int] = frozenset()
    seen: Counter[int] = field(default_factory=Counter)
    interrupted: int = 0

    async def run(self, session: aiohttp.ClientSession, seqs: Iterable[int] | None = None) -> None:
        for seq in seqs if seqs is not None else range(1, len(self.envelopes) + 1):
            await self.deliver(session, seq)

    async def deliver(self, session: aiohttp.ClientSession, seq: int) -> Answer:
        envelope = self.envelopes[seq - 1]
        while True:
            generation, url = self.link.generation, self.link.url
            try:
                answer = await post_envelope(session, url, envelope, self.key)
            except (TimeoutError, aiohttp.ClientError, ValueError):
                # ValueError or ClientPayloadError: an answer cut short by the kill
                if self.link.up and generation == self.link.generation:
                    raise
                self.interrupted += 1
                await self.link.wait_newer(generation)
                continue
            self.seen[answer.status] += 1
            self.book.record(self.device_id, seq, answer)
            if answer.status == 200:
                assert answer.body["batch_hash"] == decode_envelope(envelope).batch_hash.hex()
                return answer
            assert answer.status in self.retryable, (self.device_id, seq, answer)
            await self.link.wait_newer(generation)
