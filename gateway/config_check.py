"""``sanaq-gateway check-config``: what would stop the service, found before systemd starts it.

Checks, each problem named with its option and file:

* the file parses and every option is known and well typed (``load_config``);
* ``keys.root_public_key`` is set, not the shipped placeholder, and 64 hex
  digits (or ``keys.root_public_key_file`` holds them);
* every key file exists and is readable *as the unit will see it*: a relative
  name (``data.key``) must be handed over by a ``LoadCredential=`` of the unit
  (``sanaq-gateway.service`` and its drop-ins), whose source file must exist;
  an absolute path must be readable by the service user (``User=`` of the unit)
  through every parent directory. Under the unit itself (``$CREDENTIALS_DIRECTORY``
  set, e.g. ``ExecStartPre=``) the credentials are checked where they are;
* the keys load (right type, right passphrase, TLS certificate matches its key
  and has not expired), and the bootstrap snapshot verifies under the root key,
  names this data key and lists this receipt key (warnings: a rotated key not
  installed yet shows here);
* ``staff.certificate_key_dir``, when set: ``certificate.key`` and
  ``certificate-key.doc`` are handed over like the other keys, the document is
  certified by this root key, and the key is the one it certifies;
* the staff dashboard on PostgreSQL has ``staff.codes_pepper_file`` (every
  instance must hold the same pepper; ``serve`` refuses to start without it).

Warnings do not change the exit status; any problem exits 2, like ``serve``
would with that configuration.
"""

from __future__ import annotations

import datetime as dt
import os
import pwd
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from keys import files as keyfiles
from keys import tls
from keys.certificates import KEY_DOCUMENT, PRIVATE_KEY
from keys.errors import KeysError
from runtime.toml_config import ConfigError, load_toml
from wire.certificate import parse_certificate_key
from wire.errors import WireError
from wire.keyids import key_id
from wire.snapshot import accept_snapshot

from .config import GatewayConfig, load_config

__all__ = ["CheckReport", "Finding", "UnitView", "check_gateway_config", "main", "read_unit"]

PLACEHOLDER_MARK = "REPLACE"
UNIT_NAME = "sanaq-gateway.service"
UNIT_DIRS = (Path("/etc/systemd/system"), Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_CERT_WARN_DAYS = 30


@dataclass(frozen=True, slots=True)
class Finding:
    level: str  # "problem" | "warning"
    option: str
    message: str
    file: str | None = None

    def line(self, config_path: Path) -> str:
        where = f" ({self.file})" if self.file else ""
        return f"{self.level.upper()}: {config_path}: {self.option}{where}: {self.message}"


@dataclass(slots=True)
class CheckReport:
    config_path: Path
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    settings: list[tuple[str, str]] = field(default_factory=list)

    def problem(self, option: str, message: str, file: Path | str | None = None) -> None:
        self.findings.append(Finding("problem", option, message, str(file) if file is not None else None))

    def warning(self, option: str, message: str, file: Path | str | None = None) -> None:
        self.findings.append(Finding("warning", option, message, str(file) if file is not None else None))

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "problem"]

    def print(self, out: TextIO) -> int:
        for name, value in self.settings:
            print(f"  {name} = {value}", file=out)
        for note in self.notes:
            print(f"note: {note}", file=out)
        for f in self.findings:
            print(f.line(self.config_path), file=out)
        n = len(self.problems)
        if n:
            print(f"{self.config_path}: {n} problem(s); the service would not start with this configuration",
                  file=out)
            return 2
        print(f"{self.config_path}: OK ({len(self.findings)} warning(s))", file=out)
        return 0


@dataclass(frozen=True, slots=True)
class UnitView:
    """What the unit hands the service: its user and its credentials (name -> source file)."""

    path: Path | None
    user: str | None
    credentials: dict[str, Path]


