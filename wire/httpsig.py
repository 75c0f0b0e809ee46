"""HTTP request signatures: RFC 9421 core (Ed25519) and the Sanaq profile on top.

The lower half is general RFC 9421: strict RFC 8941 Dictionary parsing and
serialisation (``parse_dictionary``, ``serialize_dictionary``), the signature
base of RFC 9421 section 2.5 (``signature_base``) for ``@method``,
``@authority``, ``@path``, ``@query``, ``@scheme``, ``@request-target`` and
plain header fields, and RFC 9530 ``Content-Digest`` with SHA-256. It
reproduces RFC 9421 Appendix B.2.6 byte for byte. The upper half is the
profile every Sanaq request follows (``sign_request``,
``parse_and_verify_request``).

Sanaq profile
-------------
1. Exactly one signature, labelled ``sanaq``, in both ``Signature-Input`` and
   ``Signature``. Another label, a second member or a member of the wrong
   shape is ``bad-signature-input``; an absent or empty field is
   ``missing-signature``.
2. Covered components, exactly these, in this order, without parameters::

       POST, PUT           ("@method" "@authority" "@path" "content-digest" "content-type")
       GET, HEAD, DELETE   ("@method" "@authority" "@path")
       the same, target with a query string
                           ("@method" "@authority" "@path" "@query")

   Other methods are refused. Only a GET, HEAD or DELETE may have a query
   string (``GET .../assignments?since=V``), of at most 256 characters from
   ``A-Z a-z 0-9 - . _ ~ = &``, and it is then covered as ``@query``; a POST or
   PUT with one, or a query not covered, is refused. A GET, HEAD or DELETE
   carries no body: neither ``Transfer-Encoding`` nor a ``Content-Length``
   other than 0.
3. Component values: ``@method`` as sent (uppercase); ``@authority`` is the
   host (``Host`` or ``:authority``) lowercased, port dropped when it is the
   scheme's default (443 https, 80 http); ``@path`` is the absolute path as
   sent, percent-encoding untouched. A field value is trimmed of leading and
   trailing SP/HTAB; several field lines are joined with ``", "``. Values are
   printable US-ASCII (HTAB allowed inside field values).
4. Signature parameters, any order, each at most once:

   - ``created`` Integer, Unix seconds, required. It must lie within
     ``window_s`` (300) seconds of the server clock either way, else
     ``clock-skew`` (the problem reply carries the server time).
   - ``nonce`` String of 16..64 characters from ``A-Z a-z 0-9 - _``, required.
     The server refuses a nonce already seen within the window (``replay``).
   - ``keyid`` String, required: the signer's key id, 32 lowercase hex digits
     (``SHA-256("sanaq-sync/v1/key-id" || 0x00 || public key)[0:16]``).
   - ``tag`` String, required, exactly ``"sanaq-sync/v1"``.
   - ``alg`` String, optional; if present exactly ``"ed25519"``. The algorithm
     is fixed by the key, never taken from the request.
   - ``expires`` is refused: the server's window bounds validity, not the client.

   Any other parameter is refused. Signers emit ``created``, ``keyid``,
   ``nonce``, ``tag`` in that order.
5. ``Signature`` member: the Byte Sequence of the 64-byte Ed25519 signature
   over the signature base, no parameters. Byte Sequences must be canonical
   padded base64.
6. ``Content-Digest`` (RFC 9530, POST/PUT): exactly ``sha-256=:<base64>:``,
   SHA-256 of the body bytes as sent; another algorithm, a second member,
   parameters, bad syntax or a wrong value are ``digest-mismatch``.
7. Each field read (``Signature-Input``, ``Signature``, ``Content-Digest``,
   ``Content-Type``), all its lines together, is at most
   ``Limits.max_signature_header_bytes`` (4096) bytes, else ``oversize``.
8. The verifier checks in this order and reports the first failure:
   size (``oversize``), presence (``missing-signature``), syntax and profile
   rules (``bad-signature-input``, including an absent covered field), ``created`` window (``clock-skew``), body
   digest (``digest-mismatch``), key lookup (``unknown-key`` or what the lookup
   raises, e.g. ``revoked``), Ed25519 signature (``bad-signature``). Nonce
   replay is the caller's check, after a successful verification.

Example (POST)::

    Content-Digest: sha-256=:<base64 of SHA-256(body)>:
    Signature-Input: sanaq=("@method" "@authority" "@path" "content-digest" \
"content-type");created=1700000000;keyid="<32 hex>";nonce="<16..64>";tag="sanaq-sync/v1"
    Signature: sanaq=:<base64 of 64 bytes>:
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from nacl.signing import SigningKey

from . import _ed25519
from .errors import (
    DigestMismatchError,
    MissingSignatureError,
    OversizeError,
    SignatureInputError,
    StaleRequestError,
    UnknownKeyError,
)
from .keyids import key_id, key_id_hex
from .limits import DEFAULT_LIMITS, Limits

__all__ = [
    "ALG",
    "COMPONENTS_WITH_BODY",
    "COMPONENTS_WITHOUT_BODY",
    "LABEL",
    "TAG",
    "HttpRequest",
    "InnerList",
    "Item",
    "Token",
    "VerifiedRequest",
    "collect_fields",
    "component_value",
    "content_digest",
    "check_content_digest",
    "normalize_authority",
    "parse_dictionary",
    "serialize_dictionary",
    "serialize_inner_list",
    "signature_base",
    "sign_request",
    "parse_and_verify_request",
]

from .structured_fields import (
    InnerList,
    Item,
    Params,
    Token,
    parse_dictionary,
    serialize_bare_item,
    serialize_dictionary,
    serialize_inner_list,
)

# --- RFC 9421 signature base ----------------------------------------------------------

_DEFAULT_PORTS = MappingProxyType({"https": 443, "http": 80})
_AUTHORITY = re.compile(r"(\[[0-9a-f:.]{2,45}\]|[a-z0-9._~-]{1,253})(?::([0-9]{1,5}))?")
_DERIVED_VALUE = re.compile(r"[!-~]+")
_FIELD_VALUE = re.compile(r"(?:[!-~](?:[ \t!-~]*[!-~])?)?")


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """What RFC 9421 request components are derived from.

    ``path`` is the raw absolute path without the query; ``query`` is the raw
    query without ``?`` (``None`` when the target has none); ``fields`` maps
    lowercase field names to combined values (see ``collect_fields``).
    """

    method: str
    authority: str
    path: str
    fields: Mapping[str, str]
    query: str | None = None
    scheme: str = "https"


def normalize_authority(authority: str, scheme: str = "https") -> str:
    """Lowercased ``host[:port]``, the port dropped when it is ``scheme``'s default."""
    m = _AUTHORITY.fullmatch(authority.lower()) if authority.isascii() else None
    if m is None:
        raise SignatureInputError("bad authority")
    host, port = m.group(1), m.group(2)
    if port is None or int(port) == _DEFAULT_PORTS.get(scheme):
        return host
    return f"{host}:{port}"


