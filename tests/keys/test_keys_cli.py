"""``sanaq-keys`` end to end, as an operator runs it: real subprocesses on a real authority directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from keys.authority import Authority
from keys.enrollment import enroll_tablet
from keys.files import atomic_write
from wire.syncstate import make_sync_state

from .conftest import DAY_MS, NOW

SANAQ_KEYS = Path(sys.executable).parent / "sanaq-keys"
URL = "https://127.0.0.1:8443"


def run(*args: str | Path, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SANAQ_")}
    full_env.update(env or {})
    proc = subprocess.run([str(SANAQ_KEYS), *map(str, args)], capture_output=True, text=True, env=full_env,
                          timeout=60, check=False)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def run_json(*args: str | Path, env: dict[str, str] | None = None) -> Any:
    return json.loads(run(*args, "--json", env=env).stdout)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], code: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"sanaq-keys: error: {code}"), lines[0]


def test_script_is_installed() -> None:
    assert SANAQ_KEYS.exists(), "run .venv/bin/pip install -e /work/main --no-deps"


def test_operator_workflow(tmp_path: Path) -> None:
    auth = tmp_path / "authority"
    init = run_json("init", auth, "--server-name", "gw.census.example", "--server-name", "10.0.0.5")
    assert init["snapshot_version"] == 1 and init["encrypted"] is False
    assert init["server_names"] == ["gw.census.example", "10.0.0.5"]

    tablet = run_json("enroll-tablet", "--authority", auth, "--device-id", "T-0001", "--usb-serial", "R58M1",
                      "--institution", "HOSP-01", "--worker-id", "W-17", "--worker-name", "Aigerim N.",
                      "--act-no", "ACT-9", "--gateway-url", URL, "--out", tmp_path / "t1")
    assert (tablet["role"], tablet["id"], tablet["snapshot_version"]) == ("tablet", "T-0001", 2)
    station = run_json("enroll-station", "--authority", auth, "--station-id", "ST-1", "--location", "Room 4",
                       "--gateway-url", URL, "--out", tmp_path / "s1")
    assert station["snapshot_version"] == 3

    listing = run_json("list", "--authority", auth)
    assert [(t["device_id"], t["status"], t["worker_name"], t["act_no"]) for t in listing["tablets"]] == [
        ("T-0001", "issued", "Aigerim N.", "ACT-9")]
    assert [(s["station_id"], s["status"]) for s in listing["stations"]] == [("ST-1", "active")]
    assert listing["latest_snapshot_version"] == 3
    assert "PRIVATE" not in json.dumps(listing)

    human = run("list", "--authority", auth).stdout
    assert "T-0001" in human and "ST-1" in human and "Aigerim N." in human

    revoked = run_json("revoke", "--authority", auth, "ST-1", "--reason", "machine stolen")
    assert (revoked["status"], revoked["snapshot_version"]) == ("revoked", 4)

    published = run_json("publish", "--authority", auth, "--validity-days", "2", "--out", tmp_path / "snap.bin")
    assert published["version"] == 5
    assert published["expires_at_ms"] - published["published_at_ms"] == 2 * DAY_MS
    assert (tmp_path / "snap.bin").read_bytes() == (auth / "registry.snapshot").read_bytes()

    shown = run_json("show-snapshot", tmp_path / "snap.bin", "--authority", auth)
    assert shown["version"] == 5 and shown["expired"] is False
    assert [(s["station_id"], s["status"]) for s in shown["stations"]] == [("ST-1", "revoked")]
    assert "worker_name" not in json.dumps(shown["tablets"])
    text = run("show-snapshot", tmp_path / "snap.bin", "--root-pub", auth / "root.pub").stdout
    assert "signature OK" in text and "version 5" in text

    history = run_json("history", "--authority", auth, "ST-1")
    assert [(e["from_status"], e["to_status"]) for e in history] == [(None, "active"), ("active", "revoked")]

    gw = run_json("export-gateway", "--authority", auth, "--out", tmp_path / "gw")
    assert gw["server_names"] == ["gw.census.example", "10.0.0.5"]
    assert not (tmp_path / "gw" / "root.key").exists()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An authority with tablet T-1 issued and T-X revoked, for refused commands (state stays the same)."""
    base = tmp_path_factory.mktemp("cli")
    with Authority.create(base / "auth", now_ms=NOW) as a:
        enroll_tablet(a, base / "t1", device_id="T-1", usb_serial="S", institution="I", worker_id="W",
                      gateway_url=URL, now_ms=NOW)
        enroll_tablet(a, base / "tx", device_id="T-X", usb_serial="S2", institution="I", worker_id="W",
                      gateway_url=URL, now_ms=NOW)
        a.registry.revoke("T-X", reason="stolen", now_ms=NOW)
        a.publish(now_ms=NOW)
    (base / "not-empty").mkdir()
    (base / "not-empty" / "file").write_text("x")
    (base / "garbage.snapshot").write_bytes(b"garbage, not a signed document")
    atomic_write(base / "wrong-pw", b"not the passphrase\n")
    atomic_write(base / "loose-pw", b"pw\n")
    os.chmod(base / "loose-pw", 0o644)
    return base


