"""The real ``sanaq-gateway serve`` process: start-up from a TOML file, SIGTERM under load."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
from pathlib import Path

import aiohttp
import pytest

from keys.files import save_data_key, save_signing_key
from wire import parse_receipt

from .harness import World, sign

BATCH = "application/vnd.sanaq.batch"


async def start_process(world: World, tmp: Path, workers: int = 1) -> tuple[asyncio.subprocess.Process, str, Path]:
    save_data_key(tmp / "data.key", world.data)
    save_signing_key(tmp / "gateway.key", world.receipt)
    (tmp / "registry.snapshot").write_bytes(world.snapshot())
    db = tmp / "state" / "census.db"
    (tmp / "gateway.toml").write_text(
        f'database = "sqlite:///{db}"\n'
        f'[server]\nhost = "127.0.0.1"\nport = 0\nplain_http = true\nshutdown_timeout_s = 20\nworkers = {workers}\n'
        f'[keys]\nroot_public_key = "{bytes(world.root.verify_key).hex()}"\n'
        'data_key = "data.key"\nreceipt_key = "gateway.key"\nbootstrap_snapshot = "registry.snapshot"\n'
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "serve",
        "--config",
        str(tmp / "gateway.toml"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    while True:
        line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
        assert line, "gateway exited before listening"
        if "listening" in line:
            return proc, "http://" + line.rsplit(" on ", 1)[1].strip(), db


@pytest.mark.parametrize("workers", [1, 2], ids=["one process", "supervisor and 2 workers"])
async def test_sigterm_finishes_in_flight_and_loses_no_acknowledged_batch(
    workers: int, world: World, tmp_path: Path, sheets
) -> None:
    proc, url, db = await start_process(world, tmp_path, workers)
    bodies = [world.batch(d, seq, sheets(2, seed=seq, device_id=d)) for d in world.tablets for seq in range(1, 11)]
    first_answer = asyncio.Event()

    async def send(session: aiohttp.ClientSession, body: bytes, device_id: str) -> bytes | None:
        target = f"{url}/v1/batches"
        try:
            async with session.post(
                target, data=body, headers=sign("POST", target, world.tablets[device_id], body, BATCH)
            ) as r:
                answer = await r.json(content_type=None)
                first_answer.set()
                if r.status == 200:
                    import base64

                    return base64.b64decode(answer["receipt"])
                return None
        except aiohttp.ClientError:
            return None

    async with aiohttp.ClientSession() as session:
        tasks = [
            asyncio.create_task(send(session, b, d))
            for b, d in zip(bodies, [d for d in world.tablets for _ in range(10)], strict=True)
        ]
        await first_answer.wait()
        proc.send_signal(signal.SIGTERM)
        receipts = [r for r in await asyncio.gather(*tasks) if r is not None]
    assert await asyncio.wait_for(proc.wait(), 30) == 0
    assert receipts, "no request completed"
    with sqlite3.connect(db) as conn:
        stored = {(d, s): h for d, s, h in conn.execute("SELECT device_id, seq, batch_hash FROM batches")}
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    for raw in receipts:
        r = parse_receipt(raw, world.gateway_keys)
        assert stored[(r.device_id, r.seq)] == r.batch_hash


async def test_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "g.toml"
    cfg.write_text("[server]\nportt = 1\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "serve",
        "--config",
        str(cfg),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    assert proc.returncode == 2
    assert err.decode().strip().splitlines() == ["sanaq-gateway: unknown option(s) in gateway config.server: portt"]


BAD_OPTIONS = [
    pytest.param(
        '[server]\nplain_http = true\nlog_level = "verbose"\n',
        "sanaq-gateway: server.log_level must be one of debug, info, warning, error (got 'verbose')",
        id="unknown log level",
    ),
    pytest.param(
        '[server]\nplain_http = true\nlog_level = "INFO"\n',
        "sanaq-gateway: server.log_level must be one of debug, info, warning, error (got 'INFO')",
        id="log level in capitals",
    ),
    pytest.param(
        "[server]\nplain_http = true\n[limits]\nbody_timeout_s = 0\n",
        "sanaq-gateway: limits.body_timeout_s must be positive",
        id="no body deadline",
    ),
    pytest.param(
        "[server]\nplain_http = true\nworkers = 0\n",
        "sanaq-gateway: server.workers must be between 1 and 128 (got 0)",
        id="no workers",
    ),
    pytest.param(
        "[server]\nplain_http = true\nregistry_staleness_s = -1\n",
        "sanaq-gateway: server.registry_staleness_s must be positive",
        id="negative staleness bound",
    ),
]


@pytest.mark.parametrize(
    ("command", "toml", "line"),
    [pytest.param("check-config", *p.values, id=f"check-config, {p.id}") for p in BAD_OPTIONS]
    + [pytest.param("serve", *BAD_OPTIONS[0].values, id=f"serve, {BAD_OPTIONS[0].id}")],
)
async def test_a_bad_option_value_is_a_config_error_naming_it(
    command: str, toml: str, line: str, tmp_path: Path
) -> None:
    cfg = tmp_path / "g.toml"
    cfg.write_text(toml, encoding="utf-8")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        command,
        "--config",
        str(cfg),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2, (out, err)
    if command == "serve":  # the service: one line on stderr, nothing else
        assert err.decode().strip().splitlines() == [line]
        assert out == b""
    else:  # check-config: a report on stdout whose one PROBLEM line names the option
        problems = [p for p in out.decode().splitlines() if p.startswith("PROBLEM: ")]
        assert len(problems) == 1, out
        assert problems[0].endswith(line.removeprefix("sanaq-gateway: ")), problems
        assert err == b""