def read_unit(unit_dirs: Iterable[Path] = UNIT_DIRS, name: str = UNIT_NAME) -> UnitView:
    """The first ``name`` found in ``unit_dirs`` plus the drop-ins of every dir (later settings win)."""
    unit = next((d / name for d in unit_dirs if (d / name).is_file()), None)
    files = [unit] if unit is not None else []
    for d in unit_dirs:
        drop = d / f"{name}.d"
        if drop.is_dir():
            files.extend(sorted(drop.glob("*.conf")))
    user: str | None = None
    creds: dict[str, Path] = {}
    for f in files:
        try:
            text = f.read_text("utf-8")
        except OSError:
            continue
        for raw in text.splitlines():
            line = raw.strip()
            if line.startswith("User="):
                user = line[len("User="):].strip() or None
            elif line.startswith("LoadCredential="):
                value = line[len("LoadCredential="):].strip()
                if not value:
                    creds.clear()  # an empty assignment resets the list
                    continue
                cname, _, src = value.partition(":")
                creds[cname] = Path(src) if src else Path("/etc/credstore") / cname
    return UnitView(unit, user, creds)


def _readable_by(path: Path, user: str) -> str | None:
    """None if ``user`` may read ``path`` (mode bits and parent directories), else why not."""
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return None  # no such user here (a staging machine): nothing to judge by
    groups = {pw.pw_gid, *(g for g in os.getgrouplist(user, pw.pw_gid))}

    def allowed(st: os.stat_result, bit_u: int, bit_g: int, bit_o: int) -> bool:
        if pw.pw_uid == 0:
            return True
        if st.st_uid == pw.pw_uid:
            return bool(st.st_mode & bit_u)
        if st.st_gid in groups:
            return bool(st.st_mode & bit_g)
        return bool(st.st_mode & bit_o)

    for parent in reversed(path.parents):
        st = parent.stat()
        if not allowed(st, stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH):
            return f"user {user} cannot enter {parent} (mode {stat.S_IMODE(st.st_mode):04o})"
    st = path.stat()
    if not allowed(st, stat.S_IRUSR, stat.S_IRGRP, stat.S_IROTH):
        return f"user {user} cannot read it (mode {stat.S_IMODE(st.st_mode):04o}, owner uid {st.st_uid})"
    return None


class _Checker:
    def __init__(self, report: CheckReport, raw: dict[str, Any], unit: UnitView, creds_dir: Path | None,
                 service_user: str) -> None:
        self.r = report
        self.raw = raw
        self.unit = unit
        self.creds_dir = creds_dir
        self.user = service_user
        self.base = report.config_path.parent

    def raw_value(self, option: str) -> Any:
        node: Any = self.raw
        for part in option.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node

    def locate(self, option: str, value: Path | str | None) -> Path | None:
        """Where the service will read ``value`` from, or None after reporting why it cannot."""
        if value is None:
            return None
        p = Path(value)
        if p.is_absolute():
            if not p.exists():
                self.r.problem(option, "file does not exist", p)
                return None
            why = _readable_by(p, self.user)
            if why:
                self.r.problem(option, f"{why}; the service runs as {self.user} (use LoadCredential= for keys)", p)
                return None
            return p
        if self.creds_dir is not None:
            found = self.creds_dir / p
            if not found.exists():
                self.r.problem(option, f"no credential named {p} in $CREDENTIALS_DIRECTORY", found)
                return None
            return found
        if self.unit.path is not None:
            src = self.unit.credentials.get(str(p))
            if src is None:
                self.r.problem(option, f"{p} is not handed to the service: add LoadCredential={p}:/etc/sanaq/keys/{p}"
                               f" in a drop-in (systemctl edit sanaq-gateway)", self.unit.path)
                return None
            if not src.exists():
                self.r.problem(option, f"LoadCredential={p}:{src} names a missing file; the unit would fail "
                               "with status=243/CREDENTIALS", src)
                return None
            if not os.access(src, os.R_OK):
                self.r.problem(option, "cannot read it (run check-config as root, as systemd reads credentials)",
                               src)
                return None
            return src
        found = self.base / p
        if not found.exists():
            self.r.problem(option, "file does not exist (no unit file found, so looked next to the config)", found)
            return None
        return found

    def load(self, option: str, path: Path | None, loader: Any) -> Any:
        if path is None:
            return None
        try:
            return loader(path)
        except KeysError as e:
            self.r.problem(option, f"{e.code}: {e.message}", path)
        except OSError as e:
            self.r.problem(option, f"cannot read: {e.strerror}", path)
        return None