ERROR_CASES = [
    ("duplicate-device", ["enroll-tablet", "--authority", "{b}/auth", "--device-id", "T-1", "--usb-serial", "S",
                          "--institution", "I", "--worker-id", "W", "--gateway-url", URL, "--out", "{b}/dup"]),
    ("invalid-record", ["enroll-tablet", "--authority", "{b}/auth", "--device-id", "bad id", "--usb-serial", "S",
                        "--institution", "I", "--worker-id", "W", "--gateway-url", URL, "--out", "{b}/bad"]),
    ("bundle", ["enroll-station", "--authority", "{b}/auth", "--station-id", "ST-2", "--gateway-url",
                "http://plain.example", "--out", "{b}/st2"]),
    ("bundle", ["enroll-station", "--authority", "{b}/auth", "--station-id", "ST-2", "--gateway-url", URL,
                "--out", "{b}/t1"]),
    ("unknown-device", ["revoke", "--authority", "{b}/auth", "T-404", "--reason", "x"]),
    ("wrong-passphrase", ["revoke", "--authority", "{b}/auth", "T-1", "--reason", "x", "--passphrase-file",
                          "{b}/wrong-pw"]),
    ("invalid-transition", ["mark-lost", "--authority", "{b}/auth", "T-X", "--reason", "x"]),
    ("invalid-transition", ["mark-returned", "--authority", "{b}/auth", "T-X", "--signoff", "x"]),
    ("unknown-device", ["mark-lost", "--authority", "{b}/auth", "T-404", "--reason", "x"]),
    ("incomplete-return", ["mark-returned", "--authority", "{b}/auth", "T-1", "--sync-state",
                           "{b}/garbage.snapshot", "--last-seq", "3"]),
    ("authority", ["list", "--authority", "{b}/not-empty"]),
    ("authority", ["init", "{b}/not-empty"]),
    ("wrong-passphrase", ["publish", "--authority", "{b}/auth", "--passphrase-file", "{b}/wrong-pw"]),
    ("loose-permissions", ["publish", "--authority", "{b}/auth", "--passphrase-file", "{b}/loose-pw"]),
    ("key-file-missing", ["publish", "--authority", "{b}/auth", "--passphrase-file", "{b}/absent"]),
    ("malformed", ["show-snapshot", "{b}/garbage.snapshot", "--authority", "{b}/auth"]),
    ("io", ["show-snapshot", "{b}/absent.snapshot", "--authority", "{b}/auth"]),
    ("unknown-key", ["show-snapshot", "{b}/auth/registry.snapshot", "--root-pub", "ab" * 32]),
    ("bundle", ["export-gateway", "--authority", "{b}/auth", "--out", "{b}/t1"]),
]


@pytest.mark.parametrize(("code", "argv"), ERROR_CASES, ids=[f"{c}-{a[0]}-{i}" for i, (c, a) in
                                                             enumerate(ERROR_CASES)])
def test_refusals_are_one_line_exit_2(shared: Path, code: str, argv: list[str]) -> None:
    before = (shared / "auth" / "registry.snapshot").read_bytes()
    proc = run(*[a.format(b=shared) for a in argv], check=False)
    assert_one_line_error(proc, code)
    assert (shared / "auth" / "registry.snapshot").read_bytes() == before
    with Authority.open(shared / "auth") as a:
        assert [(t.device_id, t.status) for t in a.registry.list_tablets()] == [("T-1", "issued"), ("T-X", "revoked")]
        assert a.registry.list_stations() == []