def collect_fields(headers: Mapping[str, str], names: Iterable[str], *, max_bytes: int) -> dict[str, str]:
    """Combine the field lines of ``names`` (lowercase) found in ``headers``.

    ``headers`` may be a dict or a multidict; its ``items()`` is read once and
    names compare case-insensitively. Each value is trimmed of SP/HTAB and the
    lines of one field are joined with ``", "``; a field whose combined value
    exceeds ``max_bytes`` is ``OversizeError``.
    """
    wanted = frozenset(names)
    found: dict[str, str] = {}
    for name, value in headers.items():
        lower = name.lower() if name.isascii() else ""
        if lower not in wanted:
            continue
        trimmed = value.strip(" \t")
        combined = found[lower] + ", " + trimmed if lower in found else trimmed
        if len(combined) > max_bytes:
            raise OversizeError(f"{lower} field is too large", limit=max_bytes)
        found[lower] = combined
    return found


def component_value(request: HttpRequest, name: str) -> str:
    """The value of one component without parameters (RFC 9421 sections 2.1, 2.2)."""
    if name == "@method":
        value = request.method
    elif name == "@authority":
        value = normalize_authority(request.authority, request.scheme)
    elif name == "@scheme":
        value = request.scheme.lower()
    elif name == "@path":
        value = request.path or "/"
    elif name == "@query":
        value = "?" + (request.query or "")
    elif name == "@request-target":
        value = (request.path or "/") + ("" if request.query is None else "?" + request.query)
    elif name.startswith("@"):
        raise SignatureInputError("unsupported derived component", component=name)
    else:
        field = request.fields.get(name)
        if field is None:
            raise SignatureInputError("covered field is absent", component=name)
        if not field.isascii() or not _FIELD_VALUE.fullmatch(field):
            raise SignatureInputError("covered field value is not printable US-ASCII", component=name)
        return field
    if not value.isascii() or not _DERIVED_VALUE.fullmatch(value):
        raise SignatureInputError("derived component value is not printable US-ASCII", component=name)
    return value


