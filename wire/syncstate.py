"""Sync state: the gateway's signed account of which seqs of a device it holds.

Body members (``docs/protocol.md`` section "Sync state")::

    v, device_id, issued_at_ms,
    highest_contiguous   every seq 1..highest_contiguous is stored (0 = none)
    max_seq              highest seq stored (0 = none)
    gaps                 [[first, last], ...] missing ranges below max_seq, ascending
    last_sync_ms         receive time of the latest stored batch, or null

``parse_sync_state`` checks the members agree with each other: gaps ascend,
never touch or overlap (a stored seq lies between two gaps), end below
``max_seq``, and ``highest_contiguous`` is one below the first gap (or
``max_seq`` when there is none).

A tablet may delete a batch with ``seq <= highest_contiguous`` on a verified
sync state for its own device id, as it would on a receipt.
"""

from __future__ import annotations

from dataclasses import dataclass

from nacl.signing import SigningKey

from . import _fields as f
from .documents import DocKind, decode_document, sign_document, verify_document
from .envelope import check_device_id
from .errors import DecodeError
from .limits import DEFAULT_LIMITS, Limits

__all__ = ["SyncState", "compute_gaps", "make_sync_state", "parse_sync_state"]

_MAX_GAPS = 10_000


def compute_gaps(seqs: list[int]) -> tuple[int, int, list[tuple[int, int]]]:
    """From stored seqs (any order) return (highest_contiguous, max_seq, gaps)."""
    ordered = sorted(set(seqs))
    gaps: list[tuple[int, int]] = []
    expected = 1
    for s in ordered:
        if s > expected:
            gaps.append((expected, s - 1))
        expected = s + 1
    max_seq = ordered[-1] if ordered else 0
    highest = gaps[0][0] - 1 if gaps else max_seq
    return highest, max_seq, gaps


@dataclass(frozen=True, slots=True)
class SyncState:
    device_id: str
    issued_at_ms: int
    highest_contiguous: int
    max_seq: int
    gaps: tuple[tuple[int, int], ...]
    last_sync_ms: int | None
    raw: bytes


def make_sync_state(
    *,
    device_id: str,
    issued_at_ms: int,
    highest_contiguous: int,
    max_seq: int,
    gaps: list[tuple[int, int]],
    last_sync_ms: int | None,
    gateway_key: SigningKey,
) -> bytes:
    body = {
        "v": 1,
        "device_id": device_id,
        "issued_at_ms": issued_at_ms,
        "highest_contiguous": highest_contiguous,
        "max_seq": max_seq,
        "gaps": [[a, b] for a, b in gaps[:_MAX_GAPS]],
        "last_sync_ms": last_sync_ms,
    }
    return sign_document(DocKind.SYNC_STATE, body, gateway_key)


def parse_sync_state(data: bytes, gateway_keys: dict[bytes, bytes], limits: Limits = DEFAULT_LIMITS) -> SyncState:
    doc = decode_document(data, DocKind.SYNC_STATE, limits)
    verify_document(doc, gateway_keys)
    members = {"v", "device_id", "issued_at_ms", "highest_contiguous", "max_seq", "gaps", "last_sync_ms"}
    body = f.exact_members(doc.body, members, "sync state")
    gaps: list[tuple[int, int]] = []
    for g in f.get_list(body, "gaps", max_items=_MAX_GAPS):
        if not (isinstance(g, list) and len(g) == 2 and all(type(x) is int and x >= 1 for x in g) and g[0] <= g[1]):
            raise DecodeError("sync state gap malformed")
        if gaps and g[0] <= gaps[-1][1] + 1:
            raise DecodeError("sync state gaps overlap, touch or are out of order")
        gaps.append((g[0], g[1]))
    highest = f.get_int(body, "highest_contiguous")
    max_seq = f.get_int(body, "max_seq")
    if gaps and gaps[-1][1] >= max_seq:
        raise DecodeError("sync state gap reaches max_seq")
    if highest != (gaps[0][0] - 1 if gaps else max_seq):
        raise DecodeError("highest_contiguous disagrees with the gaps and max_seq")
    return SyncState(
        device_id=check_device_id(body["device_id"]),
        issued_at_ms=f.get_int(body, "issued_at_ms"),
        highest_contiguous=highest,
        max_seq=max_seq,
        gaps=tuple(gaps),
        last_sync_ms=f.get_opt_int(body, "last_sync_ms"),
        raw=doc.raw,
    )
