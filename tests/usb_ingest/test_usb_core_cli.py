"""``sanaq-usb-ingest`` as a real process: pull + forward, status, errors, SIGKILL at random points, SIGTERM."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import signal
import sys
from pathlib import Path

import pytest

from wire import decode_envelope

from .images import Env, Gateway, export, fat_image
from .test_usb_core_daemon import SystemdSocket

EXE = Path(sys.executable).parent / "sanaq-usb-ingest"
COMMAND = [str(EXE)] if EXE.exists() else [sys.executable, "-m", "usb_ingest"]


async def cli(*args: str, env_vars: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *COMMAND, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env_vars or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def log_events(stderr: str) -> list[str]:
    return [json.loads(line)["event"] for line in stderr.splitlines() if line.startswith("{")]


async def test_pull_forwards_and_status_shows_it(env: Env, gw: Gateway, tmp_path: Path) -> None:
    image = tmp_path / "tab.img"
    export(env, image, "TAB-0001", range(1, 4))
    config = env.write_config(tmp_path / "usb-ingest.toml", gw.url)
    code, out, err = await cli("pull", str(image), "--config", str(config), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert (report["outcome"], report["spooled"], report["delivered"]) == ("complete", [1, 2, 3], True)
    assert {"usb.pull.started", "usb.manifest.verified", "usb.batch.spooled", "usb.custody.spooled",
            "usb.forward.delivered", "usb.custody.delivered", "usb.pull.finished"} <= set(log_events(err))
    assert gw.rows("SELECT count(*) FROM batches") == [(3,)]

    code, out, err = await cli("pull", str(image), "--config", str(config))  # plugged in again
    assert code == 0, err
    assert "0 new batches spooled" in out and "3 already delivered" in out and "You may unplug" in out

    code, out, _ = await cli("status", "--config", str(config), "--json")
    assert code == 0
    view = json.loads(out)
    assert (view["delivered"], view["spool_pending"], view["verified_total"]) == (3, 0, 0)  # counts per run
    code, out, _ = await cli("status", "--config", str(config))
    assert code == 0
    assert "TAB-0001" in out and "You may unplug" in " ".join(out.split()) and "not running" in out, out


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing config", "cannot read config"),
        ("bad config key", "unknown option"),
        ("no station bundle", "station-setup"),
        ("refused volume", "volume refused: not-an-export-volume: no /SANAQ directory"),
        ("no such device", "device-gone"),
        ("status never written", "no status at"),
    ],
)
async def test_errors_are_one_line_and_exit_2(env: Env, tmp_path: Path, case: str, expected: str) -> None:
    config = env.write_config(tmp_path / "usb-ingest.toml", "http://127.0.0.1:9")
    image = tmp_path / "stick.img"
    fat_image(image, {"DCIM/IMG0001.JPG": b"\xff\xd8" * 10})
    args = ["pull", str(image), "--config", str(config), "--no-forward"]
    if case == "missing config":
        args[3] = str(tmp_path / "nope.toml")
    elif case == "bad config key":
        config.write_text(config.read_text() + "\nspool_dir = '/tmp'\n")
    elif case == "no station bundle":
        config.write_text(config.read_text().replace(str(env.station_bundle), str(tmp_path / "none")))
    elif case == "no such device":
        args[1] = "/dev/sanaq-no-such-device"
    elif case == "status never written":
        args = ["status", "--config", str(config)]
    code, _, err = await cli(*args)
    lines = [line for line in err.splitlines() if not line.startswith("{")]
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("sanaq-usb-ingest: error:"), err
    assert expected in lines[0]
    assert "Traceback" not in err


def check_spool_has_no_half_files(state_dir: Path) -> int:
    """Every complete-looking spool file is a whole, valid envelope whose hash is its name."""
    count = 0
    for p in (state_dir / "spool" / "batches").iterdir():
        if p.name.startswith(".tmp-"):
            continue
        data = p.read_bytes()
        assert hashlib.sha256(data).hexdigest() == p.name.split(".")[-2], p.name
        decode_envelope(data)
        count += 1
    return count


async def test_sigkill_at_random_points_loses_nothing_and_duplicates_nothing(
    env: Env, gw: Gateway, tmp_path: Path
) -> None:
    seqs = range(1, 13)
    image = tmp_path / "tab.img"
    export(env, image, "TAB-0001", seqs)
    config = env.write_config(tmp_path / "usb-ingest.toml", gw.url)
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    watched = {"usb.batch.spooled", "usb.custody.spooled", "usb.forward.delivered", "usb.custody.delivered"}
    kills = 0
    for _ in range(4):
        target = rng.randint(1, 14)
        proc = await asyncio.create_subprocess_exec(
            *COMMAND, "pull", str(image), "--config", str(config), "--wait", "30",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stderr is not None
        seen = 0
        async with asyncio.timeout(60):
            while line := await proc.stderr.readline():
                if line.startswith(b"{") and json.loads(line)["event"] in watched:
                    seen += 1
                    if seen == target:
                        proc.send_signal(signal.SIGKILL)
                        kills += 1
                        break
            await proc.wait()
        check_spool_has_no_half_files(env.state_dir)
    code, _out, err = await cli("pull", str(image), "--config", str(config), "--json")
    assert code == 0, (seed, err)
    assert kills >= 1, seed
    assert check_spool_has_no_half_files(env.state_dir) == 0
    assert gw.rows("SELECT seq, count(*) FROM batches GROUP BY seq ORDER BY seq") == [(s, 1) for s in seqs], seed
    receipts = [json.loads(line) for line in (env.state_dir / "receipts.jsonl").read_text().splitlines()]
    assert sorted(r["seq"] for r in receipts) == list(seqs), seed  # each delivery logged exactly once
    assert gw.rows("SELECT count(*) FROM custody") != [(0,)]


async def test_run_tells_systemd_pings_the_watchdog_and_stops_on_sigterm(env: Env, gw: Gateway, tmp_path: Path) -> None:
    config = env.write_config(tmp_path / "usb-ingest.toml", gw.url)
    systemd = SystemdSocket()
    try:
        proc = await asyncio.create_subprocess_exec(
            *COMMAND, "run", "--config", str(config), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "NOTIFY_SOCKET": systemd.path, "WATCHDOG_USEC": "200000"},
        )
        try:
            await systemd.wait_for(lambda m: m.startswith("READY=1"), within_s=30)
            await systemd.wait_for(lambda m: m == "WATCHDOG=1", within_s=5)
            proc.send_signal(signal.SIGTERM)
            await systemd.wait_for(lambda m: m.startswith("STOPPING=1"), within_s=30)
            out, err = await asyncio.wait_for(proc.communicate(), 30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.returncode == 0, err
        events = [json.loads(line)["event"] for line in out.decode().splitlines() if line.startswith("{")]
        assert {"usb.daemon.ready", "usb.daemon.stopping", "usb.daemon.stopped"} <= set(events)
    finally:
        systemd.close()


async def test_run_watchdog_pings_stop_while_the_loop_is_frozen_and_resume(
    env: Env, gw: Gateway, tmp_path: Path
) -> None:
    """SIGSTOP freezes the daemon's event loop: no WATCHDOG=1 arrives, so systemd would restart it."""
    config = env.write_config(tmp_path / "usb-ingest.toml", gw.url)
    systemd = SystemdSocket()
    proc = await asyncio.create_subprocess_exec(
        *COMMAND, "run", "--config", str(config), stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "NOTIFY_SOCKET": systemd.path, "WATCHDOG_USEC": "200000"},
    )
    try:
        await systemd.wait_for(lambda m: m.startswith("READY=1"), within_s=30)
        await systemd.wait_for(lambda m: m == "WATCHDOG=1", within_s=5)
        proc.send_signal(signal.SIGSTOP)
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: os.waitid(os.P_PID, proc.pid, os.WSTOPPED | os.WNOWAIT)
        )
        while True:  # drop what was sent before the stop took effect
            try:
                systemd.sock.recv(65536)
            except BlockingIOError:
                break
        with pytest.raises(TimeoutError):
            await systemd.wait_for(lambda m: m == "WATCHDOG=1", within_s=1.0)  # 10 ping intervals
        proc.send_signal(signal.SIGCONT)
        await systemd.wait_for(lambda m: m == "WATCHDOG=1", within_s=5)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            await proc.wait()
        systemd.close()
