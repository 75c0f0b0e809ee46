"""Staff response headers on a real HTTPS listener (census CA pinned by the client) and on plain HTTP.

Finding 10: HSTS on every staff response over HTTPS, ``Secure`` on the login
form cookie and the session cookie over HTTPS, and nosniff plus the pages'
CSP on ``/staff/static/*``.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from keys import tls

from .harness import World, now_ms
from .staff_browser import PASSWORD, StaffClient, StaffGateway, csrf_of, start_staff_gateway

HSTS = "max-age=31536000"


def tls_contexts(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca_key, ca_cert = tls.make_ca(now_ms=now_ms())
    key, cert = tls.make_server_cert(ca_key, ca_cert, ["localhost", "127.0.0.1"], now_ms=now_ms())
    tls.save_tls_key(tmp_path / "tls.key", key)
    tls.save_cert(tmp_path / "tls.crt", cert)
    tls.save_cert(tmp_path / "ca.crt", ca_cert)
    server = tls.server_ssl_context(tmp_path / "tls.crt", tmp_path / "tls.key")
    return server, tls.client_ssl_context(tmp_path / "ca.crt")


async def _listener(world: World, tmp_path: Path, secure: bool) -> AsyncIterator[tuple[StaffGateway, StaffClient]]:
    server, client_ctx = tls_contexts(tmp_path) if secure else (None, None)
    gateway = await start_staff_gateway(world, tmp_path, ssl_context=server)
    client = StaffClient(gateway, tls=client_ctx)
    yield gateway, client
    await client.close()
    await gateway.stop()


@pytest.fixture
async def https(world: World, tmp_path: Path) -> AsyncIterator[tuple[StaffGateway, StaffClient]]:
    async for pair in _listener(world, tmp_path, secure=True):
        yield pair


@pytest.fixture
async def plain(world: World, tmp_path: Path) -> AsyncIterator[tuple[StaffGateway, StaffClient]]:
    async for pair in _listener(world, tmp_path, secure=False):
        yield pair


@pytest.fixture(params=["https", "plain"])
async def either(request, world: World, tmp_path: Path) -> AsyncIterator[tuple[StaffGateway, StaffClient]]:
    async for pair in _listener(world, tmp_path, secure=request.param == "https"):
        yield pair


STAFF_PATHS = [
    ("/staff/login", 200),
    ("/staff/static/staff.css", 200),
    ("/staff/static/staff.js", 200),
    ("/staff/static/missing.css", 404),
    ("/staff/", 303),
    ("/staff", 303),
    ("/staff/api/summary", 401),
]


@pytest.mark.parametrize(("path", "status"), STAFF_PATHS)
async def test_every_staff_response_over_https_carries_hsts(https, path: str, status: int) -> None:
    gw, client = https
    assert gw.url.startswith("https://")
    got, _, resp = await client.get(path)
    assert got == status
    assert resp.headers.get("Strict-Transport-Security") == HSTS


@pytest.mark.parametrize(("path", "status"), STAFF_PATHS)
async def test_no_hsts_over_plain_http(plain, path: str, status: int) -> None:
    _, client = plain
    got, _, resp = await client.get(path)
    assert got == status and "Strict-Transport-Security" not in resp.headers


async def test_login_and_session_cookies_are_secure_over_https(https) -> None:
    _, client = https
    _, _, resp = await client.get("/staff/login")
    form_cookie = resp.cookies["sanaq_staff_login"]
    assert form_cookie["secure"] and form_cookie["httponly"] and form_cookie["samesite"] == "Strict"
    _, page, _ = await client.get("/staff/login")
    async with client.session.post(
        client.gw.url + "/staff/login",
        data={"csrf": csrf_of(page), "username": "admin", "password": PASSWORD},
        headers={"Origin": client.gw.url},
        allow_redirects=False,
    ) as r:
        assert r.status == 303
        assert r.headers["Strict-Transport-Security"] == HSTS
        session_cookie = r.cookies["sanaq_staff"]
        assert session_cookie["secure"] and session_cookie["httponly"]


async def test_login_cookie_is_not_secure_over_plain_http(plain) -> None:
    _, client = plain
    _, _, resp = await client.get("/staff/login")
    assert not resp.cookies["sanaq_staff_login"]["secure"]


@pytest.mark.parametrize("path", ["/staff/static/staff.css", "/staff/static/staff.js"])
async def test_static_files_carry_nosniff_and_the_pages_csp(either, path: str) -> None:
    _, client = either
    status, _, resp = await client.get(path)
    assert status == 200
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert resp.headers["Cache-Control"] == "no-cache"
