"""``sanaq-keys``: the census authority's admin command.

Subcommands: ``init``, ``enroll-tablet``, ``enroll-station``, ``enroll-web``, ``revoke``,
``mark-lost``, ``mark-returned``, ``list``, ``history``, ``publish``,
``show-snapshot``, ``export-gateway``, ``rotate tls|receipt|data``, ``push``,
``registry-status``, ``certificate-key create|rotate|revoke|list``, ``verify-certificate``.
Enrolments and status changes publish a new snapshot (unless ``--no-publish``); it
reaches the gateways only with ``push`` (revocation reaches stations through the gateway).

Passphrases never come from argv: ``--passphrase-file`` or
``SANAQ_KEY_PASSPHRASE`` (authority keys), ``--bundle-passphrase-file`` or
``SANAQ_BUNDLE_PASSPHRASE`` (a device key in a new bundle),
``--export-passphrase-file`` or ``SANAQ_EXPORT_PASSPHRASE`` (exported gateway
keys). Output is human-readable, ``--json`` for scripts. Every refusal is one
line ``sanaq-keys: error: <code>: <message>`` on stderr and exit status 2;
``show-snapshot`` exits 1 when the snapshot verifies but has expired;
``push`` and ``registry-status`` exit 1 when any instance failed or is behind;
``verify-certificate`` exits 0 valid, 1 invalid, 3 revoked (2: cannot verify).
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from wire.errors import WireError

from . import cli_output as out
from .authority import DEFAULT_SNAPSHOT_VALIDITY_MS, Authority
from .cli_certificates import UsageProblem, add_certificate_commands
from .enrollment import enroll_station, enroll_tablet, enroll_web
from .errors import KeysError, WrongPassphraseError
from .files import atomic_write, load_public_key, read_passphrase_file
from .gateway_bundle import export_gateway
from .registry_push import push_snapshot, registry_status
from .rotation import prepare_receipt, rotate_data, rotate_receipt, rotate_tls
from .tls import DEFAULT_SERVER_NAMES

__all__ = ["build_parser", "main"]

_DAY_MS = 24 * 3600 * 1000
_MAX_SYNC_STATE_BYTES = 16 * 1024 * 1024


class _UsageError(Exception):
    """A command line that parses but makes no sense; exit 2 like argparse."""


def _passphrase(path: str | None, env: str) -> bytes | None:
    if path is not None:
        return read_passphrase_file(path)
    value = os.environ.get(env)
    return value.encode("utf-8") if value else None


def _now(args: argparse.Namespace) -> int:
    return int(args.now_ms) if args.now_ms is not None else int(time.time() * 1000)


def _validity_ms(args: argparse.Namespace) -> int:
    days = args.validity_days
    if days is None:
        return DEFAULT_SNAPSHOT_VALIDITY_MS
    if not 0 < days <= 366:
        raise _UsageError("--validity-days must be 1..366")
    return int(days * _DAY_MS)


def _open(args: argparse.Namespace) -> Authority:
    passphrase = _passphrase(args.passphrase_file, "SANAQ_KEY_PASSPHRASE")
    args.authority_passphrase_given = passphrase is not None
    return Authority.open(args.authority, passphrase=passphrase)


def _cmd_init(args: argparse.Namespace) -> int:
    names = args.server_name or list(DEFAULT_SERVER_NAMES)
    passphrase = _passphrase(args.passphrase_file, "SANAQ_KEY_PASSPHRASE")
    with Authority.create(args.dir, now_ms=_now(args), passphrase=passphrase, server_names=names,
                          validity_ms=_validity_ms(args)) as a:
        out.authority_created(a, names, passphrase is not None, as_json=args.json)
    return 0


def _cmd_enroll_tablet(args: argparse.Namespace) -> int:
    with _open(args) as a:
        bundle = enroll_tablet(
            a, args.out, device_id=args.device_id, usb_serial=args.usb_serial, institution=args.institution,
            worker_id=args.worker_id, gateway_url=args.gateway_url, now_ms=_now(args),
            worker_name=args.worker_name, act_no=args.act_no,
            bundle_passphrase=_passphrase(args.bundle_passphrase_file, "SANAQ_BUNDLE_PASSPHRASE"),
            validity_ms=_validity_ms(args),
        )
        out.enrolled(bundle, a.registry.latest_version(), as_json=args.json)
    return 0


def _cmd_enroll_station(args: argparse.Namespace) -> int:
    with _open(args) as a:
        bundle = enroll_station(
            a, args.out, station_id=args.station_id, gateway_url=args.gateway_url, now_ms=_now(args),
            location=args.location,
            bundle_passphrase=_passphrase(args.bundle_passphrase_file, "SANAQ_BUNDLE_PASSPHRASE"),
            validity_ms=_validity_ms(args),
        )
        out.enrolled(bundle, a.registry.latest_version(), as_json=args.json)
    return 0


def _cmd_enroll_web(args: argparse.Namespace) -> int:
    with _open(args) as a:
        bundle = enroll_web(
            a, args.out, web_id=args.web_id, gateway_url=args.gateway_url, now_ms=_now(args),
            location=args.location,
            bundle_passphrase=_passphrase(args.bundle_passphrase_file, "SANAQ_BUNDLE_PASSPHRASE"),
            validity_ms=_validity_ms(args),
        )
        out.enrolled(bundle, a.registry.latest_version(), as_json=args.json)
    return 0


def _publish_after_change(a: Authority, args: argparse.Namespace) -> int | None:
    if args.no_publish:
        return None
    a.publish(now_ms=_now(args), validity_ms=_validity_ms(args))
    return a.registry.latest_version()


def _cmd_revoke(args: argparse.Namespace) -> int:
    with _open(args) as a:
        if not args.no_publish:
            a.root_signing_key()
        record = a.registry.revoke(args.id, reason=args.reason, now_ms=_now(args))
        out.status_changed(record, _publish_after_change(a, args), as_json=args.json)
    return 0


def _cmd_mark_lost(args: argparse.Namespace) -> int:
    with _open(args) as a:
        if not args.no_publish:
            a.root_signing_key()
        record = a.registry.mark_lost(args.id, reason=args.reason, now_ms=_now(args))
        out.status_changed(record, _publish_after_change(a, args), as_json=args.json)
    return 0


def _cmd_mark_returned(args: argparse.Namespace) -> int:
    if (args.sync_state is None) != (args.last_seq is None):
        raise _UsageError("--sync-state and --last-seq go together")
    if args.sync_state is None and args.signoff is None:
        raise _UsageError("give --sync-state FILE --last-seq N, or --signoff TEXT")
    sync_state = None
    if args.sync_state is not None:
        with Path(args.sync_state).open("rb") as fh:
            sync_state = fh.read(_MAX_SYNC_STATE_BYTES)
    with _open(args) as a:
        if not args.no_publish:
            a.root_signing_key()
        record = a.registry.mark_returned(
            args.id, now_ms=_now(args), gateway_keys=a.gateway_key_map(), sync_state=sync_state,
            last_seq=args.last_seq, signoff=args.signoff,
        )
        out.status_changed(record, _publish_after_change(a, args), as_json=args.json)
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    with _open(args) as a:
        r = a.registry
        out.listing(r.list_tablets(), r.list_stations(), r.latest_version(), as_json=args.json)
    return 0


def _cmd_history(args: argparse.Namespace) -> int:
    with _open(args) as a:
        out.history(a.registry.events(args.id), as_json=args.json)
    return 0


def _cmd_publish(args: argparse.Namespace) -> int:
    with _open(args) as a:
        data = a.publish(now_ms=_now(args), validity_ms=_validity_ms(args))
        if args.out is not None:
            atomic_write(args.out, data, mode=0o644)
        out.published(a.registry.list_snapshots()[-1], args.out or str(a.snapshot_path), as_json=args.json)
    return 0


def _cmd_show_snapshot(args: argparse.Namespace) -> int:
    if args.authority is not None:
        with Authority.open(args.authority) as a:
            root = a.root_public_key
    elif args.root_pub is not None:
        root = _root_from_arg(args.root_pub)
    else:
        raise _UsageError("give --authority DIR or --root-pub HEX|FILE to verify the snapshot")
    with Path(args.file).open("rb") as fh:
        data = fh.read(_MAX_SYNC_STATE_BYTES + 1)
    return out.show_snapshot(data, root, _now(args), as_json=args.json)


def _root_from_arg(value: str) -> bytes:
    if len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return bytes.fromhex(value)
    return load_public_key(value)


def _cmd_export_gateway(args: argparse.Namespace) -> int:
    with _open(args) as a:
        keys = export_gateway(a, args.out, passphrase=_passphrase(args.export_passphrase_file,
                                                                  "SANAQ_EXPORT_PASSPHRASE"))
        out.gateway_exported(keys, as_json=args.json)
    return 0


def _cmd_rotate(args: argparse.Namespace) -> int:
    if args.kind != "tls" and (args.server_name or args.cert_validity_days is not None):
        raise _UsageError("--server-name and --cert-validity-days belong to `rotate tls`")
    if args.prepare and args.kind != "receipt":
        raise _UsageError("--prepare belongs to `rotate receipt`")
    with _open(args) as a:
        if args.kind == "tls":
            days = args.cert_validity_days if args.cert_validity_days is not None else 825
            if not 1 <= days <= 3650:
                raise _UsageError("--cert-validity-days must be 1..3650")
            rotation = rotate_tls(a, now_ms=_now(args), validity_ms=_validity_ms(args),
                                  server_names=args.server_name, validity_days=days)
        elif args.kind == "receipt" and args.prepare:
            rotation = prepare_receipt(a, now_ms=_now(args), validity_ms=_validity_ms(args))
        elif args.kind == "receipt":
            rotation = rotate_receipt(a, now_ms=_now(args), validity_ms=_validity_ms(args))
        else:
            rotation = rotate_data(a, now_ms=_now(args), validity_ms=_validity_ms(args))
        out.rotated(rotation, as_json=args.json)
    return 0


def _cmd_push(args: argparse.Namespace) -> int:
    with _open(args) as a:
        snapshot = a.latest_snapshot()
        if snapshot is None:
            raise _UsageError("the authority has no published snapshot; run `sanaq-keys publish` first")
        record = a.registry.list_snapshots()[-1]
        answers = push_snapshot(args.url, snapshot, a.ca_cert_path)
    return out.pushed(record, answers, as_json=args.json)


def _cmd_registry_status(args: argparse.Namespace) -> int:
    with _open(args) as a:
        records = {r.version: r for r in a.registry.list_snapshots()}
        latest = a.registry.latest_version()
        answers = registry_status(args.url, a.ca_cert_path)
    return out.registry_status(answers, records, latest, _now(args), as_json=args.json)


def _add_common(p: argparse.ArgumentParser, *, authority: bool = True, publish: bool = False) -> None:
    if authority:
        p.add_argument("--authority", required=True, metavar="DIR", help="authority directory (from init)")
        p.add_argument("--passphrase-file", metavar="FILE",
                       help="authority key passphrase (else $SANAQ_KEY_PASSPHRASE)")
    if publish:
        p.add_argument("--validity-days", type=float, metavar="N", help="snapshot validity (default 7)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sanaq-keys", description="Sanaq Sync key and device registry admin.",
                                     allow_abbrev=False)
    parser.add_argument("--now-ms", type=int, help=argparse.SUPPRESS)
    parser.add_argument("-v", "--verbose", action="store_true", help="log events to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # No abbreviations: "--passphrase" must never silently mean "--passphrase-file".
    add = functools.partial(sub.add_parser, allow_abbrev=False)

    p = add("init", help="create a new authority directory")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--server-name", action="append", metavar="NAME",
                   help="gateway TLS name or IP (repeatable; default localhost, 127.0.0.1)")
    p.add_argument("--passphrase-file", metavar="FILE", help="encrypt keys (else $SANAQ_KEY_PASSPHRASE)")
    _add_common(p, authority=False, publish=True)
    p.set_defaults(func=_cmd_init)

    for name, func, helptext in (("enroll-tablet", _cmd_enroll_tablet, "enroll a tablet, write its bundle"),
                                 ("enroll-station", _cmd_enroll_station, "enroll an ingest station"),
                                 ("enroll-web", _cmd_enroll_web, "enroll a self-enumeration web service")):
        p = add(name, help=helptext)
        _add_common(p, publish=True)
        if name == "enroll-tablet":
            p.add_argument("--device-id", required=True)
            p.add_argument("--usb-serial", required=True)
            p.add_argument("--institution", required=True, metavar="CODE")
            p.add_argument("--worker-id", required=True)
            p.add_argument("--worker-name", help="kept in the registry only, never in snapshots")
            p.add_argument("--act-no", help="acceptance-transfer act number")
        elif name == "enroll-station":
            p.add_argument("--station-id", required=True)
            p.add_argument("--location")
        else:
            p.add_argument("--web-id", required=True, help="its road is web:<id>; also the device id of its batches")
            p.add_argument("--location")
        p.add_argument("--gateway-url", required=True, metavar="URL")
        p.add_argument("--out", required=True, metavar="BUNDLE_DIR", help="new bundle directory")
        p.add_argument("--bundle-passphrase-file", metavar="FILE",
                       help="encrypt device.key (else $SANAQ_BUNDLE_PASSPHRASE; default unencrypted)")
        p.set_defaults(func=func)

    for name, func, helptext in (("revoke", _cmd_revoke, "revoke a tablet, station or web service"),
                                 ("mark-lost", _cmd_mark_lost, "mark a tablet lost")):
        p = add(name, help=helptext)
        _add_common(p, publish=True)
        p.add_argument("id", metavar="ID")
        p.add_argument("--reason", required=True)
        p.add_argument("--no-publish", action="store_true", help="do not publish a new snapshot")
        p.set_defaults(func=func)

    p = add("mark-returned", help="mark a tablet handed back (needs completeness proof or signoff)")
    _add_common(p, publish=True)
    p.add_argument("id", metavar="ID")
    p.add_argument("--sync-state", metavar="FILE", help="gateway-signed sync state of the tablet")
    p.add_argument("--last-seq", type=int, metavar="N", help="last seq the tablet produced")
    p.add_argument("--signoff", metavar="TEXT", help="explanation accepting a gap")
    p.add_argument("--no-publish", action="store_true", help="do not publish a new snapshot")
    p.set_defaults(func=_cmd_mark_returned)

    p = add("list", help="list tablets and stations")
    _add_common(p)
    p.set_defaults(func=_cmd_list)

    p = add("history", help="status history (audit trail)")
    _add_common(p)
    p.add_argument("id", metavar="ID", nargs="?")
    p.set_defaults(func=_cmd_history)

    p = add("publish", help="sign and publish a new registry snapshot")
    _add_common(p, publish=True)
    p.add_argument("--out", metavar="FILE", help="also write the snapshot here")
    p.set_defaults(func=_cmd_publish)

    p = add("show-snapshot", help="verify and summarise a snapshot file")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--authority", metavar="DIR", help="verify with this authority's root key")
    p.add_argument("--root-pub", metavar="HEX|FILE", help="verify with this root public key")
    _add_common(p, authority=False)
    p.set_defaults(func=_cmd_show_snapshot)

    p = add("export-gateway", help="write the gateway's key directory (no root key)")
    _add_common(p)
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--export-passphrase-file", metavar="FILE",
                   help="encrypt exported keys (else $SANAQ_EXPORT_PASSPHRASE; default unencrypted)")
    p.set_defaults(func=_cmd_export_gateway)

    p = add("rotate", help="rotate the gateway TLS certificate, receipt key or census data key",
            description="tls: new server key and certificate from the census CA (new names, new expiry). "
                        "receipt: switch to the key prepared with --prepare (else a new one); the old public "
                        "key stays listed in snapshots. "
                        "data: new census data key; the old private key is kept and exported. "
                        "Each publishes a new snapshot; then export-gateway, install, restart, push "
                        "(order in docs/operations.md, 'Rotating keys').")
    p.add_argument("kind", choices=("tls", "receipt", "data"))
    _add_common(p, publish=True)
    p.add_argument("--server-name", action="append", metavar="NAME",
                   help="tls only: gateway TLS name or IP (repeatable; default: the current certificate's)")
    p.add_argument("--cert-validity-days", type=int, metavar="N", help="tls only: certificate validity (825)")
    p.add_argument("--prepare", action="store_true",
                   help="receipt only: make and list the next receipt key now, switch later (tablets enrolled "
                        "from now on will accept it)")
    p.set_defaults(func=_cmd_rotate)

    p = add("push", help="send the latest snapshot to every gateway instance (PUT /v1/registry)")
    _add_common(p)
    p.add_argument("url", nargs="+", metavar="URL", help="gateway base URL, e.g. https://10.8.0.1:8443")
    p.set_defaults(func=_cmd_push)

    p = add("registry-status", help="which snapshot version each gateway instance has in force")
    _add_common(p)
    p.add_argument("url", nargs="+", metavar="URL", help="gateway base URL, e.g. https://10.8.0.1:8443")
    p.set_defaults(func=_cmd_registry_status)

    add_certificate_commands(add, _add_common, _open, _now)
    return parser


def _configure_logging(verbose: bool) -> None:
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso"),
                    structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO if verbose else logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    func: Any = args.func
    try:
        return int(func(args))
    except (_UsageError, UsageProblem) as e:
        parser.error(str(e))
    except WrongPassphraseError as e:
        if getattr(args, "authority_passphrase_given", True) is False:
            _fail("passphrase-required", f"{e.facts.get('path', 'an authority key')} is encrypted: give "
                  "--passphrase-file FILE or set $SANAQ_KEY_PASSPHRASE")
        else:
            _fail(e.code, str(e))
    except (KeysError, WireError) as e:
        _fail(e.code, str(e))
    except OSError as e:
        _fail("io", f"{e.strerror or e} ({e.filename})" if e.filename else str(e))
    return 2


def _fail(code: str, message: str) -> None:
    one_line = " ".join(message.split())
    print(f"sanaq-keys: error: {code}: {one_line}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