def _root_key(c: _Checker, config: GatewayConfig) -> bytes | None:
    text = config.keys.root_public_key
    option = "keys.root_public_key"
    if not text and config.keys.root_public_key_file is not None:
        option = "keys.root_public_key_file"
        path = c.locate(option, c.raw_value(option))
        if path is None:
            return None
        try:
            text = path.read_text("ascii").strip()
        except (OSError, UnicodeDecodeError) as e:
            c.r.problem(option, f"cannot read the root public key: {e}", path)
            return None
    if not text:
        c.r.problem("keys.root_public_key", "not set: put the 64 hex digits of root.pub here "
                    "(or set keys.root_public_key_file)")
        return None
    if PLACEHOLDER_MARK in text.upper():
        c.r.problem("keys.root_public_key", "still the shipped placeholder: replace it with the 64 hex digits "
                    "of /etc/sanaq/keys/root.pub")
        return None
    if not _HEX64.fullmatch(text):
        c.r.problem(option, f"must be exactly 64 hex digits (got {len(text)} characters)")
        return None
    return bytes.fromhex(text)


def _check_snapshot(c: _Checker, root: bytes | None, path: Path | None, *, data_pub: bytes | None,
                    receipt_pub: bytes | None, now_ms: int) -> None:
    if path is None:
        return
    option = "keys.bootstrap_snapshot"
    try:
        raw = path.read_bytes()[: 16 * 1024 * 1024]
    except OSError as e:
        c.r.problem(option, f"cannot read: {e.strerror}", path)
        return
    if root is None:
        return
    try:
        snap = accept_snapshot(raw, root, now_ms=0)
    except WireError as e:
        c.r.problem(option, f"does not verify under keys.root_public_key ({e.code}): wrong root.pub, or a "
                    "snapshot from another authority", path)
        return
    if now_ms >= snap.expires_at_ms:
        c.r.warning(option, f"snapshot version {snap.version} has expired (fine if the store holds a newer one; "
                    "otherwise run sanaq-keys publish and push)", path)
    if data_pub is not None and snap.data_key.public_key != data_pub:
        c.r.warning("keys.data_key", f"the snapshot (v{snap.version}) names data key "
                    f"{key_id(snap.data_key.public_key).hex()}, this file is {key_id(data_pub).hex()}: tablets "
                    "given that snapshot seal to a key this gateway cannot open (install the exported data.key)")
    if receipt_pub is not None and receipt_pub not in {k.public_key for k in snap.gateway_keys}:
        c.r.warning("keys.receipt_key", f"the snapshot (v{snap.version}) does not list this receipt key "
                    f"{key_id(receipt_pub).hex()}: clients will refuse its receipts")


def _check_certificate_key(c: _Checker, root: bytes | None, key_dir: str | None, passphrase: bytes | None) -> None:
    """``staff.certificate_key_dir``: both files reachable, the document certified by this root, the key its own."""
    if key_dir is None:
        return
    option = "staff.certificate_key_dir"
    doc_path = c.locate(option, Path(key_dir) / KEY_DOCUMENT)
    key_path = c.locate(option, Path(key_dir) / PRIVATE_KEY)
    key = c.load(option, key_path, lambda p: keyfiles.load_signing_key(p, passphrase))
    if doc_path is None or root is None:
        return
    try:
        with doc_path.open("rb") as fh:
            certified = parse_certificate_key(fh.read(4096), root)
    except OSError as e:
        c.r.problem(option, f"cannot read: {e.strerror}", doc_path)
        return
    except WireError as e:
        c.r.problem(option, f"{KEY_DOCUMENT} does not verify under keys.root_public_key ({e.code}): a "
                    "certificate key of another authority", doc_path)
        return
    if key is not None and bytes(key.verify_key) != certified.public_key:
        c.r.problem(option, f"{PRIVATE_KEY} is not the key {KEY_DOCUMENT} certifies", key_path)


def _check_cert_expiry(report: CheckReport, cert: Any, path: Path, now_ms: int) -> None:
    left = cert.not_valid_after_utc - dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC)
    if left.total_seconds() <= 0:
        report.problem("server.tls_cert", f"certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}: "
                       "sanaq-keys rotate tls", path)
    elif left.days < _CERT_WARN_DAYS:
        report.warning("server.tls_cert", f"certificate expires on {cert.not_valid_after_utc:%Y-%m-%d}: "
                       "sanaq-keys rotate tls", path)


