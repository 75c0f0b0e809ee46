"""The web road end to end against the gateway's own batch ingest: ``python -m bench.web_road [--quick]``.

A real ``sanaq-gateway`` (plain HTTP, SQLite, durable default) and a real
``sanaq-selfenum serve`` run as processes. Respondents are browser-less HTTP
clients (aiohttp, cookies, CSRF tokens): each enters a code, answers the five
question pages and submits; ``concurrency`` of them at a time. Measured:
finished questionnaires per second end to end, and the latency of the submit
request (which seals, spools durably, sends the batch and verifies the
receipt before it answers). Baseline in the same run: the same number of
one-sheet batches, sealed and signed by the same web service key, sent
straight to the gateway two at a time (the gateway admits two batches of one
device at once, ``limits.max_inflight_per_device``; the web service keeps to
that too): what the gateway alone does for one web id. The store is then checked: every questionnaire and every baseline
batch stored once, none quarantined.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import aiohttp

from gwclient import SignedGatewayClient
from keys.access_codes import code_hash, mint_code
from keys.authority import Authority
from keys.bundle import ProvisioningBundle
from keys.enrollment import enroll_web
from keys.gateway_bundle import export_gateway
from selfenum.questionnaire import Questionnaire, Respondent
from selfenum.sessions import load_or_make_secret
from selfenum.store import CodeRow, SelfenumStore
from wire import parse_receipt, seal_batch

from .entry import bench_main
from .fleet import Server, start_server
from .loadgen import percentiles

__all__ = ["WebPlan", "run_web_road"]

WEB_ID = "WEB-BENCH-01"
_CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')
PAGES = {
    "name": {"surname": "Жұмабаева", "given_name": "Ақмарал"},
    "about": {"sex": "female", "birth_date-day": "12", "birth_date-month": "4", "birth_date-year": "1961"},
    "origin": {"citizenship": "KAZ", "nationality": "Қазақ", "native_language": "kaz"},
    "status": {"marital_status": "widowed", "education": "higher"},
    "address": {"region": "KZ-23", "district": "Атырау", "settlement": "Атырау", "street": "Сәтбаев", "house": "12"},
}


@dataclass(frozen=True)
class WebPlan:
    respondents: int = 400
    concurrency: int = 16

    @classmethod
    def quick(cls) -> WebPlan:
        return cls(respondents=80, concurrency=8)


def _setup(tmp: Path) -> tuple[Path, Path]:
    now = time.time_ns() // 1_000_000
    with Authority.create(tmp / "authority", now_ms=now) as a:
        enroll_web(a, tmp / "bundle", web_id=WEB_ID, gateway_url="https://127.0.0.1:8443", now_ms=now)
        export_gateway(a, tmp / "gw-keys")
        root = a.root_public_key.hex()
    gw_config = tmp / "gateway.toml"
    gw_config.write_text(
        f'database = "sqlite:///{tmp / "census.db"}"\n'
        '[server]\nhost = "127.0.0.1"\nport = 0\nplain_http = true\n'
        f'[keys]\nroot_public_key = "{root}"\ndata_key = "{tmp / "gw-keys" / "data.key"}"\n'
        f'receipt_key = "{tmp / "gw-keys" / "gateway.key"}"\n'
        f'bootstrap_snapshot = "{tmp / "gw-keys" / "registry.snapshot"}"\n')
    return gw_config, tmp / "bundle"


def _selfenum_config(tmp: Path, bundle: Path, gateway_url: str) -> Path:
    cfg = tmp / "selfenum.toml"
    cfg.write_text(
        f'web_bundle = "{bundle}"\nstate_dir = "{tmp / "se"}"\ngateway_url = "{gateway_url}"\nlog_level = "warning"\n'
        "[server]\nport = 0\ninsecure_cookies = true\n"
        "[throttle]\nper_address = 1000000\n"
        '[window]\nopens_at = "2020-01-01T00:00:00+05:00"\ncloses_at = "2099-01-01T00:00:00+05:00"\n'
        'census_moment = "2020-10-01"\n')
    return cfg


def _mint(tmp: Path, n: int) -> list[str]:
    state = tmp / "se"
    state.mkdir(mode=0o700, exist_ok=True)
    store = SelfenumStore(state / "selfenum.db", state / "spool")
    pepper = load_or_make_secret(state / "codes.pepper")
    codes = []
    try:
        for i in range(1, n + 1):
            code = mint_code()
            entry = f"AB-{i // 99999:06d}/{i % 99999 + 1:05d}"
            store.add_code(CodeRow(code_hash(pepper, code), entry, entry[:9], "childrens_home", "W-1", "active"),
                           now_ms=time.time_ns() // 1_000_000, replace=False)
            codes.append(code)
    finally:
        store.close()
    return codes


async def _respondent(session: aiohttp.ClientSession, site: str, code: str) -> float:
    async def post(path: str, page: str, data: dict[str, str]) -> str:
        m = _CSRF.search(page)
        assert m is not None, path
        async with session.post(site + path, data={"csrf": m.group(1), **data}) as r:
            assert r.status == 200, (path, r.status)
            return await r.text()

    async with session.get(site + "/") as r:
        page = await r.text()
    page = await post("/start", page, {"code": code})
    for slug, answers in PAGES.items():
        page = await post(f"/q/{slug}", page, {**answers, "action": "next"})
    began = time.perf_counter()
    page = await post("/submit", page, {})
    took = time.perf_counter() - began
    assert "Халық санағы деректерінің базасына" in page, "not received at once"
    return took


async def _web_run(site: str, codes: list[str], concurrency: int) -> dict[str, Any]:
    queue = list(codes)
    latencies: list[float] = []

    async def worker() -> None:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            while queue:
                code = queue.pop()
                session.cookie_jar.clear()
                latencies.append(await _respondent(session, site, code))

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - began
    return {"questionnaires": len(latencies), "wall_s": wall, "per_s": len(latencies) / wall,
            "submit_latency_ms": percentiles(latencies)}


async def _baseline(gateway_url: str, bundle: ProvisioningBundle, first_seq: int, n: int,
                    concurrency: int) -> dict[str, Any]:
    q = Questionnaire()
    answers = {k: v for page in PAGES.values() for k, v in page.items() if not k.startswith("birth_date-")}
    answers["birth_date"] = "1961-04-12"

    def sheet_of(i: int) -> dict[str, Any]:
        who = Respondent(f"AB-900000/{i:05d}", "AB-900000", "childrens_home", "W-1")
        return q.sheet(answers, who, moment=date(2020, 10, 1), now_ms=time.time_ns() // 1_000_000)

    envelopes = [seal_batch(device_id=WEB_ID, seq=first_seq + i, sheets=[sheet_of(i % 99999 + 1)],
                            sealed_at_ms=time.time_ns() // 1_000_000, device_key=bundle.signing_key,
                            data_public_key=bundle.data_public_key, ephemeral_secret=os.urandom(32))
                 for i in range(n)]
    latencies: list[float] = []
    async with SignedGatewayClient(gateway_url, bundle.signing_key, ssl_context=None,
                                   connections=concurrency) as client:
        async def worker() -> None:
            while envelopes:
                env = envelopes.pop()
                began = time.perf_counter()
                answer = await client.post_batch(env)
                parse_receipt(answer.receipt, bundle.gateway_key_map())
                latencies.append(time.perf_counter() - began)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - began
    return {"batches": len(latencies), "wall_s": wall, "per_s": len(latencies) / wall,
            "latency_ms": percentiles(latencies)}


def run_web_road(plan: WebPlan, tmp: Path) -> dict[str, Any]:
    gw_config, bundle_path = _setup(tmp)
    gateway: Server = start_server([sys.executable, "-m", "gateway", "serve", "--config", str(gw_config)])
    try:
        codes = _mint(tmp, plan.respondents)
        site: Server = start_server([sys.executable, "-m", "selfenum", "serve",
                                     "--config", str(_selfenum_config(tmp, bundle_path, gateway.url))])
        try:
            web = asyncio.run(_web_run(site.url, codes, plan.concurrency))
        finally:
            assert site.stop() == 0
        bundle = ProvisioningBundle.load(bundle_path)
        # One device id: the gateway admits 2 of its batches at once (limits.max_inflight_per_device).
        base = asyncio.run(_baseline(gateway.url, bundle, plan.respondents + 1, plan.respondents, 2))
    finally:
        gateway.stop()
    con = sqlite3.connect(tmp / "census.db")
    stored, distinct = con.execute("SELECT count(*), count(DISTINCT seq) FROM batches WHERE road = ?",
                                   (f"web:{WEB_ID}",)).fetchone()
    quarantined = con.execute("SELECT count(*) FROM quarantine").fetchone()[0]
    con.close()
    return {
        "plan": {"respondents": plan.respondents, "concurrency": plan.concurrency},
        "web_road": web,
        "gateway_ingest_same_batches": base,
        "web_vs_gateway": web["per_s"] / base["per_s"] if base["per_s"] else None,
        "store": {"web_batches": stored, "distinct_seqs": distinct, "quarantined": quarantined,
                  "ok": stored == distinct == 2 * plan.respondents and quarantined == 0},
    }


def main(argv: list[str] | None = None) -> int:
    return bench_main("web_road", lambda quick: WebPlan.quick() if quick else WebPlan(), run_web_road, argv)


if __name__ == "__main__":
    raise SystemExit(main())
