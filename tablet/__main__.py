"""``sanaq-tablet``: the reference tablet client.

Subcommands (all take ``--home DIR`` or ``$SANAQ_TABLET_HOME``; layout in ``tablet.identity``):

* ``fill --seed N --count N [--mix household=85,hospital=6,...]`` — generate
  sheets (``tablet.generator``), check them against the census-sheet schema,
  queue them in the outbox. Repeated fills with one seed continue its stream.
* ``fill --entry N [--anyway]`` — interview entry N of the institution's list
  (from the assignments the last sync fetched): one sheet naming that entry
  and person. An entry already enumerated (online, here or by another tablet)
  is refused with a warning (exit 2, code ``already-enumerated``) unless
  ``--anyway``; the gateway then stores both sheets and opens a review case.
* ``list [--all]`` — the held assignments: the open entries (and those that
  need a revisit), or every entry with ``--all``.
* ``pack [--max-per-batch N] [--max-batch-bytes N]`` — seal pending sheets into
  signed batches (each sealed once, consecutive seqs).
* ``export-usb --out PATH [--in-place] [--fat 16|32]`` — write the USB export
  volume of every pending batch to an image file or block device; the batches
  stay in the outbox until a receipt or sync state covers them.
* ``status [--json]`` — outbox counters.
* ``init --bundle DIR [--force] [--start-seq N | --resume-from-gateway]`` —
  install a provisioning bundle as the tablet's identity (``tablet.provision``).
* ``sync [--watch] [--gateway URL]`` — deliver the outbox (``tablet.client``);
  exit 0 all delivered, 1 batches left for later, 3 stopped: needs a person.
* ``simulate --authority DIR --gateway URL --tablets N --sheets M`` — a fleet
  of tablets against one gateway (``tablet.fleet``); exit 0, 1 or 3 likewise.

The device key's passphrase comes from ``--passphrase-file`` or
``$SANAQ_DEVICE_PASSPHRASE``, never from argv. Output goes to stdout (``--json``
for scripts); logs are JSON lines on stderr. Every refusal is one line
``sanaq-tablet: error: <code>: <message>`` on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import structlog

from keys.errors import KeysError
from keys.files import atomic_write
from wire.errors import WireError

from . import cli_args
from .assignments import AssignmentBook
from .cli_args import emit, now_ms
from .cli_sync import add_sync_commands
from .errors import AlreadyEnumeratedError, TabletError, UnknownEntryError
from .generator import KindMix, generate_sheets, sheet_for_entry
from .identity import OUTBOX_FILE, TabletIdentity
from .outbox import DEFAULT_MAX_BATCH_BYTES, DEFAULT_MAX_PER_BATCH, Outbox
from .sheet_schema import SheetValidator
from .usb_export import write_export_volume

__all__ = ["build_parser", "main"]

_CURSOR_FILE = "fill-cursor.json"


def _open_outbox(args: argparse.Namespace, identity: TabletIdentity, validate: bool = False) -> Outbox:
    return Outbox.open(
        cli_args.home(args) / OUTBOX_FILE,
        device_id=identity.device_id,
        now_ms=now_ms(args),
        validator=SheetValidator(identity.census) if validate else None,
    )


def _parse_mix(text: str | None) -> KindMix:
    if not text:
        return KindMix()
    names = {f.name for f in dataclasses.fields(KindMix)}
    weights: dict[str, int] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if not sep or name.strip() not in names or not value.strip().isdigit():
            raise TabletError(f"--mix wants kind=weight pairs of {sorted(names)}", given=part)
        weights[name.strip()] = int(value)
    try:
        return KindMix.only(**weights)
    except ValueError as e:
        raise TabletError(str(e)) from e


def _read_cursor(path: Path) -> dict[str, int]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise TabletError("fill cursor file unreadable", path=str(path)) from e
    streams = data.get("streams") if isinstance(data, dict) else None
    if not isinstance(streams, dict) or not all(isinstance(v, int) and v >= 0 for v in streams.values()):
        raise TabletError("fill cursor file malformed", path=str(path))
    return {str(k): v for k, v in streams.items()}


def _cmd_fill(args: argparse.Namespace) -> int:
    if args.entry is not None:
        return _fill_entry(args)
    if args.seed is None or args.count is None:
        raise TabletError("fill needs --seed and --count, or --entry N")
    identity = cli_args.identity(args)
    cursor_path = cli_args.home(args) / _CURSOR_FILE
    cursor = _read_cursor(cursor_path)
    key = f"{args.seed}:{args.mix or ''}"
    start = cursor.get(key, 0)
    sheets = generate_sheets(
        args.seed, args.count, device_id=identity.device_id, mix=_parse_mix(args.mix), start=start,
        worker_id=identity.worker_id, census_moment=identity.census.day,
    )
    with _open_outbox(args, identity, validate=True) as outbox:
        added = outbox.add_sheets(sheets, now_ms=now_ms(args))
        stats = outbox.stats()
    cursor[key] = start + args.count
    atomic_write(cursor_path, json.dumps({"v": 1, "streams": cursor}, sort_keys=True).encode())
    emit(args, {"added": added, "start": start, "sheets_pending": stats.sheets_pending},
          f"queued {added} sheets (stream {args.seed} from {start}); {stats.sheets_pending} pending")
    return 0


_STATUS_TEXT = {
    "open": "open",
    "needs-revisit": "needs a revisit",
    "enumerated-online": "enumerated online",
    "enumerated-here": "enumerated by this tablet",
    "enumerated-elsewhere": "enumerated by another tablet",
}


def _fill_entry(args: argparse.Namespace) -> int:
    identity = cli_args.identity(args)
    book = AssignmentBook.load(cli_args.home(args))
    held = book.number(args.entry)
    if held is None:
        raise UnknownEntryError("no such entry in the held assignments (run sync first)", entry=args.entry)
    if held.enumerated:
        when = "" if held.enumerated_at_ms is None else f" at {_utc(held.enumerated_at_ms)}"
        warning = f"warning: {held.entry_id} is already {_STATUS_TEXT[held.status]}{when}"
        if not args.anyway:
            raise AlreadyEnumeratedError(f"{warning}; pass --anyway to interview again (staff will review both sheets)")
        print(f"{warning}; interviewing anyway: staff will review both sheets", file=sys.stderr)
    sheet = sheet_for_entry(
        {"entry_id": held.entry_id, "surname": held.surname, "given_name": held.given_name,
         "patronymic": held.patronymic, "birth_date": held.birth_date},
        institution=book.institution or "", device_id=identity.device_id, seed=args.seed or 0,
        filled_at_ms=now_ms(args), worker_id=identity.worker_id, census_moment=identity.census.day,
    )
    with _open_outbox(args, identity, validate=True) as outbox:
        added = outbox.add_sheets([sheet], now_ms=now_ms(args))
        stats = outbox.stats()
    emit(args, {"added": added, "entry_id": held.entry_id, "status_before": held.status,
                "sheets_pending": stats.sheets_pending},
         f"queued the sheet of {held.entry_id}; {stats.sheets_pending} pending")
    return 0


def _utc(at_ms: int) -> str:
    return datetime.fromtimestamp(at_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _cmd_list(args: argparse.Namespace) -> int:
    book = AssignmentBook.load(cli_args.home(args))
    shown = [e for e in sorted(book.entries.values(), key=lambda e: e.entry_id)
             if args.all or e.status in ("open", "needs-revisit")]
    value = {
        "institution": book.institution,
        "version": book.version,
        "fetched_at_ms": book.fetched_at_ms,
        "entries": [{"entry_id": e.entry_id, "status": e.status, "enumerated_at_ms": e.enumerated_at_ms,
                     "surname": e.surname, "given_name": e.given_name, "patronymic": e.patronymic,
                     "birth_date": e.birth_date} for e in shown],
    }
    if book.institution is None:
        text = "no assignments held yet: run sync"
    else:
        counts = {s: sum(e.status == s for e in book.entries.values()) for s in _STATUS_TEXT}
        head = (f"{book.institution}, assignments version {book.version}: {counts['open']} open, "
                f"{counts['needs-revisit']} to revisit, "
                f"{len(book.entries) - counts['open'] - counts['needs-revisit']} enumerated")
        lines = [f"{e.entry_id[-5:]}  {_STATUS_TEXT.get(e.status, e.status):<28} {e.surname} {e.given_name} "
                 f"{e.patronymic} ({e.birth_date})".replace("  (", " (") for e in shown]
        text = "\n".join([head, *lines])
    emit(args, value, text)
    return 0


def _cmd_pack(args: argparse.Namespace) -> int:
    identity = cli_args.identity(args)
    with _open_outbox(args, identity) as outbox:
        made = outbox.pack(
            now_ms=now_ms(args), device_key=identity.signing_key, data_public_key=identity.data_public_key,
            max_per_batch=args.max_per_batch, max_batch_bytes=args.max_batch_bytes,
        )
    seqs = [b.seq for b in made]
    span = f"seq {seqs[0]}..{seqs[-1]}" if seqs else "nothing pending"
    emit(args, {"batches": [{"seq": b.seq, "records": b.record_count, "size": b.size} for b in made]},
          f"sealed {len(made)} batches ({span}), {sum(b.record_count for b in made)} sheets")
    return 0


def _cmd_export_usb(args: argparse.Namespace) -> int:
    identity = cli_args.identity(args)
    with _open_outbox(args, identity) as outbox:
        pending = outbox.pending_batches()
    result = write_export_volume(
        args.out, pending, device_id=identity.device_id, usb_serial=identity.usb_serial,
        device_key=identity.signing_key, now_ms=now_ms(args), in_place=args.in_place or None, fat_bits=args.fat,
    )
    value = {
        "target": result.target,
        "seqs": list(result.seqs),
        "left_out": result.left_out,
        "manifest_sha256": result.manifest_sha256.hex(),
        "fat": result.fat_type,
        "volume_bytes": result.volume_bytes,
    }
    emit(args, value, f"wrote {len(result.seqs)} batches to {result.target} (FAT{result.fat_type}, "
                       f"{result.volume_bytes // (1024 * 1024)} MiB); they stay pending until receipted")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    identity = cli_args.identity(args)
    with _open_outbox(args, identity) as outbox:
        stats = outbox.stats()
    value = dataclasses.asdict(stats)
    text = "\n".join(f"{k.replace('_', ' ')}: {'-' if v is None else v}" for k, v in value.items())
    emit(args, value, text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sanaq-tablet", description="Sanaq Sync reference tablet client")
    parser.add_argument("--home", metavar="DIR", help="tablet state directory (default $SANAQ_TABLET_HOME)")
    parser.add_argument("--passphrase-file", metavar="FILE",
                        help="device key passphrase (else $SANAQ_DEVICE_PASSPHRASE)")
    parser.add_argument("--now-ms", type=int, metavar="MS", help="use this clock value (demos and tests)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("-v", "--verbose", action="store_true", help="log info events to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add_sync_commands(sub)

    p = sub.add_parser("fill", help="generate synthetic sheets into the outbox, or interview one list entry")
    p.add_argument("--seed", type=int)
    p.add_argument("--count", type=int)
    p.add_argument("--mix", metavar="KIND=W,...", help="kind weights, e.g. household=0,hospital=1")
    p.add_argument("--entry", type=int, metavar="N", help="interview entry N of the institution's list (see `list`)")
    p.add_argument("--anyway", action="store_true", help="with --entry: interview even if already enumerated")
    p.set_defaults(func=_cmd_fill)

    p = sub.add_parser("list", help="the institution's list entries still open (from the last sync)")
    p.add_argument("--all", action="store_true", help="every entry with its status")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("pack", help="seal pending sheets into signed batches")
    p.add_argument("--max-per-batch", type=int, default=DEFAULT_MAX_PER_BATCH)
    p.add_argument("--max-batch-bytes", type=int, default=DEFAULT_MAX_BATCH_BYTES)
    p.set_defaults(func=_cmd_pack)

    p = sub.add_parser("export-usb", help="write the USB export volume of all pending batches")
    p.add_argument("--out", required=True, metavar="PATH", help="image file or block device")
    p.add_argument("--in-place", action="store_true", help="overwrite an existing file from byte 0, keep its inode")
    p.add_argument("--fat", type=int, choices=(16, 32), help="force FAT16 or FAT32 (default by size)")
    p.set_defaults(func=_cmd_export_usb)

    p = sub.add_parser("status", help="outbox counters")
    p.set_defaults(func=_cmd_status)
    return parser


def _configure_logging(verbose: bool) -> None:
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso", utc=True),
                    structlog.processors.JSONRenderer(sort_keys=True)],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO if verbose else logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    try:
        return int(args.func(args))
    except (TabletError, KeysError, WireError) as e:
        _fail(e.code, str(e))
    except OSError as e:
        _fail("io", f"{e.strerror or e} ({e.filename})" if e.filename else str(e))
    return 2


def _fail(code: str, message: str) -> None:
    print(f"sanaq-tablet: error: {code}: {' '.join(message.split())}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
