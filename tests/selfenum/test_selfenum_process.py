"""The real ``sanaq-selfenum serve`` process: READY on stderr, SIGKILL mid-submission loses nothing acknowledged."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

from .bed import ANSWERS, INSTITUTION, Env, Gateway, mint, selfenum_config
from .browserless import Respondent

_LISTENING = re.compile(rb"listening on 127\.0\.0\.1:(\d+)")


def _write_config(config: Any, path: Path) -> Path:
    path.write_text(
        f'web_bundle = "{config.web_bundle}"\nstate_dir = "{config.state_dir}"\ngateway_url = "{config.gateway_url}"\n'
        'log_level = "warning"\n'
        '[server]\nport = 0\ninsecure_cookies = true\n'
        '[window]\nopens_at = "2020-01-01T00:00:00+05:00"\ncloses_at = "2099-01-01T00:00:00+05:00"\n'
        'census_moment = "2020-10-01"\n'
        '[forward]\ninitial_backoff_s = 0.05\nmax_backoff_s = 0.2\n', encoding="utf-8")
    return path


async def _start(cfg: Path) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "selfenum", "serve", "--config", str(cfg),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    while True:
        line = await asyncio.wait_for(proc.stderr.readline(), timeout=60)
        assert line, "sanaq-selfenum exited before listening"
        m = _LISTENING.search(line)
        if m:
            return proc, f"http://127.0.0.1:{int(m.group(1))}"


async def test_sigkill_mid_submission_loses_nothing_acknowledged(env: Env, gw: Gateway, tmp_path: Path) -> None:
    config = selfenum_config(env, tmp_path / "se", gw.url)
    entries = {f"{INSTITUTION}/{i:05d}": "" for i in range(1, 25)}
    codes = mint(config, entries)
    cfg = _write_config(config, tmp_path / "selfenum.toml")
    proc, url = await _start(cfg)
    people = [Respondent(url) for _ in codes]
    acknowledged: set[str] = set()
    try:
        for r, code in zip(people, codes.values(), strict=True):
            await r.sign_in(code)
            await r.fill(ANSWERS)

        async def submit(r: Respondent, entry: str) -> None:
            try:
                status, _, path = await r.post("/submit", {})
            except Exception:  # the process died under this request: not acknowledged
                return
            if status == 200 and path == "/done":
                acknowledged.add(entry)

        fourth = asyncio.Event()

        async def submit_and_count(r: Respondent, entry: str) -> None:
            await submit(r, entry)
            if len(acknowledged) >= 4:
                fourth.set()

        tasks = [asyncio.create_task(submit_and_count(r, e)) for r, e in zip(people, codes, strict=True)]
        await asyncio.wait_for(fourth.wait(), timeout=60)
        os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()
        await asyncio.gather(*tasks)
    finally:
        for r in people:
            await r.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert 4 <= len(acknowledged) < len(codes), "the kill must land mid-way"

    proc, url = await _start(cfg)  # restart: the forwarder delivers what was queued
    try:
        for _ in range(600):
            stored = {row[0] for row in gw.rows("SELECT respondent_list_entry FROM sheets")}
            if acknowledged <= stored:
                break
            await asyncio.sleep(0.05)
        assert acknowledged <= stored  # nothing acknowledged is lost
        assert gw.rows("SELECT count(*), count(DISTINCT respondent_list_entry) FROM sheets")[0] == (
            len(stored), len(stored))  # nothing stored twice
        # A respondent whose submit was cut off can sign in again and finish or see the first confirmation.
        lost = next(e for e in codes if e not in acknowledged)
        r = Respondent(url)
        try:
            _, _, path = await r.sign_in(codes[lost])
            if path != "/done":
                await r.fill(ANSWERS)
                _, _, path = await r.post("/submit", {})
            assert path == "/done"
        finally:
            await r.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), timeout=30) == 0
    rows = gw.rows("SELECT count(*), count(DISTINCT respondent_list_entry) FROM sheets")[0]
    assert rows[0] == rows[1]


async def test_type_notify_ready_watchdog_stopping_with_the_bundle_from_credentials(
        env: Env, gw: Gateway, tmp_path: Path) -> None:
    import aiohttp

    from tests.systemd.service_harness import NotifySocket

    config = selfenum_config(env, tmp_path / "se", gw.url)
    cfg = tmp_path / "selfenum.toml"
    cfg.write_text(f'web_bundle = "."\nstate_dir = "{config.state_dir}"\ngateway_url = "{gw.url}"\n'
                   '[server]\nport = 0\n', encoding="utf-8")
    notify = NotifySocket(tmp_path / "notify.sock")
    environ = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
    environ |= {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "400000",
                "CREDENTIALS_DIRECTORY": str(env.web_bundle_path)}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "selfenum", "serve", "--config", str(cfg),
                                                env=environ, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.DEVNULL)
    try:
        seen = await notify.until(lambda n: n.get("READY") == "1", within=60)
        ready = seen[-1]
        assert ready.pid == proc.pid and "road web:WEB-AST-01" in (ready.get("STATUS") or "")
        bound = re.search(r"127\.0\.0\.1:(\d+)", ready.get("STATUS") or "")
        assert bound is not None
        port = int(bound.group(1))
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/readyz") as r:
            assert r.status == 200
        pings = await notify.until(lambda n: n.get("WATCHDOG") == "1", within=5)
        assert {n.pid for n in pings} == {proc.pid}
        proc.send_signal(signal.SIGTERM)
        await notify.until(lambda n: n.get("STOPPING") == "1", within=30)
        assert await asyncio.wait_for(proc.wait(), timeout=30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        notify.close()


async def test_a_bad_config_exits_2_without_ready(tmp_path: Path) -> None:
    cfg = tmp_path / "selfenum.toml"
    cfg.write_text('[window]\nopens_at = "2020-10-16T00:00:00+05:00"\ncloses_at = "2020-10-01T00:00:00+05:00"\n',
                   encoding="utf-8")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "selfenum", "serve", "--config", str(cfg),
                                                stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 2 and b"opens_at must be before" in err and b"Traceback" not in err