def signature_base(request: HttpRequest, covered: InnerList) -> bytes:
    """RFC 9421 section 2.5: one line per component, then ``"@signature-params"``."""
    lines = []
    seen: set[str] = set()
    for item in covered.items:
        name = item.value
        if not isinstance(name, str) or item.params or name != name.lower() or name == "@signature-params":
            raise SignatureInputError("component identifiers must be lowercase strings without parameters")
        if name in seen:
            raise SignatureInputError("component covered twice", component=name)
        seen.add(name)
        lines.append(f"{serialize_bare_item(name)}: {component_value(request, name)}\n")
    lines.append('"@signature-params": ' + serialize_inner_list(covered))
    return "".join(lines).encode("ascii")


def content_digest(body: bytes) -> str:
    """RFC 9530 ``Content-Digest`` value with the single algorithm ``sha-256``."""
    return serialize_dictionary({"sha-256": Item(hashlib.sha256(body).digest())})


def check_content_digest(value: str, body: bytes) -> bytes:
    """``value`` must be exactly ``sha-256=:<base64>:`` of ``body``, else ``DigestMismatchError``.

    Returns the body's SHA-256 (callers that hash the same body need not hash it again).
    """
    try:
        members = parse_dictionary(value, what="Content-Digest")
    except SignatureInputError as e:
        raise DigestMismatchError("Content-Digest is not a structured dictionary") from e
    member = members.get("sha-256")
    if len(members) != 1 or not isinstance(member, Item) or member.params or not isinstance(member.value, bytes):
        raise DigestMismatchError("Content-Digest must be exactly sha-256=:<base64>:")
    digest = hashlib.sha256(body).digest()
    if not hmac.compare_digest(member.value, digest):
        raise DigestMismatchError("Content-Digest does not match the body", body_len=len(body))
    return digest


# --- Sanaq profile -----------------------------------------------------------------------

LABEL = "sanaq"
TAG = "sanaq-sync/v1"
ALG = "ed25519"
COMPONENTS_WITH_BODY = ("@method", "@authority", "@path", "content-digest", "content-type")
COMPONENTS_WITHOUT_BODY = ("@method", "@authority", "@path")
COMPONENTS_WITH_QUERY = ("@method", "@authority", "@path", "@query")
_QUERY = re.compile(r"[A-Za-z0-9._~=&-]{1,256}")
_FIELDS_READ = ("signature-input", "signature", "content-digest", "content-type")
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
_KEYID = re.compile(r"[0-9a-f]{32}")
_PATH = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*")
_ALLOWED_PARAMS = frozenset({"created", "nonce", "keyid", "tag", "alg"})


