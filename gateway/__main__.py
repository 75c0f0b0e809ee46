"""``sanaq-gateway``: the census sync gateway service.

Commands: ``serve``, ``check-config``, ``migrate-store``, ``conformance`` and ``staff`` (staff
dashboard accounts: ``add-user``, ``set-password``, ``disable-user``,
``enable-user``, ``unlock-user``, ``list-users``; see ``gateway.staff.admin_cli``).

``serve`` runs until SIGTERM/SIGINT: it stops accepting, lets in-flight
requests finish and commit (up to ``server.shutdown_timeout_s``), closes the
store and exits 0. Under systemd it reports READY=1 once the listener is
bound, STATUS= lines, WATCHDOG=1 from the event loop, and STOPPING=1.

With ``[server] workers = N`` > 1 (the default on a machine with several
CPUs) ``serve`` is a supervisor of N worker processes that share the listener
(``gateway.supervisor``, docs/adr/0010-all-cores.md); READY=1 then means every
worker is ready, and SIGTERM drains them all.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import structlog
from aiohttp import web

from keys import files as keyfiles
from keys import tls
from keys.errors import KeysError
from runtime.logs import configure_logging
from runtime.sdnotify import Notifier
from runtime.toml_config import ConfigError

from . import conformance
from .app import read_optional
from .config import GatewayConfig, load_config
from .context import CTX
from .server import build_server, freeze_startup_objects
from .staff import admin_cli as staff_admin
from .store import CensusStore, StoreError
from .store_sqlite import SqliteStore
from .supervisor import die_with_parent, supervise

__all__ = ["main"]

log = structlog.get_logger("sanaq.gateway")


def make_store(config: GatewayConfig) -> CensusStore:
    path = config.sqlite_path
    if path is not None:
        return SqliteStore(path, max_group=config.commit.max_group, max_wait_ms=config.commit.max_wait_ms)
    from .store_postgres import PostgresStore  # noqa: PLC0415 - optional engine, imported only when configured

    return PostgresStore(config.database, max_group=config.commit.max_group, max_wait_ms=config.commit.max_wait_ms)


@dataclass(frozen=True, slots=True)
class WorkerArgs:
    """What a supervisor hands one worker process (hidden ``serve`` options; ``gateway.supervisor``)."""

    index: int
    supervisor_pid: int
    listen_fds: tuple[int, ...]
    device_lock_fd: int


async def serve(config: GatewayConfig, worker: WorkerArgs | None = None) -> int:
    if worker is not None:
        die_with_parent(worker.supervisor_pid)
        structlog.contextvars.bind_contextvars(worker=worker.index)
    notifier = Notifier.from_env()
    if worker is not None:  # its supervisor reads it; a stalled supervisor must not stall the worker's loop
        notifier = dataclasses.replace(notifier, nonblocking=True)
    passphrase = keyfiles.read_passphrase_file(config.keys.passphrase_file) if config.keys.passphrase_file else None
    data_key = keyfiles.load_data_key(config.keys.data_key, passphrase)
    previous = [keyfiles.load_data_key(p, passphrase) for p in config.keys.previous_data_keys]
    receipt_key = keyfiles.load_signing_key(config.keys.receipt_key, passphrase)
    root_public_key = _root_public_key(config)
    server = build_server(
        config,
        make_store(config),
        data_key=data_key,
        previous_data_keys=previous,
        receipt_key=receipt_key,
        root_public_key=root_public_key,
        bootstrap_snapshot=read_optional(config.keys.bootstrap_snapshot),
        device_lock_fd=worker.device_lock_fd if worker is not None else None,
    )
    ssl_context = None
    if not config.server.plain_http:
        if config.server.tls_cert is None or config.server.tls_key is None:
            raise ConfigError("server.tls_cert and server.tls_key are required unless plain_http = true")
        ssl_context = tls.server_ssl_context(config.server.tls_cert, config.server.tls_key, passphrase)
    sockets = [socket.socket(fileno=fd) for fd in worker.listen_fds] if worker is not None else []
    await server.start(ssl_context=ssl_context, sockets=sockets)
    freeze_startup_objects()  # full collections no longer walk the startup objects (ADR 0014)
    app = server.app
    ctx = app[CTX]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    bound = ", ".join(f"{host}:{port}" for host, port in server.addresses)
    scheme = "http" if ssl_context is None else "https"
    version = ctx.trust.current.snapshot.version if ctx.trust.current else None
    log.info("gateway.listening", scheme=scheme, sockets=bound, registry_version=version)
    if worker is None:
        notifier.ready(f"listening {scheme} on {bound}; registry v{version}")
    else:
        await _tell_supervisor_ready(notifier, f"listening {scheme} on {bound}; registry v{version}")
    if worker is None:  # a supervised worker's readiness is told by the supervisor, once all are ready
        print(f"sanaq-gateway: listening {scheme} on {bound}", file=sys.stderr, flush=True)
    async with asyncio.TaskGroup() as tg:
        watchdog = tg.create_task(notifier.watchdog_loop())
        status = tg.create_task(_status_loop(notifier, app))
        sampler = tg.create_task(ctx.metrics.sample_loop())
        await stop.wait()
        log.info("gateway.stopping")
        notifier.stopping()
        watchdog.cancel()
        status.cancel()
        sampler.cancel()
    await server.stop()
    log.info("gateway.stopped")
    return 0


async def migrate_store(config: GatewayConfig) -> int:
    """Open (applying migrations) and close the census store; the store logs each step it applies."""
    store = make_store(config)
    await store.open()
    await store.close()
    print("sanaq-gateway: the census store's schema is up to date", file=sys.stderr)
    return 0


def _root_public_key(config: GatewayConfig) -> bytes:
    text = config.keys.root_public_key
    if not text and config.keys.root_public_key_file is not None:
        try:
            text = config.keys.root_public_key_file.read_text("ascii").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read keys.root_public_key_file: {e}") from e
    if not text:
        raise ConfigError("keys.root_public_key (hex) or keys.root_public_key_file is required (root.pub)")
    try:
        key = bytes.fromhex(text)
    except ValueError as e:
        raise ConfigError("keys.root_public_key must be the 64 hex digits of root.pub (see check-config)") from e
    if len(key) != 32:
        raise ConfigError("keys.root_public_key must be the 64 hex digits of root.pub (see check-config)")
    return key


async def _tell_supervisor_ready(notifier: Notifier, status: str) -> None:
    """READY=1 to the supervisor, retried while its queue is full (it starts nothing else until then)."""
    for _ in range(600):
        if notifier.send(f"READY=1\nSTATUS={status}") or not notifier.address:
            return
        await asyncio.sleep(0.1)


async def _status_loop(notifier: Notifier, app: web.Application) -> None:
    ctx = app[CTX]
    while True:
        await asyncio.sleep(10)
        counts = await ctx.store.counts()
        notifier.status(
            f"batches={counts.get('batches', 0)} sheets={counts.get('sheets', 0)} "
            f"quarantined={counts.get('quarantine', 0)}"
        )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sanaq-gateway", description="Sanaq Sync census gateway.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the gateway until SIGTERM")
    s.add_argument(
        "--config",
        type=Path,
        default=None,
        help="TOML configuration file (e.g. /etc/sanaq/gateway.toml); defaults apply without one. "
        "With [server] workers = N > 1 (default: the CPUs this process may use) this process supervises "
        "N worker processes sharing the listener",
    )
    # set by the supervisor (gateway.supervisor) for each worker it starts; not for people
    s.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    s.add_argument("--supervisor-pid", type=int, default=0, help=argparse.SUPPRESS)
    s.add_argument("--listen-fd", type=int, action="append", default=[], help=argparse.SUPPRESS)
    s.add_argument("--device-lock-fd", type=int, default=-1, help=argparse.SUPPRESS)
    c = sub.add_parser("check-config", help="check a configuration, its key files and keys as the unit sees them")
    c.add_argument("--config", type=Path, required=True)
    m = sub.add_parser(
        "migrate-store",
        help="bring the census store's schema up to date, then exit (run with the service stopped)",
        description="Open the census store named by the configuration, apply the schema migrations it lacks "
        "(what `serve` does at start) and exit: for a long migration (a large SQLite store made before "
        "census store migration 4) that should not run inside the unit's start timeout. "
        "Exit 0 done, 2 configuration error, 1 store error.",
    )
    m.add_argument("--config", type=Path, required=True, help="TOML configuration (e.g. /etc/sanaq/gateway.toml)")
    conformance.add_arguments(sub.add_parser("conformance", help="throwaway gateway that tests a client (app teams)"))
    staff_admin.add_commands(
        sub.add_parser(
            "staff",
            help="manage staff dashboard accounts (add-user, set-password, unlock-user, list-users, ...)",
            description=staff_admin.DESCRIPTION,
        )
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "conformance":
        return conformance.main(args)
    if args.command == "staff":
        return staff_admin.run(args, prog="sanaq-gateway staff")
    if args.command == "check-config":
        from .config_check import main as check_config  # noqa: PLC0415 - only this command needs it

        return check_config(args.config, sys.stdout)
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"sanaq-gateway: {e}", file=sys.stderr)
        return 2
    configure_logging(config.server.log_level)
    if args.command == "migrate-store":
        try:
            return asyncio.run(migrate_store(config))
        except StoreError as e:
            print(f"sanaq-gateway: cannot migrate the store: {e}", file=sys.stderr)
            return 1
    try:
        if args.worker is not None:
            worker = WorkerArgs(args.worker, args.supervisor_pid, tuple(args.listen_fd), args.device_lock_fd)
            return asyncio.run(serve(config, worker))
        if config.server.workers > 1:
            return asyncio.run(supervise(config, args.config))
        return asyncio.run(serve(config))
    except (ConfigError, KeysError) as e:
        print(f"sanaq-gateway: {e}", file=sys.stderr)
        return 2
    except (OSError, StoreError) as e:
        print(f"sanaq-gateway: cannot start: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
