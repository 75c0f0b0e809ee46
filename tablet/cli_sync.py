"""The ``init``, ``sync`` and ``simulate`` subcommands of ``sanaq-tablet`` (registered by ``__main__``).

Exit status of ``sync`` and ``simulate``: 0 everything delivered (for
``sync --watch``: stopped on request), 1 batches left for a later pass
(gateway unreachable or busy), 3 a refusal that needs a person (the report
says which and why; stderr gets the usual one-line ``error: <code>:``).
Local errors (no identity, bad arguments) keep the CLI's status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import structlog

from keys import Authority
from keys.files import read_passphrase_file

from . import cli_args
from .client import SyncEngine, wall_clock_ms
from .errors import TabletError
from .fleet import FleetConfig, simulate_fleet
from .fleet_report import render_table
from .gateway_client import GatewayClient
from .identity import OUTBOX_FILE, TabletIdentity
from .outbox import DEFAULT_MAX_PER_BATCH, Outbox
from .outbox_worker import OutboxWorker
from .provision import install_identity, load_bundle_identity, set_seq_floor
from .sync_policy import RetryPolicy, SyncConfig
from .sync_report import SyncReport
from .transport import gateway_ssl

__all__ = ["add_sync_commands"]

log = structlog.get_logger("tablet.cli")


def add_sync_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("init", help="install a provisioning bundle as this tablet's identity")
    p.add_argument("--bundle", required=True, metavar="DIR", help="output of `sanaq-keys enroll-tablet`")
    p.add_argument("--force", action="store_true", help="replace an installed identity (the outbox is kept)")
    p.add_argument("--start-seq", type=int, metavar="N", help="re-provisioned offline: first seq to use")
    p.add_argument("--resume-from-gateway", action="store_true",
                   help="re-provisioned: ask the gateway which seqs it holds and continue after them")
    _sync_options(p)
    p.set_defaults(func=_cmd_init)

    p = sub.add_parser("sync", help="deliver pending batches to the gateway")
    _sync_options(p)
    p.add_argument("--watch", action="store_true", help="sync again every --interval seconds until SIGTERM")
    p.add_argument("--interval", type=float, default=300.0, metavar="S", help="seconds between passes (jittered)")
    p.add_argument("--no-pack", action="store_true", help="send sealed batches only, leave pending sheets")
    p.add_argument("--max-per-batch", type=int, default=DEFAULT_MAX_PER_BATCH)
    p.set_defaults(func=_cmd_sync)

    p = sub.add_parser("simulate", help="a fleet of simulated tablets against one gateway")
    _sync_options(p)
    p.add_argument("--authority", required=True, metavar="DIR", help="authority directory (`sanaq-keys init`)")
    p.add_argument("--create-authority", action="store_true", help="create the authority if DIR does not exist")
    p.add_argument("--authority-passphrase-file", metavar="FILE", help="else $SANAQ_KEY_PASSPHRASE")
    p.add_argument("--ca", metavar="FILE", help="census CA to pin (default: the authority's ca.crt)")
    p.add_argument("--tablets", type=int, default=5)
    p.add_argument("--sheets", type=int, default=20, help="sheets per tablet")
    p.add_argument("--per-batch", type=int, default=10, help="sheets per batch")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--fleet-id", help="device id prefix (default sim-<random>)")
    p.add_argument("--concurrency", type=int, default=0, help="tablets syncing at once (0 = all)")
    p.add_argument("--connections", type=int, default=64, help="HTTP connections shared by the fleet")
    p.add_argument("--workdir", metavar="DIR", help="keep the outboxes here (default: a temporary directory)")
    p.add_argument("--receipts-out", metavar="FILE", help="append every verified receipt as a JSON line")
    p.add_argument("--no-registry-put", action="store_true", help="do not PUT the new snapshot to the gateway")
    p.set_defaults(func=_cmd_simulate)


def _sync_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gateway", metavar="URL", help="gateway URL (default: the bundle's); http:// for tests only")
    p.add_argument("--max-attempts", type=int, default=5, help="attempts per request per pass")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S", help="per request")


def _config(args: argparse.Namespace, url: str | None, ca: Path | None, **extra: object) -> SyncConfig:
    if not url:
        raise TabletError("no gateway URL: pass --gateway URL")
    if url.startswith("http://"):
        log.warning("sync.plain_http", gateway_url=url, hint="no TLS: for loopback tests only")
    return SyncConfig(gateway_url=url, ca_cert_path=ca, retry=RetryPolicy(max_attempts=args.max_attempts),
                      request_timeout_s=args.timeout, **extra)  # type: ignore[arg-type]


def _clock(args: argparse.Namespace) -> Callable[[], int]:
    return (lambda: int(args.now_ms)) if args.now_ms is not None else wall_clock_ms


# -- init ----------------------------------------------------------------------------------------------------


def _cmd_init(args: argparse.Namespace) -> int:
    home, passphrase, now = cli_args.home(args), cli_args.passphrase(args), cli_args.now_ms(args)
    if args.start_seq is not None and args.start_seq < 1:
        raise TabletError("--start-seq must be >= 1")
    floor = args.start_seq
    gateway_max = None
    if args.resume_from_gateway:
        incoming = load_bundle_identity(args.bundle, passphrase)
        config = _config(args, args.gateway or incoming.gateway_url, incoming.ca_cert_path)
        gateway_max = asyncio.run(_gateway_max_seq(incoming, config, _clock(args)))
        floor = max(floor or 1, gateway_max + 1)
    identity = install_identity(home, args.bundle, passphrase=passphrase, now_ms=now, force=args.force)
    if floor is not None:
        next_seq = set_seq_floor(home, identity, floor, now_ms=now, reason="init: re-provisioned device")
    else:
        with Outbox.open(home / OUTBOX_FILE, device_id=identity.device_id, now_ms=now) as outbox:
            next_seq = outbox.stats().next_seq
    value = {"device_id": identity.device_id, "home": str(home), "next_seq": next_seq,
             "gateway_url": identity.gateway_url, "gateway_max_seq": gateway_max}
    resumed = f"; the gateway holds up to seq {gateway_max}" if gateway_max is not None else ""
    cli_args.emit(args, value, f"installed the identity of {identity.device_id} in {home}; "
                               f"next batch seq {next_seq}{resumed}")
    return 0


async def _gateway_max_seq(identity: TabletIdentity, config: SyncConfig, clock: Callable[[], int]) -> int:
    ssl = gateway_ssl(config.gateway_url, config.ca_cert_path)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl if ssl is not None else False)) as s:
        client = GatewayClient(device_id=identity.device_id, signing_key=identity.signing_key,
                               gateway_keys=identity.gateway_key_map(), config=config, session=s, clock=clock,
                               token=os.urandom, rng=random.SystemRandom())
        state = await client.get_state()
    return state.max_seq


# -- sync ----------------------------------------------------------------------------------------------------


def _cmd_sync(args: argparse.Namespace) -> int:
    identity = cli_args.identity(args)
    config = _config(args, args.gateway or identity.gateway_url, identity.ca_cert_path, pack=not args.no_pack,
                     watch_interval_s=args.interval, max_per_batch=args.max_per_batch)
    return asyncio.run(_sync(args, identity, config))


@contextlib.contextmanager
def _stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    try:
        yield
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def _sync(args: argparse.Namespace, identity: TabletIdentity, config: SyncConfig) -> int:
    path = cli_args.home(args) / OUTBOX_FILE
    worker = await OutboxWorker.open(path, device_id=identity.device_id, now_ms=cli_args.now_ms(args))
    engine_ = SyncEngine(identity, worker, config, clock=_clock(args), assignments_home=cli_args.home(args))
    async with worker, engine_ as engine:
        with _stop_on_signals(engine.request_stop):
            if args.watch:
                report = await engine.watch(on_pass=lambda r: _show(args, r, one_line=True))
                if report.outcome == "stopped":
                    _show(args, report, one_line=False)
                    return 3
                return 0
            report = await engine.sync_once()
    _show(args, report, one_line=False)
    return report.exit_code


def _show(args: argparse.Namespace, report: SyncReport, *, one_line: bool) -> None:
    text = report.describe()
    cli_args.emit(args, report.to_json(), text.splitlines()[0] if one_line else text)
    if report.stop is not None and not one_line:
        print(f"sanaq-tablet: error: {report.stop.code}: {' '.join(report.stop.detail.split())}", file=sys.stderr)


# -- simulate ------------------------------------------------------------------------------------------------


def _authority(args: argparse.Namespace, now: int) -> Authority:
    passphrase = None
    if args.authority_passphrase_file:
        passphrase = read_passphrase_file(args.authority_passphrase_file)
    elif os.environ.get("SANAQ_KEY_PASSPHRASE"):
        passphrase = os.environ["SANAQ_KEY_PASSPHRASE"].encode()
    path = Path(args.authority)
    if args.create_authority and not path.exists():
        return Authority.create(path, now_ms=now, passphrase=passphrase)
    return Authority.open(path, passphrase=passphrase)


def _cmd_simulate(args: argparse.Namespace) -> int:
    now = cli_args.now_ms(args)
    with _authority(args, now) as authority:
        ca = Path(args.ca) if args.ca else authority.ca_cert_path
        sync = _config(args, args.gateway, ca)
        extra = {"fleet_id": args.fleet_id} if args.fleet_id else {}
        config = FleetConfig(sync=sync, tablets=args.tablets, sheets_per_tablet=args.sheets,
                             max_per_batch=args.per_batch, seed=args.seed, concurrency=args.concurrency,
                             connections=args.connections, put_registry=not args.no_registry_put, **extra)
        with contextlib.ExitStack() as stack:
            workdir = args.workdir or stack.enter_context(tempfile.TemporaryDirectory(prefix="sanaq-fleet-"))
            report = asyncio.run(simulate_fleet(authority, config, workdir, receipts_out=args.receipts_out))
    if args.json:
        cli_args.emit(args, report.to_json(), "")
    else:
        render_table(report)
    if report.stopped:
        return 3
    return 0 if report.all_delivered else 1
