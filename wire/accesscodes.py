"""Access codes: the gateway's signed list of access-code changes for a web service (self-enumeration).

Body members (``docs/protocol.md`` section 9.2)::

    v, web_id, issued_at_ms,
    pepper_id the 16-hex name of the pepper the hashes are keyed with
    since     the version the web service asked from (it holds every change up to it)
    latest    the highest change version the gateway holds
    codes     [{version, code_hash, entry_id, members, institution_code, institution_kind, worker_id, status}, ...]

``members`` lists the entries the code opens: ``[entry_id]`` for a person's
code, every member of the household (ascending, ``entry_id`` first) for a
household's. Every listed change has ``since < version <= latest`` and versions strictly
ascend, so a web service applies them in order and then holds the last one.
The codes themselves never travel: ``code_hash`` is the keyed hash the
service compares a typed code with.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from nacl.signing import SigningKey

from . import _fields as f
from .documents import DocKind, decode_document, sign_document, verify_document
from .envelope import check_device_id
from .errors import DecodeError
from .limits import DEFAULT_LIMITS, Limits

__all__ = ["MAX_CODE_CHANGES", "MAX_MEMBERS", "AccessCodeChange", "AccessCodes", "make_access_codes",
           "parse_access_codes"]

MAX_CODE_CHANGES = 1000
_HASH = re.compile(r"[0-9a-f]{64}")
_ENTRY = re.compile(r"[A-Z]{2}-[0-9]{6}/[0-9]{5}")
_STATUSES = ("active", "revoked")
_MEMBERS = {"v", "web_id", "issued_at_ms", "pepper_id", "since", "latest", "codes"}
_PEPPER_ID = re.compile(r"[0-9a-f]{16}")
_CHANGE_MEMBERS = {"version", "code_hash", "entry_id", "members", "institution_code", "institution_kind", "worker_id",
                   "status"}
MAX_MEMBERS = 30


@dataclass(frozen=True, slots=True)
class AccessCodeChange:
    version: int
    code_hash: str
    entry_id: str
    institution_code: str
    institution_kind: str
    worker_id: str
    status: str  # "active" | "revoked"
    members: tuple[str, ...] = ()  # the entries it opens (entry_id first); () reads as (entry_id,)

    @property
    def entries(self) -> tuple[str, ...]:
        return self.members or (self.entry_id,)


@dataclass(frozen=True, slots=True)
class AccessCodes:
    web_id: str
    issued_at_ms: int
    pepper_id: str
    since: int
    latest: int
    codes: tuple[AccessCodeChange, ...]
    raw: bytes


def _body(web_id: str, issued_at_ms: int, pepper_id: str, *, since: int, latest: int,
          codes: list[AccessCodeChange]) -> dict[str, object]:
    return {
        "v": 1,
        "web_id": web_id,
        "issued_at_ms": issued_at_ms,
        "pepper_id": pepper_id,
        "since": since,
        "latest": latest,
        "codes": [
            {
                "version": c.version,
                "code_hash": c.code_hash,
                "entry_id": c.entry_id,
                "members": list(c.entries),
                "institution_code": c.institution_code,
                "institution_kind": c.institution_kind,
                "worker_id": c.worker_id,
                "status": c.status,
            }
            for c in codes
        ],
    }


def make_access_codes(
    *, web_id: str, issued_at_ms: int, pepper_id: str, since: int, latest: int, codes: list[AccessCodeChange],
    gateway_key: SigningKey,
) -> bytes:
    body = _body(web_id, issued_at_ms, pepper_id, since=since, latest=latest, codes=codes)
    return sign_document(DocKind.ACCESS_CODES, body, gateway_key)


def _change(item: object, since: int, latest: int, previous: int) -> AccessCodeChange:
    c = f.exact_members(item, _CHANGE_MEMBERS, "access-code change")
    version = f.get_int(c, "version", minimum=1)
    if not (since < version <= latest) or version <= previous:
        raise DecodeError("access-code change versions must ascend within (since, latest]")
    code_hash = f.get_str(c, "code_hash", min_len=64, max_len=64)
    entry_id = f.get_str(c, "entry_id", min_len=1, max_len=64)
    institution = f.get_str(c, "institution_code", min_len=1, max_len=64)
    status = f.get_str(c, "status", min_len=1, max_len=16)
    if not _HASH.fullmatch(code_hash) or not _ENTRY.fullmatch(entry_id) or status not in _STATUSES:
        raise DecodeError("access-code change has a malformed code_hash, entry_id or status")
    if not entry_id.startswith(institution + "/"):
        raise DecodeError("access-code change names an entry of another institution")
    members = f.get_list(c, "members", max_items=MAX_MEMBERS)
    if (not members or members[0] != entry_id or any(not isinstance(m, str) or not _ENTRY.fullmatch(m)
                                                     or not m.startswith(institution + "/") for m in members)
            or any(a >= b for a, b in itertools.pairwise(members))):
        raise DecodeError("access-code change members must ascend from entry_id within its institution")
    return AccessCodeChange(
        version=version,
        code_hash=code_hash,
        entry_id=entry_id,
        institution_code=institution,
        institution_kind=f.get_str(c, "institution_kind", min_len=1, max_len=64),
        worker_id=f.get_str(c, "worker_id", min_len=1, max_len=64),
        status=status,
        members=tuple(members) if len(members) > 1 else (),
    )


def parse_access_codes(
    data: bytes, gateway_keys: dict[bytes, bytes], limits: Limits = DEFAULT_LIMITS
) -> AccessCodes:
    doc = decode_document(data, DocKind.ACCESS_CODES, limits)
    verify_document(doc, gateway_keys)
    body = f.exact_members(doc.body, _MEMBERS, "access codes")
    since = f.get_int(body, "since")
    latest = f.get_int(body, "latest")
    pepper = f.get_str(body, "pepper_id", min_len=16, max_len=16)
    if not _PEPPER_ID.fullmatch(pepper):
        raise DecodeError("pepper_id must be 16 lowercase hex characters")
    changes: list[AccessCodeChange] = []
    for item in f.get_list(body, "codes", max_items=MAX_CODE_CHANGES):
        changes.append(_change(item, since, latest, changes[-1].version if changes else since))
    return AccessCodes(
        web_id=check_device_id(body["web_id"]),
        issued_at_ms=f.get_int(body, "issued_at_ms"),
        pepper_id=pepper,
        since=since,
        latest=latest,
        codes=tuple(changes),
        raw=doc.raw,
    )