@dataclass(frozen=True, slots=True)
class VerifiedRequest:
    key_id: bytes
    created: int
    nonce: str
    components: tuple[str, ...]
    # SHA-256 of the body when Content-Digest covers it: derived from the body, so not part of equality.
    body_sha256: bytes | None = field(default=None, compare=False)


def _profile_components(method: str, query: str = "") -> tuple[str, ...]:
    if method in ("POST", "PUT"):
        return COMPONENTS_WITH_BODY
    if method in ("GET", "HEAD", "DELETE"):
        return COMPONENTS_WITH_QUERY if query else COMPONENTS_WITHOUT_BODY
    raise SignatureInputError("method is not signable under the profile", method=method[:16])


def _check_target(path: str, query: str, method: str) -> None:
    if query and (method not in ("GET", "HEAD", "DELETE") or not _QUERY.fullmatch(query)):
        raise SignatureInputError("query string not allowed here or not of the profile's characters")
    if not _PATH.fullmatch(path):
        raise SignatureInputError("path must be an absolute, percent-encoded path")


def sign_request(
    *,
    method: str,
    authority: str,
    path: str,
    content_type: str | None,
    body: bytes | None,
    signing_key: SigningKey,
    created: int,
    nonce: str,
    scheme: str = "https",
    query: str = "",
) -> dict[str, str]:
    """Headers to add: ``Signature-Input``, ``Signature`` and, for POST/PUT, ``Content-Digest``.

    The request must carry ``Content-Type: <content_type>`` exactly as given;
    GET/HEAD/DELETE take ``content_type=None`` and no body, and may take a
    ``query`` (raw, without ``?``), which is then covered as ``@query``.
    """
    components = _profile_components(method, query)
    _check_target(path, query, method)
    if type(created) is not int or created < 0 or not _NONCE.fullmatch(nonce):
        raise SignatureInputError("created must be Unix seconds and nonce 16..64 base64url characters")
    headers: dict[str, str] = {}
    fields: dict[str, str] = {}
    if components is COMPONENTS_WITH_BODY:
        if body is None or content_type is None:
            raise SignatureInputError(f"{method} needs a body and a content type")
        headers["Content-Digest"] = fields["content-digest"] = content_digest(body)
        fields["content-type"] = content_type.strip(" \t")
    elif body or content_type is not None:
        raise SignatureInputError(f"{method} carries no body and no content type")
    params: Params = (
        ("created", created),
        ("keyid", key_id_hex(bytes(signing_key.verify_key))),
        ("nonce", nonce),
        ("tag", TAG),
    )
    covered = InnerList(tuple(Item(c) for c in components), params)
    request = HttpRequest(
        method=method, authority=authority, path=path, fields=fields, query=query or None, scheme=scheme
    )
    signature = _ed25519.sign(signing_key, signature_base(request, covered))
    headers["Signature-Input"] = serialize_dictionary({LABEL: covered})
    headers["Signature"] = serialize_dictionary({LABEL: Item(signature)})
    return headers


def _profile_member(inputs: dict[str, Item | InnerList], sigs: dict[str, Item | InnerList]) -> tuple[InnerList, bytes]:
    if list(inputs) != [LABEL] or list(sigs) != [LABEL]:
        raise SignatureInputError("exactly one signature labelled 'sanaq' is required", labels=sorted(inputs)[:4])
    covered, sig = inputs[LABEL], sigs[LABEL]
    if not isinstance(covered, InnerList) or not isinstance(sig, Item) or sig.params:
        raise SignatureInputError("Signature-Input must be an inner list and Signature a byte sequence")
    if not isinstance(sig.value, bytes) or len(sig.value) != _ed25519.SIGNATURE_LEN:
        raise SignatureInputError("Signature must be a 64-byte byte sequence")
    return covered, sig.value


