"""Every rotation of docs/operations.md, run as written under a real gateway while reference tablets sync.

One story, in the guide's order: the ceremony, the gateway install, a push,
then TLS, receipt and data-key rotations. Between the steps real
``sanaq-tablet`` processes fill, seal and sync over HTTPS (pinning the census
CA); every sync must end with every batch receipted, so nothing that should
be accepted is refused, across restarts with new keys.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess

from cryptography import x509

from keys.authority import Authority
from tablet.identity import OUTBOX_FILE
from tablet.outbox import Outbox
from wire.errors import WireError
from wire.keyids import key_id
from wire.receipt import parse_receipt
from wire.snapshot import accept_snapshot

from .conftest import Workspace
from .doc_blocks import run_block


def _tablet(ws: Workspace, device: str, *args: str) -> subprocess.CompletedProcess[str]:
    home = ws.root / "tablets" / device
    home.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["sanaq-tablet", "--home", str(home), "--json", *args], cwd=ws.work, env=ws.env,
                          capture_output=True, text=True, timeout=120, check=False)


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"{done.args}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def provision(ws: Workspace, device: str) -> None:
    _ok(_tablet(ws, device, "init", "--bundle", str(ws.work / f"out/tablet-{device}")))


def fill_and_sync(ws: Workspace, device: str, seed: int, *, sync: bool = True) -> None:
    _ok(_tablet(ws, device, "fill", "--seed", str(seed), "--count", "3"))
    _ok(_tablet(ws, device, "pack"))
    if sync:
        out = json.loads(_ok(_tablet(ws, device, "sync", "--gateway", ws.url)))
        assert out["pending_after"] == 0 and not out["refusals"], out


def receipts(ws: Workspace, device: str) -> list[bytes]:
    with Outbox.open(ws.root / "tablets" / device / OUTBOX_FILE, device_id=device, now_ms=0) as box:
        return [r for seq in range(1, box.stats().next_seq) if (r := box.receipt(seq)) is not None]


def served_certificate(ws: Workspace) -> x509.Certificate:
    ctx = ssl.create_default_context(cafile=str(ws.work / "authority/ca.crt"))
    with socket.create_connection(("127.0.0.1", ws.port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def signer(receipt: bytes, keys: list[bytes]) -> bytes:
    """Which of ``keys`` signed ``receipt`` (each tried alone)."""
    for k in keys:
        try:
            parse_receipt(receipt, {key_id(k): k})
        except WireError:
            continue
        return k
    raise AssertionError("no key verifies the receipt")


def authority(ws: Workspace) -> Authority:
    return Authority.open(ws.work / "authority", passphrase=(ws.work / "authority.pass").read_bytes().strip())


def test_ceremony_install_push_and_every_rotation_with_tablets_syncing(workspace: Workspace) -> None:
    ws = workspace
    run_block("ceremony", ws.work, ws.env)
    ws.env["SANAQ_KEY_PASSPHRASE"] = (ws.work / "authority.pass").read_text().strip()  # the ceremony's export
    ws.write_gateway_config()
    run_block("gateway-install", ws.work, ws.env)
    pushed = run_block("push", ws.work, ws.env).stdout
    assert f"{ws.url}: ok, version" in pushed and "up to date; ready" in pushed

    for device in ("TAB-0001", "TAB-0002", "TAB-0003"):
        provision(ws, device)
    fill_and_sync(ws, "TAB-0001", seed=1)
    fill_and_sync(ws, "TAB-0002", seed=2)
    with authority(ws) as a:
        first_receipt_key = a.gateway_public_key

    # TLS: a new certificate is served after the restart; tablets (pinning the CA) keep syncing.
    before = served_certificate(ws).serial_number
    run_block("rotate-tls", ws.work, ws.env)
    after = served_certificate(ws)
    assert after.serial_number != before
    assert after.serial_number == x509.load_pem_x509_certificate(
        (ws.work / "authority/gateway-tls.crt").read_bytes()).serial_number
    fill_and_sync(ws, "TAB-0001", seed=3)

    # Receipt key: the gateway switches to the key prepared at the ceremony; tablets enrolled then accept it.
    run_block("rotate-receipt", ws.work, ws.env)
    with authority(ws) as a:
        new_receipt_key = a.gateway_public_key
        listed = a.receipt_public_keys()
    assert new_receipt_key != first_receipt_key and first_receipt_key in listed
    fill_and_sync(ws, "TAB-0002", seed=4)
    fill_and_sync(ws, "TAB-0003", seed=5)
    r2 = receipts(ws, "TAB-0002")
    assert signer(r2[0], listed) == first_receipt_key and signer(r2[-1], listed) == new_receipt_key
    snap = accept_snapshot((ws.work / "authority/registry.snapshot").read_bytes(), _root(ws), now_ms=0)
    old_receipts_keys = snap.gateway_key_map()
    for r in r2:  # every receipt, before and after, verifies under the latest snapshot's keys
        parse_receipt(r, old_receipts_keys)

    # Data key: a batch sealed to the old key before the rotation arrives after it and still opens;
    # a tablet enrolled after the rotation seals to the new key.
    fill_and_sync(ws, "TAB-0003", seed=6, sync=False)  # sealed now, delivered after the rotation
    run_block("rotate-data", ws.work, ws.env)
    out = json.loads(_ok(_tablet(ws, "TAB-0003", "sync", "--gateway", ws.url)))
    assert out["pending_after"] == 0 and out["stored"] >= 1 and not out["refusals"], out
    _ok(subprocess.run(["sanaq-keys", "enroll-tablet", "--authority", "authority", "--device-id", "TAB-0004",
                        "--usb-serial", "R58M0004", "--institution", "SCH-04", "--worker-id", "W-40",
                        "--gateway-url", "https://gw.census.example:8443", "--out", "out/tablet-TAB-0004"],
                       cwd=ws.work, env=ws.env, capture_output=True, text=True, timeout=60, check=False))
    pushed = run_block("push", ws.work, ws.env).stdout
    assert "up to date; ready" in pushed
    provision(ws, "TAB-0004")
    fill_and_sync(ws, "TAB-0004", seed=7)
    fill_and_sync(ws, "TAB-0001", seed=8)

    log = ws.gateway_log()
    assert '"wrong-recipient"' not in log and '"security.event"' not in log
    assert log.count('"event": "batch.stored"') == 8, log[-3000:]  # every fill above, each stored once


def _root(ws: Workspace) -> bytes:
    return bytes.fromhex((ws.work / "authority/root.pub").read_text().strip())
