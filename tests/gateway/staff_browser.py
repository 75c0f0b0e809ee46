# ruff: noqa: RUF001  (Cyrillic names in the test data)
"""Staff dashboard test harness: a real gateway with /staff/ mounted, a staff HTTP client, a headless Chromium.

The gateway is built exactly as production builds it (``gateway.server.build_server``:
``create_app``, ``setup_staff`` and the configured runner) on a throwaway SQLite
census file, with staff.db beside it, or (``database=`` a PostgreSQL URL, see the
``staff_database`` fixture) on a fresh database of the suite's throwaway cluster,
whose staff tables then hold the accounts (ADR 0012).
``ManualClock`` lets a test move the gateway's clock (session expiry, login
throttling windows). ``chromium`` drives Debian's /usr/bin/chromium through
/usr/bin/chromedriver with selenium; nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import os
import re
import shutil
import sqlite3
import ssl
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
from aiohttp import web
from argon2 import PasswordHasher

from gateway._schema_postgres import migrate
from gateway.config import GatewayConfig, ServerConfig
from gateway.server import build_server
from gateway.staff import StaffConfig
from gateway.staff.db import connect_staff_db
from gateway.staff.db_postgres import PgStaffConn
from gateway.store import CensusStore
from gateway.store_postgres import PostgresStore
from gateway.store_sqlite import SqliteStore

from .harness import World, now_ms

PASSWORD = "correct horse battery staple"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1800",
)


def census_around(at_ms: int) -> dict[str, str]:
    """Census dates whose period began 10 days before ``at_ms``, so acts dated "now" are in the window."""
    start = (datetime.fromtimestamp(at_ms / 1000, UTC) - timedelta(days=10)).date()
    return {
        "census_moment": f"{start.isoformat()}T00:00+06:00",
        "census_period_start": start.isoformat(),
        "census_period_end": (start + timedelta(days=29)).isoformat(),
    }


def staff_config(**options: Any) -> StaffConfig:
    """A StaffConfig for tests: fast refresh, census dates around today, then ``options``."""
    # English pages: the tests read the English message ids; tests/gateway/test_l10n_staff.py reads kk and ru
    base: dict[str, Any] = {"refresh_interval_s": 0.1, "full_refresh_s": 5.0, "heartbeat_s": 1.0, "language": "en"}
    return StaffConfig(**(base | census_around(now_ms()) | options))


@dataclass
class ManualClock:
    now: int = field(default_factory=now_ms)

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


@dataclass
class StaffGateway:
    url: str
    runner: web.AppRunner
    app: web.Application
    db_path: Path
    staff_db: Path
    database: str = ""  # the gateway's database URL; PostgreSQL when it is not sqlite:

    @property
    def on_postgres(self) -> bool:
        return not self.database.startswith("sqlite:")

    async def stop(self) -> None:
        await self.runner.cleanup()

    def census_rows(self, sql: str) -> list[tuple[Any, ...]]:
        """Run a query (no parameters) on the census database, either engine."""
        if self.on_postgres:
            with psycopg.Connection.connect(self.database, autocommit=True) as pg:
                return pg.execute(sql).fetchall()
        with sqlite3.connect(self.db_path) as conn:
            return conn.execute(sql).fetchall()

    def cli_where(self) -> list[str]:
        """``sanaq-gateway staff`` options naming this gateway's staff data (``--config`` on PostgreSQL)."""
        if not self.on_postgres:
            return ["--db", str(self.staff_db)]
        config = self.db_path.parent / "gateway-cli.toml"
        config.write_text(f'database = "{self.database}"\n[server]\nplain_http = true\n')
        return ["--config", str(config)]

    def staff_rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Run SQLite-spelled SQL on the staff tables (staff.db, or the PostgreSQL database)."""
        if self.on_postgres:
            with psycopg.Connection.connect(self.database, autocommit=True) as pg:
                return PgStaffConn(pg).execute(sql, params).fetchall()
        with sqlite3.connect(self.staff_db) as conn:
            return conn.execute(sql, params).fetchall()


@functools.lru_cache(maxsize=4)
def _argon2_hash(password: str) -> str:
    """One real Argon2id hash per password per test run (hashing costs ~0.3 s on purpose)."""
    return PasswordHasher().hash(password)


def add_staff_user(staff_db: Path | str, username: str, role: str, password: str = PASSWORD) -> None:
    """Insert an account directly (``add_user`` itself is exercised through the CLI tests).

    ``staff_db`` is staff.db's path or a PostgreSQL URL (its staff tables).
    """
    if isinstance(staff_db, str):
        with psycopg.Connection.connect(staff_db, autocommit=True) as pg:
            pg.execute(
                "INSERT INTO users (username, role, password_hash, created_at_ms, password_changed_at_ms)"
                " VALUES (%s, %s, %s, %s, %s)",
                (username, role, _argon2_hash(password), now_ms(), now_ms()),
            )
        return
    conn = connect_staff_db(staff_db, now_ms=now_ms())
    try:
        with conn:
            conn.execute(
                "INSERT INTO users (username, role, password_hash, created_at_ms, password_changed_at_ms)"
                " VALUES (?, ?, ?, ?, ?)",
                (username, role, _argon2_hash(password), now_ms(), now_ms()),
            )
    finally:
        conn.close()


async def start_staff_gateway(
    world: World,
    tmp_path: Path,
    *,
    clock: Any = None,
    staff: StaffConfig | None = None,
    snapshot: bytes | None = None,
    users: tuple[tuple[str, str], ...] = (("admin", "admin"), ("viewer", "viewer")),
    ssl_context: ssl.SSLContext | None = None,
    database: str | None = None,
) -> StaffGateway:
    """A started gateway with the dashboard; ``database`` a PostgreSQL URL (else SQLite in ``tmp_path``)."""
    db_path = tmp_path / "census.db"
    config_used = staff or staff_config()
    store: CensusStore
    if database is None or database.startswith("sqlite:"):
        database = f"sqlite:///{db_path}"
        staff_db = config_used.staff_db(db_path)
        users_at: Path | str = staff_db
        store = SqliteStore(db_path)
    else:
        await migrate(database)  # the staff tables must exist before the accounts are added
        if config_used.codes_pepper_file is None:  # on PostgreSQL it must exist before the start
            pepper = tmp_path / "codes.pepper"
            pepper.write_bytes(os.urandom(32))
            pepper.chmod(0o600)
            config_used = dataclasses.replace(config_used, codes_pepper_file=pepper)
        staff_db = users_at = database
        store = PostgresStore(database, max_wait_ms=0.5)
    for username, role in users:
        add_staff_user(users_at, username, role)
    config = GatewayConfig(database=database, staff=config_used,
                           server=ServerConfig(plain_http=True, port=0, shutdown_timeout_s=5))
    kwargs = {"clock": clock} if clock is not None else {}
    server = build_server(
        config,
        store,
        data_key=world.data,
        receipt_key=world.receipt,
        root_public_key=bytes(world.root.verify_key),
        bootstrap_snapshot=snapshot if snapshot is not None else world.snapshot(),
        **kwargs,
    )
    await server.start(ssl_context=ssl_context)
    host, port = server.addresses[0][:2]
    scheme = "http" if ssl_context is None else "https"
    return StaffGateway(
        f"{scheme}://{host}:{port}", server.runner, server.app, db_path,
        staff_db if isinstance(staff_db, Path) else Path(), database,
    )


LIST_HEADER = "institution_code,entry_id,list_date,surname,given_name,patronymic,birth_date,district\n"


def surname(n: int) -> str:
    return "Сейткали" + chr(ord("а") + n)


def list_csv(code: str, numbers: range, list_date: str = "2026-09-20", district: str = "Медеуский район") -> bytes:
    out = io.StringIO()
    out.write(LIST_HEADER)
    for n in numbers:
        birth = f"1980-01-{n % 28 + 1:02d}"
        out.write(f"{code},{code}/{n:05d},{list_date},{surname(n)},Арман,Серикович,{birth},{district}\n")
    return out.getvalue().encode()


async def upload(client: StaffClient, data: bytes, name: str = "list.csv") -> tuple[int, str]:
    form = aiohttp.FormData()
    form.add_field("csrf", client.csrf)
    form.add_field("file", data, filename=name, content_type="text/csv")
    status, html, _ = await client.post("/staff/lists", form)
    return status, html


_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "no csrf field in page"
    return match.group(1)


class StaffClient:
    """A browser-like HTTP client: cookie jar, same-origin form posts, no redirects followed.

    ``source`` picks the client's own loopback address (127.0.0.2 ...), so tests can
    log in "from another address"; ``tls`` is passed to the connector (HTTPS tests).
    """

    def __init__(self, gw: StaffGateway, *, source: str | None = None, tls: ssl.SSLContext | None = None) -> None:
        self.gw = gw
        connector = aiohttp.TCPConnector(
            local_addr=(source, 0) if source else None, ssl=tls if tls is not None else True
        )
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), connector=connector)
        self.csrf = ""

    async def close(self) -> None:
        await self.session.close()

    async def get(self, path: str, **kw: Any) -> tuple[int, str, aiohttp.ClientResponse]:
        async with self.session.get(self.gw.url + path, allow_redirects=False, **kw) as resp:
            return resp.status, await resp.text(errors="replace"), resp

    async def post(self, path: str, data: Any, **kw: Any) -> tuple[int, str, aiohttp.ClientResponse]:
        headers = {"Origin": self.gw.url, **kw.pop("headers", {})}
        async with self.session.post(self.gw.url + path, data=data, allow_redirects=False, headers=headers, **kw) as r:
            return r.status, await r.text(errors="replace"), r

    async def login(self, username: str, password: str = PASSWORD) -> int:
        _, page, _ = await self.get("/staff/login")
        status, _, _ = await self.post(
            "/staff/login", {"csrf": csrf_of(page), "username": username, "password": password}
        )
        if status == 303:
            _, home, _ = await self.get("/staff/")
            self.csrf = csrf_of(home)
        return status


@contextlib.asynccontextmanager
async def signed_in(gw: StaffGateway, username: str) -> AsyncIterator[StaffClient]:
    """A ``StaffClient`` logged in as ``username`` (asserting it could), closed afterwards."""
    c = StaffClient(gw)
    try:
        assert await c.login(username) == 303
        yield c
    finally:
        await c.close()


async def summary(client: StaffClient) -> dict[str, Any]:
    """The dashboard's ``/staff/api/summary`` as the signed-in client reads it."""
    async with client.session.get(client.gw.url + "/staff/api/summary") as r:
        assert r.status == 200
        return dict(await r.json())


def chromium_available() -> bool:
    return CHROMIUM.exists() and CHROMEDRIVER.exists() and shutil.which("chromium") is not None


def chromium(profile_dir: Path | None = None) -> Any:
    """A headless Chromium under selenium, with a fresh profile; the caller quits it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile_dir or tempfile.mkdtemp(prefix='staff-chromium-')}")
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
