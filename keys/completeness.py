"""The return rule: does a gateway-signed sync state prove a tablet's data is complete?

Pure (bytes and keys in, a reason out), so the rule is tested without a
database. DESIGN: a tablet can be marked returned only when every seq it
produced is receipted, or the gap is explained and signed off; this module
answers the first half, ``Registry.mark_returned`` applies the second.
"""

from __future__ import annotations

from collections.abc import Mapping

from wire.errors import WireError
from wire.syncstate import parse_sync_state

__all__ = ["completeness_problem"]


def completeness_problem(
    device_id: str, gateway_keys: Mapping[bytes, bytes], sync_state: bytes | None, last_seq: int | None
) -> str | None:
    """``None`` when ``sync_state`` proves seqs 1..last_seq are all held, else why not."""
    if sync_state is None:
        return "no sync state given"
    if last_seq is None or last_seq < 0:
        return "the tablet's last seq is needed with a sync state"
    try:
        state = parse_sync_state(sync_state, dict(gateway_keys))
    except WireError as e:
        return f"sync state does not verify ({e.code})"
    if state.device_id != device_id:
        return f"sync state is for device {state.device_id}"
    if state.gaps:
        first, last = state.gaps[0]
        return f"gateway is missing seqs (first gap {first}..{last})"
    if state.highest_contiguous != state.max_seq:
        return f"gateway holds seqs 1..{state.highest_contiguous} contiguously but up to {state.max_seq}"
    if state.max_seq < last_seq:
        return f"gateway holds seqs up to {state.max_seq}, tablet produced up to {last_seq}"
    if state.max_seq > last_seq:
        return f"gateway holds seq {state.max_seq} beyond the tablet's last seq {last_seq}"
    return None
