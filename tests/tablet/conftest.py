"""Shared pieces for the tablet tests: fixed keys, a tablet identity, an outbox in tmp_path, signed proofs."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from tablet.generator import generate_sheets
from tablet.identity import TabletIdentity
from tablet.outbox import Outbox
from wire import Receipt, SyncState, key_id, make_receipt, make_sync_state, parse_receipt, parse_sync_state

DEVICE_ID = "tab-0001"
NOW = 1_790_000_000_000


@dataclass(frozen=True)
class Keys:
    device: SigningKey
    data: PrivateKey
    gateway: SigningKey

    @property
    def data_public(self) -> bytes:
        return bytes(self.data.public_key)

    @property
    def gateway_map(self) -> dict[bytes, bytes]:
        pub = bytes(self.gateway.verify_key)
        return {key_id(pub): pub}


@pytest.fixture
def keys() -> Keys:
    return Keys(SigningKey(b"\x11" * 32), PrivateKey(b"\x22" * 32), SigningKey(b"\x33" * 32))


@pytest.fixture
def identity(keys: Keys) -> TabletIdentity:
    return TabletIdentity(
        device_id=DEVICE_ID,
        signing_key=keys.device,
        data_public_key=keys.data_public,
        usb_serial="R58N30ABCDE",
        gateway_keys=(bytes(keys.gateway.verify_key),),
        worker_id="rw-0001",
    )


def counter_rng() -> Callable[[int], bytes]:
    """Deterministic stand-in for os.urandom: distinct bytes on every call."""
    state = {"n": 0}

    def rng(n: int) -> bytes:
        state["n"] += 1
        return hashlib.sha256(f"eph-{state['n']}".encode()).digest()[:n]

    return rng


@pytest.fixture
def outbox_path(tmp_path: Path) -> Path:
    return tmp_path / "outbox.db"


@pytest.fixture
def outbox(outbox_path: Path) -> Iterator[Outbox]:
    ob = Outbox.open(outbox_path, device_id=DEVICE_ID, now_ms=NOW)
    yield ob
    ob.close()


def sheets(count: int, seed: int = 7, start: int = 0) -> list[dict]:
    return generate_sheets(seed, count, device_id=DEVICE_ID, start=start)


def receipt_for(
    keys: Keys,
    *,
    batch_hash: bytes,
    seq: int,
    records: int,
    device_id: str = DEVICE_ID,
    quarantined: int = 0,
    road: str = "online",
) -> Receipt:
    raw = make_receipt(
        batch_hash=batch_hash, device_id=device_id, seq=seq, received_at_ms=NOW + 5_000, road=road,
        sheets_accepted=records - quarantined, sheets_quarantined=quarantined, gateway_key=keys.gateway,
    )
    return parse_receipt(raw, keys.gateway_map)


def sync_state_for(
    keys: Keys, *, highest: int, max_seq: int | None = None, issued_at_ms: int = NOW + 60_000,
    device_id: str = DEVICE_ID,
) -> SyncState:
    max_seq = highest if max_seq is None else max_seq
    gaps = [(highest + 1, max_seq - 1)] if max_seq > highest + 1 else []
    raw = make_sync_state(
        device_id=device_id, issued_at_ms=issued_at_ms, highest_contiguous=highest, max_seq=max_seq, gaps=gaps,
        last_sync_ms=NOW if max_seq else None, gateway_key=keys.gateway,
    )
    return parse_sync_state(raw, keys.gateway_map)
