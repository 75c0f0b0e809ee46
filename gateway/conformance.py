"""``sanaq-gateway conformance``: a throwaway gateway that reports what a client under test did.

For app teams (docs/protocol.md is their contract): the command makes a
throwaway census authority and an enrolled test tablet in a work directory,
starts a real gateway on it (HTTPS with the authority's census CA, SQLite,
the tablet listed in the registry), prints the provisioning bundle's path and
the gateway URL, and then watches every request until SIGINT/SIGTERM,
``--duration`` seconds, or (``--until-scenarios``) every scenario has ended.
It then reports each scenario and how it ended, and exits 0 only when every
scenario ended in a passing outcome.

The gateway provokes two situations a conforming client must handle:

* its clock runs ``--clock-offset-s`` (default 600) ahead, so the client's
  first signed request is refused ``clock-skew`` and it must correct itself
  from ``server_time_ms`` (protocol 12.3 rule 4);
* the answer to the first batch it stores is lost (the connection is closed
  after the commit), so the client must resend the same envelope bytes with a
  fresh nonce and get the same receipt (``"duplicate": true``).

Scenarios, their level and their endings (``*`` marks a passing ending)::

    batch-accepted   MUST    *accepted | refused:<code>
    lost-response    MUST    *idempotent-resend | conflict | replay-refused | not-resent
    clock-skew       MUST    *recovered | not-recovered
    sheets           MUST    *all-valid | quarantined:<n> (<rule ids>)
    other-refusals   MUST    *none | <code> x <count>, ...
    sync-state       SHOULD  *read | refused:<code>
    registry         SHOULD  *fetched | refused:<code>
    assignments      SHOULD  *fetched | refused:<code>

The kit serves the test tablet's assignments (protocol 10.1) from a fixed
three-entry list of its institution, at version 1.

The session passes when every MUST scenario passed and no SHOULD scenario
ended in a failure (a SHOULD scenario may stay ``not-exercised``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import signal
import socket
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from keys import Authority, tls
from keys.enrollment import enroll_tablet
from runtime.logs import configure_logging
from wire.assignments import Assignment
from wire.census_sheet import FOUNDING_ORDER_MOMENT

from .config import CensusConfig, GatewayConfig, ServerConfig
from .context import CTX
from .server import build_server
from .staff.config import StaffConfig
from .store_sqlite import SqliteStore

__all__ = ["SCENARIOS", "ConformanceConfig", "Observer", "add_arguments", "main", "run"]

SCENARIOS = (
    "batch-accepted", "lost-response", "clock-skew", "sheets", "other-refusals", "sync-state", "registry",
    "assignments",
)  # fmt: skip
_SHOULD = frozenset({"sync-state", "registry", "assignments"})
_CLIENT_DRIVEN = ("batch-accepted", "lost-response", "clock-skew", "sync-state", "registry", "assignments")
_PASSING = {
    "batch-accepted": {"accepted"},
    "lost-response": {"idempotent-resend"},
    "clock-skew": {"recovered"},
    "sync-state": {"read"},
    "registry": {"fetched"},
    "assignments": {"fetched"},
    "sheets": {"all-valid"},
    "other-refusals": {"none"},
}
_KEYID = re.compile(r'keyid="([0-9a-f]{32})"')
_STATE_PATH = re.compile(r"/v1/devices/([^/]+)/state")
_ASSIGNMENTS_PATH = re.compile(r"/v1/devices/([^/]+)/assignments")
_INSTITUTION = "BL-000001"
_EXPECTED_REFUSALS = {"clock-skew"}  # provoked by the kit itself
_DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class ConformanceConfig:
    workdir: Path
    host: str = "127.0.0.1"
    port: int = 0
    device_id: str = "TAB-CONF-0001"
    duration_s: float | None = None
    until_scenarios: bool = False
    clock_offset_s: int = 600
    lose_first_response: bool = True
    json_output: bool = False


@dataclass(slots=True)
class Observer:
    """What the client under test did, scenario by scenario (fed by ``middleware``)."""

    device_id: str
    lose_first_response: bool = True
    endings: dict[str, str] = field(default_factory=dict)
    refusals: Counter[str] = field(default_factory=Counter)
    lost: tuple[int, str] | None = None  # (seq, batch hash) whose answer was dropped
    skewed_keys: set[str] = field(default_factory=set)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def end(self, scenario: str, ending: str) -> None:
        if scenario not in self.endings or self.endings[scenario] not in _PASSING[scenario]:
            self.endings[scenario] = ending
        self.changed.set()

    def settled(self) -> bool:
        """Every scenario the client drives has passed (sheets and other-refusals are judged at the end)."""
        return all(self.endings.get(s) in _PASSING[s] for s in _CLIENT_DRIVEN)

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as e:
            self._observe(request, e.status, None)
            raise
        body = response.body if isinstance(response, web.Response) else None
        data = _json(body if isinstance(body, bytes) else None)
        drop = self._observe(request, response.status, data)
        if drop and request.transport is not None:
            request.transport.close()  # the answer is lost after the commit: the client must resend
        return response

    def _observe(self, request: web.Request, status: int, data: dict[str, Any] | None) -> bool:
        keyid = _KEYID.search(request.headers.get("Signature-Input", ""))
        key = keyid.group(1) if keyid else ""
        code = str(data.get("code")) if data and status >= 400 else ""
        if code == "clock-skew" and key:
            self.skewed_keys.add(key)
            self.end("clock-skew", "not-recovered")
        elif status < 400 and key in self.skewed_keys:
            self.end("clock-skew", "recovered")
        if status >= 400 and code not in _EXPECTED_REFUSALS:
            self.refusals[code or str(status)] += 1
        path, method = request.path, request.method
        if method == "POST" and path == "/v1/batches":
            return self._batch(status, code, data)
        if method == "GET" and (m := _STATE_PATH.fullmatch(path)) and m.group(1) == self.device_id:
            self.end("sync-state", "read" if status == 200 else f"refused:{code or status}")
        elif method == "GET" and path == "/v1/registry":
            self.end("registry", "fetched" if status == 200 else f"refused:{code or status}")
        elif method == "GET" and (m := _ASSIGNMENTS_PATH.fullmatch(path)) and m.group(1) == self.device_id:
            self.end("assignments", "fetched" if status == 200 else f"refused:{code or status}")
        return False

    def _batch(self, status: int, code: str, data: dict[str, Any] | None) -> bool:
        if status == 200 and data is not None:
            seq, batch_hash, duplicate = data.get("seq"), str(data.get("batch_hash")), data.get("duplicate") is True
            if self.lost is not None and self.lost[0] == seq:
                self.end("lost-response", "idempotent-resend" if duplicate and self.lost[1] == batch_hash
                         else "conflict")
            if not duplicate:
                self.end("batch-accepted", "accepted")
            if self.lose_first_response and self.lost is None and not duplicate and isinstance(seq, int):
                self.lost = (seq, batch_hash)
                self.endings.setdefault("lost-response", "not-resent")
                return True
            return False
        if code == "clock-skew":
            return False
        if self.lost is not None and code in ("conflict", "replay"):
            self.end("lost-response", "conflict" if code == "conflict" else "replay-refused")
        self.end("batch-accepted", f"refused:{code or status}")
        return False

    def report(self, census_db: Path) -> dict[str, Any]:
        """The final ending of every scenario, ``passed`` for each and overall."""
        endings = dict(self.endings)
        endings["sheets"] = _sheet_ending(census_db)
        endings["other-refusals"] = (
            ", ".join(f"{c} x {n}" for c, n in sorted(self.refusals.items())) if self.refusals else "none"
        )
        scenarios = [
            {"scenario": s, "level": "SHOULD" if s in _SHOULD else "MUST", "ending": endings.get(s, "not-exercised"),
             "passed": endings.get(s) in _PASSING[s] or (s in _SHOULD and s not in endings)}
            for s in SCENARIOS
        ]
        return {"event": "report", "passed": all(s["passed"] for s in scenarios), "scenarios": scenarios}


class KitAssignments:
    """The kit's assignments: three open entries of the test tablet's institution, version 1."""

    async def assignments(self, *, institution: str, device_id: str, since: int) -> tuple[int, int, list[Assignment]]:
        del device_id
        if institution != _INSTITUTION:
            return 0, 0, []
        if since == 1:  # nothing changed after version 1; any other version: the whole list
            return 1, 1, []
        names = (("Serikova", "Aigul", "1950-03-14"), ("Kim", "Li", "1962-11-02"), ("Omarov", "Erlan", "2008-05-30"))
        return 1, 0, [Assignment(f"{institution}/{n:05d}", "open", None, surname, given, "", birth, 1)
                      for n, (surname, given, birth) in enumerate(names, start=1)]


def _json(body: bytes | None) -> dict[str, Any] | None:
    if not body:
        return None
    try:
        value = json.loads(body)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _sheet_ending(census_db: Path) -> str:
    """``all-valid`` when sheets were stored and none quarantined; else the rule ids of the quarantine."""
    if not census_db.exists():
        return "not-exercised"
    with contextlib.closing(sqlite3.connect(f"file:{census_db}?mode=ro", uri=True)) as conn:
        stored = conn.execute("SELECT count(*) FROM sheets").fetchone()[0]
        reasons = [r[0] for r in conn.execute("SELECT reason FROM quarantine")]
    if reasons:
        rules = sorted({r.split(" ", 1)[0] for r in reasons})
        return f"quarantined:{len(reasons)} ({', '.join(rules)})"
    return "all-valid" if stored else "not-exercised"


async def run(config: ConformanceConfig, out: Callable[[str], None] = print) -> int:
    """Set up, serve until told to stop, report; 0 when every scenario passed."""
    config.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    sock = socket.socket(socket.AF_INET6 if ":" in config.host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((config.host, config.port))
    host = f"[{config.host}]" if ":" in config.host else config.host
    url = f"https://{host}:{sock.getsockname()[1]}"
    authority = Authority.create(config.workdir / "authority", now_ms=_wall_ms(),
                                 server_names=(config.host, "localhost"))
    try:
        bundle = config.workdir / "bundle"
        enroll_tablet(authority, bundle, device_id=config.device_id, usb_serial="CONF-SERIAL-0001",
                      institution=_INSTITUTION, worker_id="rw-conformance", gateway_url=url, now_ms=_wall_ms(),
                      act_no="CONFORMANCE", validity_ms=_DAY_MS, census=FOUNDING_ORDER_MOMENT)
        observer = Observer(config.device_id, lose_first_response=config.lose_first_response)
        census_db = config.workdir / "census.db"
        gateway_config = GatewayConfig(
            database=f"sqlite:///{census_db}",
            server=ServerConfig(host=config.host, port=0),
            staff=StaffConfig(enabled=False),
            census=CensusConfig(moment=FOUNDING_ORDER_MOMENT.day.isoformat(),
                                utc_offset_minutes=FOUNDING_ORDER_MOMENT.utc_offset_minutes),
        )
        offset_ms = config.clock_offset_s * 1000
        server = build_server(
            gateway_config,
            SqliteStore(census_db),
            data_key=authority.data_private_key(),
            receipt_key=authority.gateway_signing_key(),
            root_public_key=authority.root_public_key,
            bootstrap_snapshot=authority.latest_snapshot(),
            clock=lambda: _wall_ms() + offset_ms,
        )
        server.app[CTX].assignments = KitAssignments()
        server.app.middlewares.insert(0, observer.middleware)  # outermost: sees every final answer
        ssl_context = tls.server_ssl_context(authority.tls_cert_path, authority.tls_key_path, authority.passphrase)
        runner = server.runner  # the production runner and its limits; only the socket is the kit's own
        await runner.setup()
        try:
            await web.SockSite(runner, sock, ssl_context=ssl_context).start()
            _announce(config, out, url, bundle)
            await _wait(config, observer)
        finally:
            await runner.cleanup()
    finally:
        authority.close()
        sock.close()
    report = observer.report(config.workdir / "census.db")
    _print_report(config, out, report)
    return 0 if report["passed"] else 1


def _wall_ms() -> int:
    return int(time.time() * 1000)


def _announce(config: ConformanceConfig, out: Callable[[str], None], url: str, bundle: Path) -> None:
    ready = {"event": "ready", "url": url, "bundle": str(bundle), "device_id": config.device_id,
             "ca": str(bundle / "ca.crt"), "workdir": str(config.workdir), "clock_offset_s": config.clock_offset_s,
             "scenarios": list(SCENARIOS)}
    if config.json_output:
        out(json.dumps(ready))
    else:
        out(f"conformance gateway: {url}\nprovisioning bundle: {bundle} (device {config.device_id})\n"
            f"gateway clock runs {config.clock_offset_s} s ahead; the answer to the first stored batch is lost.\n"
            "Run the client under test now; Ctrl-C (SIGINT) ends the session and prints the report.")


async def _wait(config: ConformanceConfig, observer: Observer) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    deadline = None if config.duration_s is None else loop.time() + config.duration_s
    try:
        while not stop.is_set() and not (config.until_scenarios and observer.settled()):
            observer.changed.clear()
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(observer.changed.wait())]
            timeout = None if deadline is None else max(0.0, deadline - loop.time())
            _, pending = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            for w in pending:
                w.cancel()
            if deadline is not None and loop.time() >= deadline:
                return
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _print_report(config: ConformanceConfig, out: Callable[[str], None], report: dict[str, Any]) -> None:
    if config.json_output:
        out(json.dumps(report))
        return
    lines = [f"  {'ok  ' if s['passed'] else 'FAIL'}  {s['level']:<6} {s['scenario']:<16} {s['ending']}"
             for s in report["scenarios"]]
    out("conformance report:\n" + "\n".join(lines) + f"\n{'PASSED' if report['passed'] else 'FAILED'}")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``conformance`` subcommand's options (hooked into ``sanaq-gateway``'s parser)."""
    p.add_argument("--workdir", type=Path, default=None,
                   help="where the authority, bundle and census.db go (default: a new temporary directory, kept)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port (default: any free port, printed)")
    p.add_argument("--device-id", default="TAB-CONF-0001", help="device id of the enrolled test tablet")
    p.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds")
    p.add_argument("--until-scenarios", action="store_true",
                   help="stop as soon as every scenario the client drives (SHOULD ones included) has passed")
    p.add_argument("--clock-offset-s", type=int, default=600, metavar="S",
                   help="run the gateway clock S seconds ahead to provoke clock-skew (0: off; default 600)")
    p.add_argument("--keep-first-response", action="store_true",
                   help="do not lose the answer to the first stored batch (skips the lost-response scenario)")
    p.add_argument("--json", action="store_true", help="one JSON object per line: ready, then report")


def main(args: argparse.Namespace) -> int:
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sanaq-conformance-"))
    if args.workdir is not None and args.workdir.exists() and any(args.workdir.iterdir()):
        print(f"sanaq-gateway conformance: {args.workdir} is not empty", file=sys.stderr)
        return 2
    config = ConformanceConfig(
        workdir=workdir, host=args.host, port=args.port, device_id=args.device_id, duration_s=args.duration,
        until_scenarios=args.until_scenarios, clock_offset_s=args.clock_offset_s,
        lose_first_response=not args.keep_first_response, json_output=args.json,
    )

    configure_logging("warning", sys.stderr)  # stdout carries only the announcement and the report

    def out(line: str) -> None:
        print(line, flush=True)

    return asyncio.run(run(config, out))
