"""What the technician is told when the gateway refuses the station itself, or another process holds the spool."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from pathlib import Path

import pytest

from usb_ingest.__main__ import main

from .images import Env, export, now_ms, serve_gateway
from .test_usb_core_cli import cli

SEQS = range(1, 4)


async def test_a_revoked_station_says_spooled_not_delivered_and_why(env: Env, tmp_path: Path) -> None:
    image = tmp_path / "tab.img"
    export(env, image, "TAB-0001", SEQS)
    env.authority.registry.revoke("ST-01", reason="machine stolen", now_ms=now_ms())
    gw = await serve_gateway(env, tmp_path / "census.db", snapshot=env.publish())
    try:
        config = env.write_config(tmp_path / "usb-ingest.toml", gw.url)
        code, out, err = await cli("pull", str(image), "--config", str(config), "--wait", "2")
    finally:
        await gw.stop()
    assert code == 1, out + err
    assert "every spooled batch is receipted" not in out
    assert "You may unplug" not in out
    assert "3 new batches spooled" in out
    assert "NOT delivered: the gateway refuses this station (revoked)" in out
    assert "stored on this machine" in out


async def test_pull_while_the_service_holds_the_state_dir_says_stop_it_first(env: Env, tmp_path: Path) -> None:
    import fcntl

    image = tmp_path / "tab.img"
    export(env, image, "TAB-0001", SEQS)
    config = env.write_config(tmp_path / "usb-ingest.toml", "http://127.0.0.1:9")
    env.state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(env.state_dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)  # what the running service holds
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        code, _, err = await cli("pull", str(image), "--config", str(config), "--no-forward")
    finally:
        os.close(fd)
    lines = [line for line in err.splitlines() if not line.startswith("{")]
    assert code == 2 and len(lines) == 1, err
    assert "stop sanaq-usb-ingest first (systemctl stop sanaq-usb-ingest)" in lines[0]
    assert "leave the pull to the service" in lines[0]


def test_status_for_a_non_member_names_the_group(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """The real permission check: the command runs with the effective uid of a user outside the group."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch the effective uid")
    nobody = pwd.getpwnam("nobody")
    top = Path(tempfile.mkdtemp(prefix="sanaq-status-"))
    try:
        top.chmod(0o755)
        state = top / "state"
        state.mkdir(mode=0o750)
        (state / "status.json").write_text("{}")
        (state / "status.json").chmod(0o640)
        config = top / "usb-ingest.toml"
        config.write_text(f'station_bundle = "{env.station_bundle}"\nstate_dir = "{state}"\n')
        config.chmod(0o644)
        (state / "status.json").write_text('{"station_id": "ST-01", "pid": 1, "updated_at_ms": 1}')
        groups = os.getgroups()
        os.setgroups([])
        os.setegid(nobody.pw_gid)
        os.seteuid(nobody.pw_uid)
        try:
            code = main(["status", "--config", str(config)])
        finally:
            os.seteuid(0)
            os.setegid(0)
            os.setgroups(groups)
    finally:
        shutil.rmtree(top)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "permission denied" in err and "members of group root" in err, err
    assert "sudo sanaq-usb-ingest status" in err and "has the service run" not in err
