"""A USB station forwards through the TCP load balancer of the national topology (docs/operations.md).

HAProxy runs ``docs/examples/haproxy.cfg`` (``tests/gateway/balancer.py``) in front of a real gateway over
TLS; the station's ``gateway_url`` is the balancer's address, and the station pins the census CA of its
bundle through it (TLS passes through). A pulled export reaches the gateway exactly once, with custody,
and a second pull of the same stick finds every batch delivered.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from keys.tls import client_ssl_context
from usb_ingest.forwarder import Forwarder
from usb_ingest.station import Station

from ..gateway.balancer import Balancer
from .images import Env, export, serve_gateway

pytestmark = pytest.mark.usefixtures("_logs_unfiltered")

SEQS = range(1, 5)


async def pull_and_forward(station: Station, image: Path) -> tuple[object, bool]:
    report = await asyncio.to_thread(station.pull_volume, str(image))
    async with station.client() as client:
        delivered = await Forwarder(station.spool, client, station.trust, station.config.forward).drain(10.0)
    return report, delivered


async def test_a_station_pull_reaches_the_gateway_through_the_balancer(env: Env, tmp_path: Path) -> None:
    image = tmp_path / "tab.img"
    export(env, image, "TAB-0001", SEQS)
    gw = await serve_gateway(env, tmp_path / "census.db", tls=True)
    lb: Balancer | None = None
    try:
        port = int(gw.url.rsplit(":", 1)[1])
        lb = await Balancer.start(tmp_path, servers={"gw1": port}, ca_file=env.authority.ca_cert_path,
                                  name="localhost")
        url = f"https://localhost:{lb.port}"
        pinned = aiohttp.TCPConnector(ssl=client_ssl_context(env.authority.ca_cert_path))
        async with aiohttp.ClientSession(connector=pinned) as session:
            await lb.until_serving(session, f"{url}/readyz")
        station = Station.open(env.config(url))
        try:
            _report, delivered = await pull_and_forward(station, image)
            assert delivered is True
            assert gw.rows("SELECT seq, road FROM batches ORDER BY seq") == [(s, "station:ST-01") for s in SEQS]
            assert gw.rows("SELECT station_id, device_id, batch_count FROM custody") == [("ST-01", "TAB-0001", 4)]
            assert station.spool.pending_batches() == [] and station.spool.pending_custody() == []
            again, delivered = await pull_and_forward(station, image)  # the same stick again
            assert again.already_delivered == tuple(SEQS)  # type: ignore[attr-defined]
            assert delivered is True and gw.rows("SELECT count(*) FROM batches") == [(4,)]
        finally:
            station.close()
    finally:
        if lb is not None:
            await lb.stop()
        await gw.stop()