def _profile_params(covered: InnerList) -> tuple[int, str, bytes]:
    params = dict(covered.params)
    unknown = set(params) - _ALLOWED_PARAMS
    if unknown:
        raise SignatureInputError("unknown signature parameter", params=sorted(unknown)[:4])
    created, nonce, keyid, tag = (params.get(n) for n in ("created", "nonce", "keyid", "tag"))
    if type(created) is not int or created < 0:
        raise SignatureInputError("created must be a non-negative integer")
    if not isinstance(nonce, str) or not _NONCE.fullmatch(nonce):
        raise SignatureInputError("nonce must be 16..64 base64url characters")
    if not isinstance(keyid, str) or not _KEYID.fullmatch(keyid):
        raise SignatureInputError("keyid must be 32 lowercase hex digits")
    if tag != TAG:
        raise SignatureInputError("tag must be sanaq-sync/v1")
    if "alg" in params and params["alg"] != ALG:
        raise SignatureInputError("alg, when present, must be ed25519")
    return created, nonce, bytes.fromhex(keyid)


def parse_and_verify_request(
    *,
    method: str,
    authority: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    lookup_key: Callable[[bytes], bytes],
    now_s: int,
    window_s: int = 300,
    limits: Limits = DEFAULT_LIMITS,
    scheme: str = "https",
    announces_body: bool = False,
) -> VerifiedRequest:
    """Verify one request under the profile, checks in the order of the module docstring.

    ``path`` is the raw path without query, ``query`` the raw query string
    (``""`` when none). ``lookup_key(key_id)`` returns the raw 32-byte Ed25519
    public key or raises (``UnknownKeyError``, ``RevokedKeyError``, ...).
    Nonce replay is not checked here. ``announces_body`` is true when the
    request's framing announced a body (``Transfer-Encoding``, or a
    ``Content-Length`` other than 0), whatever was read of it: a GET, HEAD or
    DELETE that announces one is refused like one that carries one.
    """
    fields = collect_fields(headers, _FIELDS_READ, max_bytes=limits.max_signature_header_bytes)
    sig_input, sig = fields.get("signature-input", ""), fields.get("signature", "")
    if not sig_input or not sig:
        raise MissingSignatureError("Signature and Signature-Input are required")
    inputs = parse_dictionary(sig_input, what="Signature-Input")
    sigs = parse_dictionary(sig, what="Signature")
    if not inputs or not sigs:
        raise MissingSignatureError("Signature and Signature-Input are required")
    covered, signature = _profile_member(inputs, sigs)
    created, nonce, kid = _profile_params(covered)
    _check_target(path, query, method)
    expected = _profile_components(method, query)
    components = tuple(i.value if isinstance(i.value, str) and not i.params else "" for i in covered.items)
    if components != expected:
        raise SignatureInputError("covered components differ from the profile", method=method)
    if expected is not COMPONENTS_WITH_BODY and (body or announces_body):
        raise SignatureInputError(f"{method} must not carry a body")
    missing = [n for n in expected if not n.startswith("@") and n not in fields]
    if missing:
        raise SignatureInputError("covered field is absent", fields=missing)
    if abs(now_s - created) > window_s:
        raise StaleRequestError("created is outside the window", created=created, now_s=now_s, window_s=window_s)
    body_sha256 = None
    if "content-digest" in expected:
        body_sha256 = check_content_digest(fields["content-digest"], body)
    public_key = lookup_key(kid)
    if len(public_key) != 32 or key_id(public_key) != kid:
        raise UnknownKeyError("key lookup returned a key with another key id", key_id=kid.hex())
    request = HttpRequest(
        method=method, authority=authority, path=path, fields=fields, query=query or None, scheme=scheme
    )
    base = signature_base(request, covered)
    _ed25519.verify(public_key, base, signature, "request", key_id=kid.hex())
    return VerifiedRequest(key_id=kid, created=created, nonce=nonce, components=components, body_sha256=body_sha256)
