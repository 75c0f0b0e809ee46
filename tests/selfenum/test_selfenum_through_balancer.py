"""The web road through the TCP load balancer of the national topology (docs/operations.md).

HAProxy runs ``docs/examples/haproxy.cfg`` (``tests/gateway/balancer.py``) in front of a real gateway over
TLS; ``sanaq-selfenum``'s ``gateway_url`` is the balancer's address and it pins its bundle's census CA
through it (TLS passes through). A respondent's submission is delivered at once: the sheet is stored on the
road ``web:<id>`` and the confirmation page shows the receipt's receive time.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp

from gateway.config import GatewayConfig, ServerConfig
from gateway.server import build_server
from gateway.staff.config import StaffConfig
from gateway.store_sqlite import SqliteStore
from keys.tls import client_ssl_context, server_ssl_context

from ..gateway.balancer import Balancer
from .bed import ANSWERS, INSTITUTION, WEB_ID, Env, Gateway, mint, selfenum_config, serve_selfenum
from .browserless import Respondent


async def serve_tls_gateway(env: Env, db_path: Path) -> Gateway:
    a = env.authority
    config = GatewayConfig(database=f"sqlite:///{db_path}", server=ServerConfig(port=0),
                           staff=StaffConfig(enabled=False))
    server = build_server(config, SqliteStore(db_path), data_key=a.data_private_key(),
                          receipt_key=a.gateway_signing_key(), root_public_key=a.root_public_key,
                          bootstrap_snapshot=a.latest_snapshot())
    await server.start(ssl_context=server_ssl_context(a.tls_cert_path, a.tls_key_path))
    return Gateway(f"https://127.0.0.1:{server.addresses[0][1]}", server.runner, db_path)


async def test_a_web_submission_is_delivered_through_the_balancer(env: Env, tmp_path: Path) -> None:
    gw = await serve_tls_gateway(env, tmp_path / "census.db")
    lb: Balancer | None = None
    try:
        port = int(gw.url.rsplit(":", 1)[1])
        ca = env.authority.ca_cert_path
        lb = await Balancer.start(tmp_path, servers={"gw1": port}, ca_file=ca, name="localhost")
        url = f"https://localhost:{lb.port}"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ssl_context(ca))) as session:
            await lb.until_serving(session, f"{url}/readyz")
        config = selfenum_config(env, tmp_path / "selfenum", url)
        codes = mint(config)
        site = await serve_selfenum(config)
        r = Respondent(site.url)
        try:
            status, _, path = await r.sign_in(codes[f"{INSTITUTION}/00001"])
            assert (status, path) == (200, "/q/name")
            await r.fill(ANSWERS)
            status, page, path = await r.post("/submit", {})
        finally:
            await r.close()
            await site.stop()
        assert (status, path) == (200, "/done")
        assert "Халық санағы деректерінің базасына" in page  # delivered: the receipt's receive time is shown
        assert gw.rows("SELECT road, device_id FROM batches") == [(f"web:{WEB_ID}", WEB_ID)]
        assert gw.rows("SELECT count(*) FROM sheets") == [(1,)]
    finally:
        if lb is not None:
            await lb.stop()
        await gw.stop()
