"""The online road of ``make demo``: a respondent answers online and the sheet reaches the census store.

The authority enrols the web service (``sanaq-keys enroll-web``) and mints
access codes from a first-stage list (``sanaq-selfenum codes mint``, slips
PDF); ``sanaq-selfenum serve`` starts as its own process; a respondent reads
the code off the slip and answers every page with a real HTTP client
(aiohttp, cookies, CSRF tokens, no JavaScript); the service seals, signs and
forwards the sheet over HTTPS to the gateway, and the confirmation page shows
the census receive time. The respondent is entry 1 of the first-stage list of
``AL-000001``, TAB-0001's institution (the list the dashboard imported).
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import aiohttp

__all__ = ["online_road"]

LIST = (
    "institution_code,entry_id,list_date,surname,given_name,patronymic,birth_date\n"
    "AL-000001,1,2026-06-01,Жұмабаева,Ақмарал,Серікқызы,1961-04-12\n"
    "AL-000001,2,2026-06-01,Сейітов,Нұрлан,,1975-09-30\n"
)
PAGES = {
    "name": {"surname": "Жұмабаева", "given_name": "Ақмарал", "patronymic": "Серікқызы"},
    "about": {"sex": "female", "birth_date-day": "12", "birth_date-month": "4", "birth_date-year": "1961"},
    "origin": {"citizenship": "KAZ", "nationality": "Қазақ", "native_language": "kaz"},
    "status": {"marital_status": "widowed", "education": "higher"},
    "address": {"region": "KZ-23", "district": "Атырау", "settlement": "Атырау", "street": "Сәтбаев даңғылы",
                "house": "12"},
}
_CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


def online_road(run_dir: Path, bin_dir: Path, authority: Path, url: str, *, run: Callable[..., str],
                push_snapshot: Callable[[str, Path], None]) -> None:
    bundle = run_dir / "bundles" / "WEB-AST-01"
    run("sanaq-keys", "enroll-web", "--authority", str(authority), "--web-id", "WEB-AST-01",
        "--gateway-url", url, "--out", str(bundle), quiet=True)
    push_snapshot(url, authority / "registry.snapshot")
    config = run_dir / "selfenum.toml"
    config.write_text(
        f'web_bundle = "{bundle}"\nstate_dir = "{run_dir / "selfenum-state"}"\ngateway_url = "{url}"\n'
        "[server]\nport = 0\ninsecure_cookies = true\n"  # plain HTTP on loopback for the demo only
        '[window]\nopens_at = "2020-01-01T00:00:00+05:00"\ncloses_at = "2099-01-01T00:00:00+05:00"\n'
        'census_moment = "2020-10-01"\n', encoding="utf-8")
    (run_dir / "list.csv").write_text(LIST, encoding="utf-8")
    run("sanaq-selfenum", "codes", "mint", "--config", str(config), "--list", str(run_dir / "list.csv"),
        "--slips", str(run_dir / "slips"), "--institution-kind", "childrens_home", "--worker-id", "W-0001")
    code = _code_from_slip(run_dir / "slips" / "slips-AL-000001.pdf")
    log = (run_dir / "selfenum.log").open("w")
    proc = subprocess.Popen([str(bin_dir / "sanaq-selfenum"), "serve", "--config", str(config)],
                            stdout=log, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    if "listening" not in line:
        raise SystemExit(f"demo: sanaq-selfenum did not start: {line}{proc.stderr.read()}")
    site = "http://" + line.rsplit(" on ", 1)[1].strip()
    try:
        print(asyncio.run(_respond(site, code)))
    finally:
        proc.send_signal(signal.SIGTERM)
        print(f"sanaq-selfenum stopped (exit {proc.wait(timeout=60)}); logs in {run_dir / 'selfenum.log'}")


def _code_from_slip(pdf: Path) -> str:
    from pypdf import PdfReader  # noqa: PLC0415 - installed with the test extras by make setup

    text = "".join(p.extract_text() for p in PdfReader(pdf).pages)
    codes = re.findall(r"\b[2-9A-HJ-NP-Z]{4}(?:-[2-9A-HJ-NP-Z]{4}){4}\b", text)
    print(f"slips: {pdf.name} carries {len(codes)} access codes; the respondent reads the first")
    return codes[0]


async def _respond(site: str, code: str) -> str:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:

        async def post(path: str, page: str, data: dict[str, str]) -> tuple[str, str]:
            m = _CSRF.search(page)
            assert m is not None, f"no CSRF token on the page before {path}"
            async with s.post(site + path, data={"csrf": m.group(1), **data}) as r:
                if r.status != 200:
                    raise SystemExit(f"demo: {path} answered {r.status}")
                return await r.text(), r.url.path

        async with s.get(site + "/") as r:
            page = await r.text()
        page, where = await post("/start", page, {"code": code})
        for slug, answers in PAGES.items():
            page, where = await post(f"/q/{slug}", page, {**answers, "action": "next"})
        assert where == "/q/check", where
        page, where = await post("/submit", page, {})
    text = re.sub(r"<[^>]+>", " ", page.split('<main id="main">', 1)[1].split("</main>", 1)[0])
    return "confirmation page: " + " ".join(text.split())
