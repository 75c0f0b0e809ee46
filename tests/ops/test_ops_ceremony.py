"""The key ceremony of docs/operations.md, run as written: the gateway's first snapshot lists every device."""

from __future__ import annotations

import json
import stat
import subprocess

from keys.authority import Authority
from keys.bundle import ProvisioningBundle
from keys.gateway_bundle import GatewayKeys
from wire.snapshot import accept_snapshot

from .conftest import TABLETS, Workspace
from .doc_blocks import block, run_block


def test_ceremony_as_written_seeds_the_gateway_with_every_device(workspace: Workspace) -> None:
    done = run_block("ceremony", workspace.work, workspace.env)
    work = workspace.work
    passphrase = (work / "authority.pass").read_bytes().strip()
    assert stat.S_IMODE((work / "authority.pass").stat().st_mode) == 0o600
    # The authority's keys are encrypted under the generated passphrase; it opens with it.
    assert b"ENCRYPTED PRIVATE KEY" in (work / "authority/root.key").read_bytes()
    with Authority.open(work / "authority", passphrase=passphrase) as a:
        root = a.root_public_key
        a.root_signing_key()
        receipt_keys = set(a.receipt_public_keys())
    assert len(receipt_keys) == 2  # current + the prepared next one

    gw = GatewayKeys.load(work / "out/gateway-keys")
    snap = accept_snapshot((work / "out/gateway-keys/registry.snapshot").read_bytes(), root, now_ms=0)
    assert {t.device_id for t in snap.tablets} == {t[0] for t in TABLETS}
    assert {s.station_id for s in snap.stations} == {"ST-0042"}
    assert {k.public_key for k in snap.gateway_keys} == receipt_keys
    assert gw.receipt_public_key in receipt_keys
    for device, serial, *_ in TABLETS:
        bundle = ProvisioningBundle.load(work / f"out/tablet-{device}")
        assert bundle.device_id == device and set(bundle.gateway_keys) == receipt_keys
        assert f"Enrolled tablet {device} " in done.stdout and serial
    assert ProvisioningBundle.load(work / "out/station-ST-0042").role == "station"
    # the guide's show-snapshot line printed the devices it lists
    assert "tablets: 3" in done.stdout and "stations: 1" in done.stdout
    assert gw.server_names == ("gw.census.example", "10.8.0.1", "127.0.0.1")


def test_the_old_order_would_have_listed_no_device(workspace: Workspace) -> None:
    """Why the order matters: an export made before the enrolments seeds a snapshot without devices."""
    text = block("ceremony")
    assert text.index("export-gateway") > text.index("enroll-tablet") > text.index("sanaq-keys init")
    assert text.index("export-gateway") > text.index("enroll-station")


def test_export_without_passphrase_names_the_options(workspace: Workspace) -> None:
    run_block("ceremony", workspace.work, workspace.env)
    done = subprocess.run(["sanaq-keys", "export-gateway", "--authority", "authority", "--out", "again"],
                          cwd=workspace.work, env=workspace.env, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 2
    assert done.stderr.startswith("sanaq-keys: error: passphrase-required: ")
    assert "--passphrase-file" in done.stderr and "$SANAQ_KEY_PASSPHRASE" in done.stderr
    assert "wrong-passphrase" not in done.stderr
    assert not (workspace.work / "again").exists()
    assert json.loads((workspace.work / "authority/authority.json").read_text())["v"] == 1
