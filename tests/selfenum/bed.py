"""The self-enumeration test world: a real authority (keys, registry), a web service bundle, a real gateway.

The authority, a tablet and the web service are enrolled once per module
(``template``) and copied per test; the gateway runs in-process on
127.0.0.1 port 0 over a throwaway SQLite census store.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.config import GatewayConfig, ServerConfig
from gateway.server import build_server
from gateway.staff.config import StaffConfig
from gateway.store_sqlite import SqliteStore
from keys.authority import Authority
from keys.bundle import ProvisioningBundle
from keys.enrollment import enroll_tablet, enroll_web

WEB_ID = "WEB-AST-01"
TABLET_ID = "TAB-0001"
DAY_MS = 86_400_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def build_template(root: Path) -> Path:
    now = now_ms()
    with Authority.create(root / "authority", now_ms=now) as a:
        enroll_tablet(a, root / "bundle-tablet", device_id=TABLET_ID, usb_serial="SER-1", institution="HOSP-01",
                      worker_id="W-17", gateway_url="https://localhost:8443", now_ms=now)
        enroll_web(a, root / "bundle-web", web_id=WEB_ID, gateway_url="https://localhost:8443", now_ms=now)
    return root


@dataclass
class Env:
    root: Path
    authority: Authority

    @property
    def web_bundle_path(self) -> Path:
        return self.root / "bundle-web"

    def web_bundle(self) -> ProvisioningBundle:
        return ProvisioningBundle.load(self.web_bundle_path)

    def tablet_bundle(self) -> ProvisioningBundle:
        return ProvisioningBundle.load(self.root / "bundle-tablet")

    def close(self) -> None:
        self.authority.close()


def env_from_template(template: Path, dest: Path) -> Env:
    shutil.copytree(template, dest / "keys")
    return Env(dest / "keys", Authority.open(dest / "keys" / "authority"))


@dataclass
class Gateway:
    url: str
    runner: web.AppRunner
    db_path: Path

    async def stop(self) -> None:
        await self.runner.cleanup()

    def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        con = sqlite3.connect(self.db_path)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()


async def serve_gateway(env: Env, db_path: Path, *, port: int = 0) -> Gateway:
    a = env.authority
    config = GatewayConfig(database=f"sqlite:///{db_path}", server=ServerConfig(plain_http=True, port=port),
                           staff=StaffConfig(enabled=False))
    server = build_server(config, SqliteStore(db_path), data_key=a.data_private_key(),
                          receipt_key=a.gateway_signing_key(), root_public_key=a.root_public_key,
                          bootstrap_snapshot=a.latest_snapshot())
    await server.start()
    bound = server.addresses[0][1]
    return Gateway(f"http://127.0.0.1:{bound}", server.runner, db_path)


def files_under(path: Path) -> list[Path]:
    return [Path(d) / f for d, _, fs in os.walk(path) for f in fs]


# ---- the web service ------------------------------------------------------------------------

INSTITUTION = "AB-000001"
LIST_CSV = (
    "institution_code,entry_id,list_date,surname,given_name,patronymic,birth_date\n"
    f"{INSTITUTION},1,2026-06-01,Жұмабаева,Ақмарал,Серікқызы,1961-04-12\n"
    f"{INSTITUTION},2,2026-06-01,Petrov,Ivan,,1990-01-02\n"
    f"{INSTITUTION},3,2026-06-01,Сейітов,Нұрлан,,1975-09-30\n"
)


def selfenum_config(env: Env, state: Path, gateway_url: str, *, opens: str = "2020-01-01T00:00:00+05:00",
                    closes: str = "2099-01-01T00:00:00+05:00", **throttle: Any) -> Any:
    from selfenum.config import ForwardConfig, SelfenumConfig, ServerConfig, ThrottleConfig, WindowConfig

    return SelfenumConfig(
        web_bundle=env.web_bundle_path, gateway_url=gateway_url, state_dir=state,
        server=ServerConfig(host="127.0.0.1", port=0, insecure_cookies=True),
        window=WindowConfig(opens_at=opens, closes_at=closes, census_moment="2020-10-01"),
        throttle=ThrottleConfig(**throttle),
        forward=ForwardConfig(request_timeout_s=5.0, initial_backoff_s=0.05, max_backoff_s=0.2),
    ).check()


def mint(config: Any, entries: dict[str, str] | None = None) -> dict[str, str]:
    """Mint codes directly in the service's store: {entry_id: code}."""
    from keys.access_codes import code_hash, mint_code
    from selfenum.app import pepper_path
    from selfenum.sessions import load_or_make_secret
    from selfenum.store import CodeRow, SelfenumStore

    config.state_dir.mkdir(parents=True, exist_ok=True)
    pepper = load_or_make_secret(pepper_path(config))
    store = SelfenumStore(config.state_dir / "selfenum.db", config.state_dir / "spool")
    out = {}
    try:
        for entry in entries or {f"{INSTITUTION}/{i:05d}": "" for i in (1, 2, 3)}:
            code = mint_code()
            store.add_code(CodeRow(code_hash(pepper, code), entry, INSTITUTION, "childrens_home", "W-17", "active"),
                           now_ms=now_ms(), replace=False)
            out[entry] = code
    finally:
        store.close()
    return out


@dataclass
class Web:
    url: str
    runner: web.AppRunner
    app: web.Application

    async def stop(self) -> None:
        await self.runner.cleanup()


async def serve_selfenum(config: Any, clock_ms: Any = None) -> Web:
    from selfenum.app import create_app

    app = create_app(config, clock_ms=clock_ms)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return Web(f"http://127.0.0.1:{runner.addresses[0][1]}", runner, app)


ANSWERS: dict[str, dict[str, str]] = {
    "name": {"surname": "Жұмабаева", "given_name": "Ақмарал", "patronymic": "Серікқызы"},
    "about": {"sex": "female", "birth_date-day": "12", "birth_date-month": "4", "birth_date-year": "1961"},
    "origin": {"citizenship": "kaz", "nationality": "Қазақ", "native_language": "kaz"},
    "status": {"marital_status": "widowed", "education": "higher"},
    "address": {"region": "KZ-23", "district": "Атырау", "settlement": "Атырау", "street": "Сәтбаев даңғылы",
                "house": "12A"},
}