def test_wrong_passphrase_from_env(shared: Path) -> None:
    proc = run("publish", "--authority", shared / "auth", env={"SANAQ_KEY_PASSPHRASE": "nope"}, check=False)
    assert_one_line_error(proc, "wrong-passphrase")


@pytest.mark.parametrize(
    "argv",
    [
        ["mark-returned", "--authority", "{b}/auth", "T-1"],
        ["mark-returned", "--authority", "{b}/auth", "T-1", "--last-seq", "3"],
        ["enroll-tablet", "--authority", "{b}/auth"],
        ["publish", "--authority", "{b}/auth", "--validity-days", "0"],
        ["show-snapshot", "{b}/auth/registry.snapshot"],
        ["no-such-command"],
        ["init", "{b}/x", "--passphrase", "on-argv-is-refused"],
    ],
)
def test_usage_errors_exit_2(shared: Path, argv: list[str]) -> None:
    proc = run(*[a.format(b=shared) for a in argv], check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "usage:" in proc.stderr


def test_encrypted_authority_and_returns(tmp_path: Path) -> None:
    auth = tmp_path / "auth"
    pw = tmp_path / "pw"
    atomic_write(pw, b"operator passphrase\n")
    run("init", auth, "--passphrase-file", pw)
    assert b"ENCRYPTED" in (auth / "root.key").read_bytes()
    env = {"SANAQ_KEY_PASSPHRASE": "operator passphrase"}
    for device in ("T-1", "T-2"):
        run("enroll-tablet", "--authority", auth, "--device-id", device, "--usb-serial", f"S{device}",
            "--institution", "I", "--worker-id", "W", "--gateway-url", URL, "--out", tmp_path / device, env=env)

    with Authority.open(auth, passphrase=b"operator passphrase") as a:
        gateway = a.gateway_signing_key()
    complete = tmp_path / "complete.state"
    complete.write_bytes(make_sync_state(device_id="T-1", issued_at_ms=NOW, highest_contiguous=42, max_seq=42,
                                         gaps=[], last_sync_ms=NOW, gateway_key=gateway))
    gappy = tmp_path / "gappy.state"
    gappy.write_bytes(make_sync_state(device_id="T-2", issued_at_ms=NOW, highest_contiguous=9, max_seq=42,
                                      gaps=[(10, 11)], last_sync_ms=NOW, gateway_key=gateway))

    out = run_json("mark-returned", "--authority", auth, "T-1", "--sync-state", complete, "--last-seq", "42",
                   env=env)
    assert out["status"] == "returned" and out["snapshot_version"] == 4
    refused = run("mark-returned", "--authority", auth, "T-2", "--sync-state", gappy, "--last-seq", "42",
                  env=env, check=False)
    assert_one_line_error(refused, "incomplete-return")
    assert "10..11" in refused.stderr
    out = run_json("mark-returned", "--authority", auth, "T-2", "--sync-state", gappy, "--last-seq", "42",
                   "--signoff", "seqs 10-11 lost with the SD card, act 31", "--no-publish", env=env)
    assert out["status"] == "returned" and out["snapshot_version"] is None
    assert "act 31" in out["reason"]
    assert run_json("list", "--authority", auth)["latest_snapshot_version"] == 4


def test_show_snapshot_expired_exits_1(tmp_path: Path) -> None:
    auth = tmp_path / "auth"
    run("--now-ms", str(NOW), "init", auth, "--validity-days", "1")
    fresh = run("--now-ms", str(NOW + DAY_MS - 1), "show-snapshot", auth / "registry.snapshot", "--authority", auth,
                check=False)
    assert fresh.returncode == 0 and "EXPIRED" not in fresh.stdout
    stale = run("--now-ms", str(NOW + DAY_MS), "show-snapshot", auth / "registry.snapshot", "--authority", auth,
                check=False)
    assert stale.returncode == 1 and "EXPIRED" in stale.stdout
