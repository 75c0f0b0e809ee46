"""The USB daemon SIGKILLed while it forwards, at exact points of the exchange with the gateway.

``tests/usb_ingest/test_usb_core_cli.py`` kills ``pull`` at random log
events, mostly while it spools. Here every kill lands in the forward phase,
at one of three points, by a proxy between daemon and the real gateway:

* ``request``  - the n-th batch POST reached the proxy; the daemon dies before
  the gateway sees a byte of it;
* ``answer``   - the gateway stored the batch and answered; the daemon dies
  before it sees the answer (the "slow gateway" case: stored, not receipted);
* ``delivered`` - right after the daemon logged its n-th
  ``usb.forward.delivered`` (receipt logged, entry removed).

Between kills: no complete-looking spool file that is not the verified
envelope, and every batch the gateway stored is receipted or still pending
at the station. After a clean run: every batch stored exactly once with the
tablet's bytes, ``receipts.jsonl`` holds each seq exactly once, nothing pending.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tests.usb_ingest.images import Env, Gateway, export

from .test_faults_usb_bed import (
    DEVICE,
    Audit,
    HoldProxy,
    UsbRun,
    receipt_lines,
    run_usb,
    sigkill,
    spawn_usb,
    write_config,
)

BATCHES = 16
# (where, n): kill at the n-th such point of the round (counted from the round's start)
PLAN = [("answer", 1), ("request", 2), ("delivered", 2), ("answer", 2), ("delivered", 1), ("request", 1),
        ("answer", 3)]


async def pull_killed_at(proxy: HoldProxy, args: list[str], where: str, n: int) -> tuple[UsbRun, bool]:
    """One ``pull`` run; SIGKILL at the n-th ``where`` point. Returns the run and whether the kill fired."""
    proc = await spawn_usb(*args)
    assert proc.stdout is not None and proc.stderr is not None
    base = proxy.posts
    fired = False

    async def at_request(k: int) -> bool:
        nonlocal fired
        if where == "request" and k - base == n:
            sigkill(proc)
            fired = True
            return False
        return True

    async def at_answer(k: int) -> bool:
        nonlocal fired
        if where == "answer" and k - base == n:
            sigkill(proc)
            fired = True
            return False
        return True

    proxy.on_request, proxy.on_answer = at_request, at_answer
    out_task = asyncio.create_task(proc.stdout.read())
    err: list[bytes] = []
    delivered = 0
    async with asyncio.timeout(60):
        while line := await proc.stderr.readline():
            err.append(line)
            if line.startswith(b"{") and json.loads(line)["event"] == "usb.forward.delivered":
                delivered += 1
                if where == "delivered" and delivered == n:
                    sigkill(proc)
                    fired = True
        await proc.wait()
    out = await out_task
    proxy.on_request = proxy.on_answer = None
    assert proc.returncode is not None
    return UsbRun(proc.returncode, out.decode(), b"".join(err).decode(errors="replace")), fired


async def test_sigkill_at_exact_points_of_forwarding_loses_and_doubles_nothing(
    env: Env, gw: Gateway, tmp_path: Path, fault_ledger
) -> None:
    image = tmp_path / "tab.img"
    envelopes = export(env, image, DEVICE, range(1, BATCHES + 1))
    audit = Audit(env, gw, envelopes)
    proxy = await HoldProxy(int(gw.url.rsplit(":", 1)[1])).start()
    config = write_config(env, tmp_path / "usb.toml", proxy.url)
    args = ["pull", str(image), "--config", str(config), "--json", "--wait", "20"]
    kills: list[tuple[str, int]] = []
    crashes = lost = 0
    stored_unreceipted = 0
    try:
        for where, n in PLAN:
            run, fired = await pull_killed_at(proxy, args, where, n)
            if fired:
                kills.append((where, n))
            else:
                crashes += int(run.crashed)
            receipted = {s for _, s, _ in receipt_lines(env.state_dir)}
            stored_unreceipted += sum(1 for s, _, _ in audit.stored() if s not in receipted)
            lost += audit.lost()
        clean = await run_usb(*args)
    finally:
        await proxy.close()
    crashes += int(clean.crashed)
    missing, doubled = audit.outcome()
    per_seq = audit.receipt_line_counts()
    fault_ledger.add(inputs=proxy.posts, faults=len(kills), lost=lost + missing + audit.bad, duplicates=doubled,
                     crashes=crashes)
    assert (lost, missing, doubled, audit.bad, crashes) == (0, 0, 0, 0, 0), audit.notes
    assert {w for w, _ in kills} == {"request", "answer", "delivered"} and len(kills) >= len(PLAN) - 1, kills
    assert stored_unreceipted > 0, "no kill fell between the gateway's commit and the daemon's receipt"
    assert clean.code == 0, clean.stderr
    assert dict(per_seq) == dict.fromkeys(envelopes, 1), f"receipt lines per seq: {dict(per_seq)}"

