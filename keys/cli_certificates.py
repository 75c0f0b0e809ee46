"""``sanaq-keys certificate-key create|rotate|revoke|list`` and ``sanaq-keys verify-certificate``.

``verify-certificate`` exit status: 0 valid, 1 invalid (the reason is the
protocol's error code), 3 revoked, 2 when it cannot verify at all (bad
arguments, no root key, an unreadable file or a snapshot that does not verify).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wire.snapshot import accept_snapshot

from .authority import Authority
from .certificates import Verdict, check, create_certificate_key, read_input
from .errors import InvalidRecordError
from .files import load_public_key, read_passphrase_file
from .records import CertificateKeyRecord

__all__ = ["EXIT_INVALID", "EXIT_REVOKED", "EXIT_VALID", "UsageProblem", "add_certificate_commands"]

EXIT_VALID, EXIT_INVALID, EXIT_REVOKED = 0, 1, 3
_MAX_SNAPSHOT_BYTES = 16 * 1024 * 1024

Opener = Callable[[argparse.Namespace], Authority]
Clock = Callable[[argparse.Namespace], int]


def _print_key(record: CertificateKeyRecord, out_dir: str | None, *, as_json: bool) -> None:
    info = record.to_json() | ({"path": out_dir} if out_dir else {})
    if as_json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return
    print(f"certificate key {record.key_id} issuer {record.issuer} census {record.census}: {record.status}")
    if out_dir:
        print(f"  written to {out_dir} (certificate.key 0600, certificate-key.doc); install it on the issuing "
              "service and point its certificates.key_dir at it")


def _key_passphrase(args: argparse.Namespace) -> bytes | None:
    if args.key_passphrase_file is not None:
        return read_passphrase_file(args.key_passphrase_file)
    value = os.environ.get("SANAQ_CERTIFICATE_KEY_PASSPHRASE")
    return value.encode("utf-8") if value else None


def _create(args: argparse.Namespace, opener: Opener, now: Clock) -> int:
    with opener(args) as a:
        census = args.census
        if args.action == "rotate":
            active = [k for k in a.registry.list_certificate_keys() if k.issuer == args.issuer and
                      k.status == "active"]
            if not active:
                raise InvalidRecordError("the issuer has no active certificate key to rotate", issuer=args.issuer)
            census = active[-1].census
        elif census is None:
            raise InvalidRecordError("certificate-key create needs --census ID")
        elif any(k.issuer == args.issuer and k.status == "active" for k in a.registry.list_certificate_keys()):
            raise InvalidRecordError("the issuer already has an active certificate key: use rotate",
                                     issuer=args.issuer)
        record = create_certificate_key(a, args.out, issuer=args.issuer, census=census, now_ms=now(args),
                                        key_passphrase=_key_passphrase(args))
    _print_key(record, str(args.out), as_json=args.json)
    return 0


def _revoke(args: argparse.Namespace, opener: Opener, now: Clock) -> int:
    with opener(args) as a:
        if not args.no_publish:
            a.root_signing_key()
        record = a.registry.revoke_certificate_key(args.key_id, reason=args.reason, now_ms=now(args))
        if not args.no_publish:
            a.publish(now_ms=now(args))
    _print_key(record, None, as_json=args.json)
    if not args.json and not args.no_publish:
        print("  a new snapshot lists it; push it to every gateway instance (sanaq-keys push)")
    return 0


def _list(args: argparse.Namespace, opener: Opener, now: Clock) -> int:
    with opener(args) as a:
        records = a.registry.list_certificate_keys()
    if args.json:
        print(json.dumps([r.to_json() for r in records], indent=2, sort_keys=True))
    for r in [] if args.json else records:
        print(f"{r.key_id}  {r.issuer:<24} {r.census:<12} {r.status}")
    return 0


def _certificate_key(args: argparse.Namespace, opener: Opener, now: Clock) -> int:
    handlers = {"create": _create, "rotate": _create, "revoke": _revoke, "list": _list}
    return handlers[args.action](args, opener, now)


def _root(args: argparse.Namespace) -> tuple[bytes, bytes | None]:
    """(root public key, snapshot bytes or None) from --authority or --root-pub/--snapshot."""
    snapshot: bytes | None = None
    if args.authority is not None:
        with Authority.open(args.authority) as a:
            root, snapshot = a.root_public_key, a.latest_snapshot()
    elif args.root_pub is not None:
        value = args.root_pub
        is_hex = len(value) == 64 and all(c in "0123456789abcdef" for c in value)
        root = bytes.fromhex(value) if is_hex else load_public_key(value)
    else:
        raise UsageProblem("give --authority DIR or --root-pub HEX|FILE")
    if args.snapshot is not None:
        with Path(args.snapshot).open("rb") as fh:
            snapshot = fh.read(_MAX_SNAPSHOT_BYTES + 1)
    return root, snapshot


def _verify(args: argparse.Namespace, opener: Opener, now: Clock) -> int:
    root, snapshot = _root(args)
    revoked = None
    if snapshot is not None:  # expiry deliberately not checked: a revocation never expires (protocol 7.4)
        revoked = accept_snapshot(snapshot, root, now_ms=0).revoked_certificate_keys
    verdict = check(read_input(args.input), root, revoked)
    _print_verdict(verdict, as_json=args.json)
    return {"valid": EXIT_VALID, "invalid": EXIT_INVALID, "revoked": EXIT_REVOKED}[verdict.status]


def _print_verdict(v: Verdict, *, as_json: bool) -> None:
    shown: dict[str, Any] = {}
    if v.certificate is not None:
        c = v.certificate
        shown = {"census": c.census, "subject": c.subject, "day": c.day, "road": c.road,
                 "issuer": c.key.issuer, "key_id": c.key.key_id.hex()}
    if as_json:
        print(json.dumps({"status": v.status, "code": v.code, "revocation_checked": v.revocation_checked,
                          "certificate": shown or None}, indent=2, sort_keys=True))
        return
    print({"valid": "VALID", "invalid": f"INVALID: {v.code}", "revoked": "REVOKED: its certificate key was "
           "withdrawn by the census authority"}[v.status])
    for name, value in shown.items():
        print(f"  {name:<8} {value}")
    if v.status == "valid" and not v.revocation_checked:
        print("  revocation not checked: give --snapshot FILE (the published registry snapshot) or --authority DIR")


def add_certificate_commands(
    add: Callable[..., argparse.ArgumentParser], add_common: Callable[..., None], opener: Opener, now: Clock
) -> None:
    """Register both commands on ``sanaq-keys``'s subparsers (``add`` = ``sub.add_parser``)."""
    p = add("certificate-key", help="create, rotate, revoke or list the keys that sign participation certificates",
            description="create: a new certificate key for an issuing service (the staff dashboard, a "
                        "self-enumeration service), certified by the root; rotate: a new key for the issuer, "
                        "the old one retired (its certificates stay valid); revoke: withdraw a key (a new "
                        "snapshot lists it; every certificate it signed is refused); list.")
    p.add_argument("action", choices=("create", "rotate", "revoke", "list"))
    add_common(p)
    p.add_argument("key_id", nargs="?", metavar="KEY_ID", help="revoke only: the key id (32 hex)")
    p.add_argument("--issuer", metavar="ID", help="create/rotate: the issuing service's name, e.g. staff-ATY")
    p.add_argument("--census", metavar="ID", help="create only: census id, e.g. KZ-2020")
    p.add_argument("--out", metavar="DIR", help="create/rotate: new certificate key directory")
    p.add_argument("--key-passphrase-file", metavar="FILE",
                   help="encrypt certificate.key (else $SANAQ_CERTIFICATE_KEY_PASSPHRASE; default unencrypted)")
    p.add_argument("--reason", metavar="TEXT", help="revoke only: why")
    p.add_argument("--no-publish", action="store_true", help="revoke only: do not publish a new snapshot")
    p.set_defaults(func=lambda args: _certificate_key(_checked(args), opener, now))

    p = add("verify-certificate", help="verify a participation certificate (file or QR text)",
            description="Exit status: 0 valid, 1 invalid (reason printed), 3 revoked, 2 cannot verify. "
                        "Revocation is checked against --snapshot FILE or the authority's latest snapshot.")
    p.add_argument("input", metavar="FILE|QR-TEXT", help="a certificate file, or the QR text (sanaq-cert:...)")
    p.add_argument("--authority", metavar="DIR", help="use this authority's root key and latest snapshot")
    p.add_argument("--root-pub", metavar="HEX|FILE", help="the published root public key")
    p.add_argument("--snapshot", metavar="FILE", help="a published registry snapshot (for revocations)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=lambda args: _verify(args, opener, now))


class UsageProblem(ValueError):
    """A certificate-key command line that parses but makes no sense."""


def _checked(args: argparse.Namespace) -> argparse.Namespace:
    need = {"create": ("issuer", "out"), "rotate": ("issuer", "out"), "revoke": ("key_id", "reason"), "list": ()}
    missing = [n for n in need[args.action] if getattr(args, n) is None]
    if missing:
        raise UsageProblem(f"certificate-key {args.action} needs " +
                           ", ".join("KEY_ID" if n == "key_id" else "--" + n.replace("_", "-") for n in missing))
    return args