def check_gateway_config(
    config_path: Path,
    *,
    unit: UnitView | None = None,
    creds_dir: Path | None = None,
    now_ms: int | None = None,
) -> CheckReport:
    """Every problem of ``config_path`` as the unit would meet it (see the module docstring)."""
    report = CheckReport(config_path)
    try:
        config = load_config(config_path)
        raw = load_toml(config_path)
    except ConfigError as e:
        report.problem("config", str(e), config_path)
        return report
    if now_ms is None:
        now_ms = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    env_creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if creds_dir is None and env_creds:
        creds_dir = Path(env_creds)
    if unit is None:
        unit = read_unit() if creds_dir is None else UnitView(None, None, {})
    user = unit.user or "sanaq-gateway"
    if creds_dir is not None:
        report.notes.append(f"key files checked in the credentials directory {creds_dir}")
    elif unit.path is not None:
        report.notes.append(f"key files checked as {unit.path} hands them over (LoadCredential=), "
                            f"absolute paths as user {user}")
    else:
        report.notes.append(f"no {UNIT_NAME} found: relative key files checked next to {config_path}")
    c = _Checker(report, raw, unit, creds_dir, user)
    root = _root_key(c, config)

    passphrase = None
    pp_path = c.locate("keys.passphrase_file", c.raw_value("keys.passphrase_file"))
    if pp_path is not None:
        passphrase = c.load("keys.passphrase_file", pp_path, keyfiles.read_passphrase_file)
    key_pp = passphrase if isinstance(passphrase, bytes) else None

    data_path = c.locate("keys.data_key", c.raw_value("keys.data_key") or "data.key")
    data = c.load("keys.data_key", data_path, lambda p: keyfiles.load_data_key(p, key_pp))
    previous = c.raw_value("keys.previous_data_keys") or []
    for i, name in enumerate(previous):
        option = f"keys.previous_data_keys[{i}]"
        c.load(option, c.locate(option, name), lambda p: keyfiles.load_data_key(p, key_pp))
    receipt_path = c.locate("keys.receipt_key", c.raw_value("keys.receipt_key") or "gateway.key")
    receipt = c.load("keys.receipt_key", receipt_path, lambda p: keyfiles.load_signing_key(p, key_pp))
    if not config.server.plain_http:
        cert_path = c.locate("server.tls_cert", c.raw_value("server.tls_cert"))
        key_path = c.locate("server.tls_key", c.raw_value("server.tls_key"))
        cert = c.load("server.tls_cert", cert_path, tls.load_cert)
        if key_path is not None and cert_path is not None and cert is not None and c.load(
            "server.tls_key", key_path, lambda p: tls.server_ssl_context(cert_path, p, key_pp)
        ) is not None:
            _check_cert_expiry(report, cert, cert_path, now_ms)
    else:
        report.warning("server.plain_http", "plain HTTP: tablets pin the census CA and refuse it (tests only)")
    snap_path = c.locate("keys.bootstrap_snapshot", c.raw_value("keys.bootstrap_snapshot"))
    _check_snapshot(c, root, snap_path, data_pub=bytes(data.public_key) if data is not None else None,
                    receipt_pub=bytes(receipt.verify_key) if receipt is not None else None, now_ms=now_ms)
    _check_certificate_key(c, root, c.raw_value("staff.certificate_key_dir"), key_pp)
    if config.staff.enabled and config.sqlite_path is None and config.staff.codes_pepper_file is None:
        report.problem("staff.codes_pepper_file", "required on PostgreSQL: every gateway instance must hold the"
                       " same access-code pepper (copy one file to each), or set staff.enabled = false")
    report.settings = [
        ("database", config.database),
        ("server.host", config.server.host),
        ("server.port", str(config.server.port)),
        ("server.plain_http", str(config.server.plain_http).lower()),
        ("server.instance_id", config.server.instance_id),
        ("server.log_level", config.server.log_level),
        ("server.workers", f"{config.server.workers}" + ("" if config.server.workers == 1 else
                           " (a supervisor and that many worker processes on one listener)")),
        ("keys.root_public_key", root.hex() if root is not None else "(not usable)"),
        ("staff.enabled", str(config.staff.enabled).lower()),
    ]
    return report


def main(config_path: Path, out: TextIO) -> int:
    """Print the report; exit status 2 if anything would stop the service, else 0."""
    return check_gateway_config(config_path).print(out)
