"""``sanaq-selfenum``: the self-enumeration web service and the authority's access-code tools.

Commands:

* ``serve --config FILE`` runs until SIGTERM/SIGINT. Under systemd it sends
  READY=1 once the listener is bound, WATCHDOG=1 from the event loop, STATUS=
  lines and STOPPING=1.
* ``codes mint --list CSV --slips DIR`` mints one code per listed respondent
  without an active code, stores only its keyed hash, and writes one slips
  PDF per institution (0600). ``codes revoke ENTRY`` revokes an entry's code;
  ``codes reissue ENTRY --slips DIR`` revokes it and mints a new one.
  Codes are never printed to the terminal or logged.
* ``reminders export --out CSV`` writes (0600) the contacts respondents left
  for a reminder who have not submitted yet: ``entry_id, institution_code,
  language, channel, contact``, for the census authority to send reminders.
  Only the count is printed or logged.

Exit status: 0 done, 2 bad configuration or input (one line on stderr), 1 cannot start.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import re
import signal
import sys
import time
from collections import defaultdict
from pathlib import Path

import structlog
from aiohttp import web

from keys.access_codes import code_hash, mint_code
from keys.errors import KeysError
from keys.files import atomic_write
from runtime.logs import configure_logging
from runtime.sdnotify import Notifier
from runtime.toml_config import ConfigError

from .app import APP, create_app, load_pepper
from .code_lists import households, read_list
from .config import SelfenumConfig, load_config
from .contacts import open_contact, reminders_csv
from .errors import SelfenumError
from .questionnaire import Questionnaire
from .sessions import load_or_make_secret
from .slips import Slip, write_slips
from .store import CodeRow, SelfenumStore, read_pending_contacts

__all__ = ["main"]

log = structlog.get_logger("selfenum")



def _now_ms() -> int:
    return time.time_ns() // 1_000_000


async def serve(config: SelfenumConfig) -> int:
    notifier = Notifier.from_env()
    app = create_app(config)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=10.0,
                           max_field_size=8190, auto_decompress=False)
    await runner.setup()
    site = web.TCPSite(runner, config.server.host, config.server.port, backlog=1024, reuse_address=True)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    bound = ", ".join(f"{a[0]}:{a[1]}" for a in runner.addresses)
    se = app[APP]
    log.info("selfenum.listening", sockets=bound, web_id=se.bundle.device_id)
    notifier.ready(f"listening on {bound}; road web:{se.bundle.device_id}")
    print(f"sanaq-selfenum: listening on {bound}", file=sys.stderr, flush=True)
    async with asyncio.TaskGroup() as tg:
        watchdog = tg.create_task(notifier.watchdog_loop())
        status = tg.create_task(_status_loop(notifier, app))
        await stop.wait()
        log.info("selfenum.stopping")
        notifier.stopping()
        watchdog.cancel()
        status.cancel()
    await runner.cleanup()
    log.info("selfenum.stopped")
    return 0


async def _status_loop(notifier: Notifier, app: web.Application) -> None:
    se = app[APP]
    while True:
        await asyncio.sleep(10)
        c = se.store.counts()
        notifier.status(f"delivered={c['delivered']} queued={c['queued']} refused={c['refused']}")
        se.store.purge_expired_drafts(now_ms=se.clock_ms())
        se.throttle.sweep()


def _open_store(config: SelfenumConfig) -> SelfenumStore:
    config.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return SelfenumStore(config.state_dir / "selfenum.db", config.state_dir / "spool", sweep_spool=False)


def _window_text(config: SelfenumConfig) -> str:
    return (f"{config.window.opens().strftime('%d.%m.%Y %H:%M')} - "
            f"{config.window.closes().strftime('%d.%m.%Y %H:%M')}")


def _cmd_mint(config: SelfenumConfig, args: argparse.Namespace) -> int:
    listed = read_list(Path(args.list).read_bytes())
    store = _open_store(config)
    pepper = load_pepper(config)
    now = _now_ms()
    by_institution: dict[str, list[Slip]] = defaultdict(list)
    try:
        have = store.entries_with_codes()
        for group in households(listed):
            todo = [r for r in group if r.entry_id not in have]
            if not todo:
                continue
            code, first = mint_code(), todo[0]
            members = tuple(r.entry_id for r in todo) if len(todo) > 1 else ()
            store.add_code(CodeRow(code_hash(pepper, code), first.entry_id, first.institution_code,
                                   args.institution_kind, args.worker_id, "active", members),
                           now_ms=now, replace=False)
            label = first.entry_id if not members else f"{first.entry_id} +{len(members) - 1}"
            names = first.name if not members else "; ".join(f"{r.entry_id[-5:]} {r.name}" for r in todo)
            by_institution[first.institution_code].append(Slip(label, names, code))
    finally:
        store.close()
    out = Path(args.slips)
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    for institution, slips in sorted(by_institution.items()):
        write_slips(out / f"slips-{institution}.pdf", institution, slips, url=config.server.public_url,
                    window=_window_text(config), font=config.pdf_font)
    minted = sum(len(s) for s in by_institution.values())
    log.info("selfenum.codes.minted", codes=minted, institutions=len(by_institution))
    print(f"minted {minted} code(s) for {len(by_institution)} institution(s); "
          f"{len([r for r in listed if r.entry_id in have])} listed respondent(s) already had one; slips in {out}")
    return 0


def _check_entry(entry: str) -> str:
    if not re.fullmatch(r"[A-Z]{2}-[0-9]{6}/[0-9]{5}", entry):
        raise SelfenumError("entry id must look like AB-123456/00042")
    return entry


def _cmd_revoke(config: SelfenumConfig, args: argparse.Namespace) -> int:
    _check_entry(args.entry)
    store = _open_store(config)
    try:
        n = store.revoke_entry(args.entry, now_ms=_now_ms())
    finally:
        store.close()
    if n == 0:
        raise SelfenumError("no active code for that entry", entry_id=args.entry)
    log.info("selfenum.codes.revoked", entry_id=args.entry)
    print(f"revoked the code of {args.entry}")
    return 0


def _cmd_reissue(config: SelfenumConfig, args: argparse.Namespace) -> int:
    _check_entry(args.entry)
    store = _open_store(config)
    pepper = load_pepper(config)
    code = mint_code()
    institution = args.entry.split("/", 1)[0]
    try:
        held = store.covering_code(args.entry)  # a household's code is re-issued for the whole household
        members = held.members if held is not None else ()
        first = members[0] if members else args.entry
        store.add_code(CodeRow(code_hash(pepper, code), first, institution, args.institution_kind,
                               args.worker_id, "active", members), now_ms=_now_ms(), replace=True)
    finally:
        store.close()
    out = Path(args.slips)
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = out / f"slip-{args.entry.replace('/', '-')}.pdf"
    label = args.entry if not members else f"{first} +{len(members) - 1}"
    write_slips(path, institution, [Slip(label, "", code)], url=config.server.public_url,
                window=_window_text(config), font=config.pdf_font)
    log.info("selfenum.codes.reissued", entry_id=args.entry)
    print(f"reissued the code of {args.entry}; slip in {path}")
    return 0


def _cmd_reminders(config: SelfenumConfig, args: argparse.Namespace) -> int:
    state = config.state_dir
    if not (state / "contacts.key").is_file():
        raise SelfenumError("no contacts.key in the state directory: no contact was ever left")
    key = load_or_make_secret(state / "contacts.key")
    # read-only: the service may be running (opening the store would sweep its spool)
    pending = read_pending_contacts(state / "selfenum.db", now_ms=_now_ms())
    rows = []
    for entry_id, institution, sealed in pending:
        opened = open_contact(key, sealed)
        if opened is not None:
            rows.append((entry_id, institution, opened[0], opened[1]))
    out = Path(args.out)
    atomic_write(out, reminders_csv(rows), mode=0o600)
    log.info("selfenum.reminders.exported", contacts=len(rows), unreadable=len(pending) - len(rows))
    print(f"{len(rows)} contact(s) of respondents who have not submitted yet written to {out}")
    return 0


def _institution_kinds() -> tuple[str, ...]:
    """The kinds the census-sheet schema allows (the schema is the one copy of the rules)."""
    kinds = Questionnaire().schema["properties"]["institution_kind"]["enum"]
    return tuple(str(k) for k in kinds)


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, default=None,
                        help="TOML configuration (e.g. /etc/sanaq/selfenum.toml); defaults apply without one")
    p = argparse.ArgumentParser(prog="sanaq-selfenum", description="Sanaq Sync online self-enumeration service.",
                                allow_abbrev=False)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", parents=[common], help="run the web service until SIGTERM")
    sub.add_parser("check-config", parents=[common], help="validate the configuration and print the settings")
    codes = sub.add_parser("codes", help="mint, revoke and reissue access codes").add_subparsers(
        dest="codes_command", required=True)
    m = codes.add_parser("mint", parents=[common],
                         help="one code per listed respondent without one; slips PDF per institution")
    m.add_argument("--list", required=True, metavar="CSV", help="first-stage respondent list (dashboard format)")
    m.add_argument("--slips", required=True, metavar="DIR", help="where the slips PDFs go (0600)")
    r = codes.add_parser("reissue", parents=[common], help="revoke an entry's code and mint a new one")
    for q in (m, r):
        q.add_argument("--institution-kind", choices=_institution_kinds(), required=True,
                       help="one of the census-sheet schema's institution kinds")
        q.add_argument("--worker-id", required=True, help="the responsible worker (registry worker id)")
    r.add_argument("entry", metavar="ENTRY_ID")
    r.add_argument("--slips", required=True, metavar="DIR")
    v = codes.add_parser("revoke", parents=[common], help="revoke an entry's active code")
    v.add_argument("entry", metavar="ENTRY_ID")
    reminders = sub.add_parser("reminders", help="contacts left for a reminder").add_subparsers(
        dest="reminders_command", required=True)
    e = reminders.add_parser("export", parents=[common],
                             help="CSV (0600) of the contacts of respondents who have not submitted yet")
    e.add_argument("--out", required=True, metavar="CSV", help="file to write (0600); never printed")
    return p


def _resolve(config: SelfenumConfig, base: Path | None) -> SelfenumConfig:
    """Relative paths: ``web_bundle`` and ``certificates.key_dir`` in ``$CREDENTIALS_DIRECTORY`` first (the
    unit's LoadCredential= files), otherwise they and ``state_dir`` next to the configuration file."""
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    bundle, state, pepper = config.web_bundle, config.state_dir, config.codes_pepper_file
    if not bundle.is_absolute():
        if creds and (Path(creds) / bundle / "provisioning.json").is_file():
            bundle = Path(creds) / bundle
        elif base is not None:
            bundle = base / bundle
    if not state.is_absolute() and base is not None:
        state = base / state
    if pepper is not None and not pepper.is_absolute():
        if creds and (Path(creds) / pepper).is_file():
            pepper = Path(creds) / pepper
        elif base is not None:
            pepper = base / pepper
    certs = config.certificates
    key_dir = certs.key_dir
    if key_dir is not None and not key_dir.is_absolute():
        if creds and (Path(creds) / key_dir / "certificate-key.doc").is_file():
            key_dir = Path(creds) / key_dir
        elif base is not None:
            key_dir = base / key_dir
    return dataclasses.replace(config, web_bundle=bundle, state_dir=state, codes_pepper_file=pepper,
                               certificates=dataclasses.replace(certs, key_dir=key_dir))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = _resolve(load_config(args.config), args.config.parent if args.config else None)
    except ConfigError as e:
        print(f"sanaq-selfenum: {e}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        print(config)
        return 0
    configure_logging(config.log_level)
    try:
        if args.command == "serve":
            return asyncio.run(serve(config))
        if args.command == "reminders":
            return _cmd_reminders(config, args)
        handler = {"mint": _cmd_mint, "revoke": _cmd_revoke, "reissue": _cmd_reissue}[args.codes_command]
        return handler(config, args)
    except (ConfigError, KeysError, SelfenumError, ValueError) as e:
        print(f"sanaq-selfenum: error: {getattr(e, 'code', 'config')}: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"sanaq-selfenum: cannot start: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
