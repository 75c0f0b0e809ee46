"""RFC 9421 core (Appendix B.2.6 vector), the Sanaq profile's refusal table, and interop
with the independent ``http-message-signatures`` package in both directions."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import hashlib
import time
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from http_message_signatures import HTTPMessageSigner, HTTPMessageVerifier, MappingKeyResolver, algorithms
from http_message_signatures.exceptions import InvalidSignature
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict
from nacl.signing import SigningKey

from wire import _ed25519, httpsig
from wire.errors import (
    BadSignatureError,
    DigestMismatchError,
    MissingSignatureError,
    OversizeError,
    SignatureInputError,
    StaleRequestError,
    UnknownKeyError,
    WireError,
)
from wire.httpsig import InnerList, Item, Token
from wire.keyids import key_id, key_id_hex
from wire.limits import Limits

# --- RFC 9421 Appendix B.1.4 key and B.2 test request, B.2.6 expected output --------------

RFC_ED25519_PRIVATE_PEM = b"""-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF
-----END PRIVATE KEY-----
"""
RFC_ED25519_PUBLIC_PEM = b"""-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=
-----END PUBLIC KEY-----
"""
RFC_BODY = b'{"hello": "world"}'
RFC_HEADERS = {
    "Host": "example.com",
    "Date": "Tue, 20 Apr 2021 02:07:55 GMT",
    "Content-Type": "application/json",
    "Content-Digest": "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+"
    "TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:",
    "Content-Length": "18",
}
B26_SIGNATURE_INPUT = (
    'sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length")'
    ';created=1618884473;keyid="test-key-ed25519"'
)
B26_SIGNATURE = "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:"
B26_BASE = (
    b'"date": Tue, 20 Apr 2021 02:07:55 GMT\n'
    b'"@method": POST\n'
    b'"@path": /foo\n'
    b'"@authority": example.com\n'
    b'"content-type": application/json\n'
    b'"content-length": 18\n'
    b'"@signature-params": ("date" "@method" "@path" "@authority" "content-type" "content-length")'
    b';created=1618884473;keyid="test-key-ed25519"'
)


def _rfc_keys() -> tuple[SigningKey, bytes]:
    private = serialization.load_pem_private_key(RFC_ED25519_PRIVATE_PEM, password=None)
    public = serialization.load_pem_public_key(RFC_ED25519_PUBLIC_PEM)
    assert isinstance(private, ed25519.Ed25519PrivateKey)
    assert isinstance(public, ed25519.Ed25519PublicKey)
    seed = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return SigningKey(seed), public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _b26_request() -> httpsig.HttpRequest:
    fields = httpsig.collect_fields(RFC_HEADERS, ["date", "content-type", "content-length"], max_bytes=4096)
    return httpsig.HttpRequest(
        method="POST", authority=RFC_HEADERS["Host"], path="/foo", query="param=Value&Pet=dog", fields=fields
    )


def test_rfc_b2_request_text_is_consistent() -> None:
    digest = base64.b64encode(hashlib.sha512(RFC_BODY).digest()).decode()
    assert RFC_HEADERS["Content-Digest"] == f"sha-512=:{digest}:"
    assert len(RFC_BODY) == int(RFC_HEADERS["Content-Length"])


def test_rfc_b26_signature_base_and_value() -> None:
    signing_key, public_key = _rfc_keys()
    assert bytes(signing_key.verify_key) == public_key
    covered = httpsig.parse_dictionary(B26_SIGNATURE_INPUT, what="Signature-Input")["sig-b26"]
    assert isinstance(covered, InnerList)
    base = httpsig.signature_base(_b26_request(), covered)
    assert base == B26_BASE
    signature = httpsig.serialize_dictionary({"sig-b26": Item(_ed25519.sign(signing_key, base))})
    assert signature == B26_SIGNATURE
    assert httpsig.serialize_dictionary({"sig-b26": covered}) == B26_SIGNATURE_INPUT


def test_rfc_b26_verifies_and_a_changed_component_does_not() -> None:
    _, public_key = _rfc_keys()
    covered = httpsig.parse_dictionary(B26_SIGNATURE_INPUT, what="Signature-Input")["sig-b26"]
    sig = httpsig.parse_dictionary(B26_SIGNATURE, what="Signature")["sig-b26"]
    assert isinstance(covered, InnerList)
    assert isinstance(sig, Item)
    assert isinstance(sig.value, bytes)
    _ed25519.verify(public_key, httpsig.signature_base(_b26_request(), covered), sig.value, "request")
    changed = dataclasses.replace(_b26_request(), path="/bar")
    with pytest.raises(BadSignatureError):
        _ed25519.verify(public_key, httpsig.signature_base(changed, covered), sig.value, "request")


# --- lower layer ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authority", "scheme", "expected"),
    [
        ("Example.COM", "https", "example.com"),
        ("example.com:443", "https", "example.com"),
        ("example.com:0443", "https", "example.com"),
        ("example.com:80", "https", "example.com:80"),
        ("example.com:80", "http", "example.com"),
        ("example.com:8443", "https", "example.com:8443"),
        ("127.0.0.1:8443", "https", "127.0.0.1:8443"),
        ("[::1]:443", "https", "[::1]"),
        ("[::1]:8443", "https", "[::1]:8443"),
    ],
)
def test_normalize_authority(authority: str, scheme: str, expected: str) -> None:
    assert httpsig.normalize_authority(authority, scheme) == expected


@pytest.mark.parametrize("authority", ["", "exa mple.com", "example.com/x", "user@example.com", "ex\u212aample", "a:b"])
def test_normalize_authority_refuses(authority: str) -> None:
    with pytest.raises(SignatureInputError):
        httpsig.normalize_authority(authority)


def test_component_values() -> None:
    fields = httpsig.collect_fields(
        CIMultiDict([("X-A", " one "), ("x-a", "two\t"), ("Other", "z")]), ["x-a"], max_bytes=100
    )
    assert fields == {"x-a": "one, two"}
    request = httpsig.HttpRequest(method="GET", authority="h:443", path="", query="a=1", fields=fields)
    values = {n: httpsig.component_value(request, n) for n in ("@method", "@authority", "@path", "@query", "x-a")}
    assert values == {"@method": "GET", "@authority": "h", "@path": "/", "@query": "?a=1", "x-a": "one, two"}
    assert httpsig.component_value(request, "@request-target") == "/?a=1"
    with pytest.raises(SignatureInputError):
        httpsig.component_value(request, "@target-uri")
    with pytest.raises(SignatureInputError):
        httpsig.component_value(request, "absent")
    bad = httpsig.HttpRequest(method="GET", authority="h", path="/", fields={"x": "a\nb"})
    with pytest.raises(SignatureInputError):
        httpsig.component_value(bad, "x")


def test_collect_fields_caps_combined_lines() -> None:
    headers = CIMultiDict([("Signature", "a" * 60), ("signature", "b" * 60)])
    assert httpsig.collect_fields(headers, ["signature"], max_bytes=122)["signature"].startswith("a")
    with pytest.raises(OversizeError):
        httpsig.collect_fields(headers, ["signature"], max_bytes=121)


def test_content_digest_matches_rfc9530_and_the_other_library() -> None:
    from http_message_signatures import ContentDigest

    value = httpsig.content_digest(RFC_BODY)
    assert value == "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"
    assert value == ContentDigest.create(RFC_BODY)
    httpsig.check_content_digest(value, RFC_BODY)


@pytest.mark.parametrize(
    "text",
    [
        'a=("x" "y");n=1;s="q\\"\\\\";t=tok/x:y;b=:AAE=:;f=?0;g',
        "a=1, b=-5;p, c, d=:YQ==:, e=*tok, f=?0",
        'sig=("@method" "content-type";sf);created=1',
        "a=()",
    ],
)
def test_sf_round_trip(text: str) -> None:
    parsed = httpsig.parse_dictionary(text, what="x")
    assert httpsig.serialize_dictionary(parsed) == text
    assert httpsig.parse_dictionary(httpsig.serialize_dictionary(parsed), what="x") == parsed


def test_sf_values() -> None:
    parsed = httpsig.parse_dictionary(' a=( "x"  "y" );n=1 ,\tb="q\\"" ', what="x")
    assert parsed == {"a": InnerList((Item("x"), Item("y")), (("n", 1),)), "b": Item('q"')}
    assert httpsig.parse_dictionary("t=abc", what="x") == {"t": Item(Token("abc"))}
    assert httpsig.parse_dictionary("c=?1;p=?1", what="x") == {"c": Item(True, (("p", True),))}


@pytest.mark.parametrize(
    "text",
    [
        "a=(",
        'a=("x"',
        'a=("x""y")',
        "a=1,",
        "a=1,,b=2",
        "a=1 b=2",
        "A=1",
        "1a=1",
        "a=1, a=2",
        "a=1;p=1;p=2",
        "a=1234567890123456",
        "a=1.5",
        "a=-",
        'a="unterminated',
        'a="bad \\n escape"',
        'a="tab\tinside"',
        "a=:YQ:",
        "a=:Y Q=:",
        "a=:YR==:",
        "a=?2",
        "a=?",
        "a=@x",
        "a=\u00e9",
        'a="\u00e9"',
        "a=)",
        "=1",
    ],
)
def test_sf_refuses(text: str) -> None:
    with pytest.raises(SignatureInputError):
        httpsig.parse_dictionary(text, what="x")


@st.composite
def _bare_items(draw: st.DrawFn) -> Any:
    return draw(
        st.one_of(
            st.integers(min_value=-(10**15) + 1, max_value=10**15 - 1),
            st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20),
            st.binary(max_size=40),
            st.booleans(),
            st.from_regex(r"[A-Za-z*][A-Za-z0-9:/*.-]{0,10}", fullmatch=True).map(Token),
        )
    )


_KEYS = st.from_regex(r"[a-z*][a-z0-9_.*-]{0,8}", fullmatch=True)
_PARAMS = st.dictionaries(_KEYS, _bare_items(), max_size=3).map(lambda d: tuple(d.items()))
_ITEMS = st.builds(Item, _bare_items(), _PARAMS)
_MEMBERS = st.one_of(_ITEMS, st.builds(InnerList, st.lists(_ITEMS, max_size=4).map(tuple), _PARAMS))


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(_KEYS, _MEMBERS, max_size=4))
def test_sf_serialize_parse_property(members: dict[str, Item | InnerList]) -> None:
    text = httpsig.serialize_dictionary(members)
    assert httpsig.parse_dictionary(text, what="x") == members


# --- the Sanaq profile -------------------------------------------------------------------

NOW = 1_750_000_000
NONCE = "bm9uY2Utbm9uY2Utbm9uY2U"
BODY = b"envelope bytes \x00\x01\x02"
CTYPE = "application/vnd.sanaq.batch"
TABLET = SigningKey(bytes(range(32)))
OTHER = SigningKey(bytes(range(1, 33)))
KEYS = {key_id(bytes(k.verify_key)): bytes(k.verify_key) for k in (TABLET, OTHER)}


def lookup(kid: bytes) -> bytes:
    try:
        return KEYS[kid]
    except KeyError as e:
        raise UnknownKeyError("unknown key", key_id=kid.hex()) from e


@dataclasses.dataclass
class Req:
    method: str = "POST"
    authority: str = "gw.sanaq.example:8443"
    path: str = "/v1/batches"
    query: str = ""
    body: bytes = BODY
    headers: CIMultiDict[str] = dataclasses.field(default_factory=CIMultiDict)
    now_s: int = NOW

    def verify(self, **kw: Any) -> httpsig.VerifiedRequest:
        args: dict[str, Any] = {
            "method": self.method,
            "authority": self.authority,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "body": self.body,
            "lookup_key": lookup,
            "now_s": self.now_s,
        }
        return httpsig.parse_and_verify_request(**(args | kw))


def signed(method: str = "POST", *, key: SigningKey = TABLET, created: int = NOW, body: bytes = BODY) -> Req:
    with_body = method in ("POST", "PUT")
    headers = httpsig.sign_request(
        method=method,
        authority="gw.sanaq.example:8443",
        path="/v1/batches",
        content_type=CTYPE if with_body else None,
        body=body if with_body else None,
        signing_key=key,
        created=created,
        nonce=NONCE,
    )
    if with_body:
        headers["Content-Type"] = CTYPE
    return Req(method=method, body=body if with_body else b"", headers=CIMultiDict(headers))


def forged(
    method: str = "POST",
    *,
    components: tuple[str, ...] | None = None,
    params: dict[str, Any] | None = None,
    label: str = "sanaq",
    key: SigningKey = TABLET,
    component_params: tuple[tuple[str, Any], ...] = (),
    extra_headers: dict[str, str] | None = None,
) -> Req:
    """A request correctly signed by ``key`` over arbitrary components and parameters,
    so that only the profile rule under test can refuse it."""
    req = signed(method)
    req.headers.update(extra_headers or {})
    if components is None:
        components = httpsig.COMPONENTS_WITH_BODY if method in ("POST", "PUT") else httpsig.COMPONENTS_WITHOUT_BODY
    if params is None:
        params = {"created": NOW, "keyid": key_id_hex(bytes(TABLET.verify_key)), "nonce": NONCE, "tag": httpsig.TAG}
    items = tuple(Item(c, component_params if c == "@path" else ()) for c in components)
    covered = InnerList(items, tuple(params.items()))
    names = [c for c in components if not c.startswith("@")]
    fields = httpsig.collect_fields(req.headers, names, max_bytes=4096)
    request = httpsig.HttpRequest(method=method, authority=req.authority, path=req.path, fields=fields)
    base = _base_ignoring_params(request, covered)
    req.headers["Signature-Input"] = httpsig.serialize_dictionary({label: covered})
    req.headers["Signature"] = httpsig.serialize_dictionary({label: Item(_ed25519.sign(key, base))})
    return req


def _base_ignoring_params(request: httpsig.HttpRequest, covered: InnerList) -> bytes:
    lines = [f'"{i.value}": {httpsig.component_value(request, str(i.value))}\n' for i in covered.items]
    serialized = httpsig.serialize_dictionary({"x": covered})[2:]
    return ("".join(lines) + '"@signature-params": ' + serialized).encode()


def test_forged_helper_builds_a_valid_request() -> None:
    forged().verify()
    forged("GET").verify()
    params = {"nonce": NONCE, "tag": httpsig.TAG, "alg": "ed25519", "keyid": key_id_hex(bytes(TABLET.verify_key))}
    forged(params=params | {"created": NOW}).verify()


@pytest.mark.parametrize("method", ["POST", "PUT", "GET", "HEAD", "DELETE"])
def test_round_trip(method: str) -> None:
    req = signed(method)
    verified = req.verify()
    assert verified == httpsig.VerifiedRequest(
        key_id=key_id(bytes(TABLET.verify_key)),
        created=NOW,
        nonce=NONCE,
        components=httpsig.COMPONENTS_WITH_BODY if method in ("POST", "PUT") else httpsig.COMPONENTS_WITHOUT_BODY,
    )
    assert ("Content-Digest" in req.headers) == (method in ("POST", "PUT"))


def test_round_trip_details() -> None:
    signed(body=b"").verify(body=b"")
    req = signed()
    req.verify(authority="GW.sanaq.example:8443", headers=dict(req.headers))
    lower = {k.lower(): v for k, v in req.headers.items()}
    req.verify(headers=lower)
    req.verify(now_s=NOW + 300)
    req.verify(now_s=NOW - 300)
    req.verify(now_s=NOW + 30, window_s=30)
    default_port = httpsig.sign_request(
        method="GET",
        authority="Gw.Example:443",
        path="/v1/registry",
        content_type=None,
        body=None,
        signing_key=TABLET,
        created=NOW,
        nonce=NONCE,
    )
    Req(method="GET", authority="gw.example", path="/v1/registry", body=b"", headers=CIMultiDict(default_port)).verify()


def test_sign_request_output_is_exact() -> None:
    headers = signed().headers
    kid = key_id_hex(bytes(TABLET.verify_key))
    assert headers["Signature-Input"] == (
        'sanaq=("@method" "@authority" "@path" "content-digest" "content-type")'
        f';created={NOW};keyid="{kid}";nonce="{NONCE}";tag="sanaq-sync/v1"'
    )
    assert headers["Content-Digest"] == httpsig.content_digest(BODY)
    assert headers["Signature"].startswith("sanaq=:") and len(headers["Signature"]) == len("sanaq=::") + 88


@pytest.mark.parametrize(
    "kwargs",
    [
        {"method": "PATCH"},
        {"method": "post"},
        {"content_type": None},
        {"body": None},
        {"method": "GET"},
        {"nonce": "short"},
        {"nonce": "x" * 65},
        {"nonce": "a+b/c=d" * 3},
        {"created": -1},
        {"created": True},
        {"path": "/v1/batches?x=1"},
        {"path": "v1"},
        {"authority": "bad host"},
    ],
)
def test_sign_request_refuses(kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {
        "method": "POST",
        "authority": "gw",
        "path": "/v1/batches",
        "content_type": CTYPE,
        "body": BODY,
        "signing_key": TABLET,
        "created": NOW,
        "nonce": NONCE,
    }
    with pytest.raises(SignatureInputError):
        httpsig.sign_request(**(args | kwargs))


def _set(name: str, value: str) -> Callable[[Req], None]:
    def mutate(req: Req) -> None:
        req.headers[name] = value

    return mutate


def _drop(name: str) -> Callable[[Req], None]:
    def mutate(req: Req) -> None:
        del req.headers[name]

    return mutate


def _edit(name: str, old: str, new: str) -> Callable[[Req], None]:
    def mutate(req: Req) -> None:
        assert old in req.headers[name]
        req.headers[name] = req.headers[name].replace(old, new)

    return mutate


def _add_line(name: str, value: str) -> Callable[[Req], None]:
    def mutate(req: Req) -> None:
        req.headers.add(name, value)

    return mutate


def _flip_signature_byte(req: Req) -> None:
    sig = bytearray(base64.b64decode(req.headers["Signature"][len("sanaq=:") : -1]))
    sig[10] ^= 0x01
    req.headers["Signature"] = f"sanaq=:{base64.b64encode(bytes(sig)).decode()}:"


def _attr(**changes: Any) -> Callable[[Req], None]:
    def mutate(req: Req) -> None:
        for name, value in changes.items():
            setattr(req, name, value)

    return mutate


def _kid(key: SigningKey) -> str:
    return key_id_hex(bytes(key.verify_key))


def _params(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"created": NOW, "keyid": _kid(TABLET), "nonce": NONCE, "tag": httpsig.TAG}
    return {k: v for k, v in (base | changes).items() if v is not None}


WITH_BODY = httpsig.COMPONENTS_WITH_BODY
_SIG2 = ', sig2=("@method");created=1;keyid="k";nonce="n";tag="t"'
_SIG2_VALUE = ", sig2=:" + base64.b64encode(bytes(64)).decode() + ":"

# (id, request factory, mutation, expected error class, expected code)
REFUSALS: list[tuple[str, Callable[[], Req], Callable[[Req], None], type[WireError], str]] = [
    ("no-signature", signed, _drop("Signature"), MissingSignatureError, "missing-signature"),
    ("no-signature-input", signed, _drop("Signature-Input"), MissingSignatureError, "missing-signature"),
    ("empty-signature-input", signed, _set("Signature-Input", " "), MissingSignatureError, "missing-signature"),
    (
        "sf-unterminated",
        signed,
        _edit("Signature-Input", '"content-type")', '"content-type"'),
        SignatureInputError,
        "bad-signature-input",
    ),
    ("sf-trailing-comma", signed, _edit("Signature", "==:", "==:,"), SignatureInputError, "bad-signature-input"),
    ("sf-unpadded-base64", signed, _edit("Signature", "==:", ":"), SignatureInputError, "bad-signature-input"),
    (
        "sf-non-ascii",
        signed,
        _edit("Signature-Input", "sanaq-sync/v1", "sanaq-sync/v\u0661"),
        SignatureInputError,
        "bad-signature-input",
    ),
    (
        "sf-created-decimal",
        signed,
        _edit("Signature-Input", f"created={NOW}", f"created={NOW}.5"),
        SignatureInputError,
        "bad-signature-input",
    ),
    (
        "sf-duplicate-label",
        signed,
        _add_line("Signature-Input", "sanaq=()"),
        SignatureInputError,
        "bad-signature-input",
    ),
    ("input-not-inner-list", signed, _set("Signature-Input", "sanaq=1"), SignatureInputError, "bad-signature-input"),
    ("signature-not-bytes", signed, _set("Signature", 'sanaq="x"'), SignatureInputError, "bad-signature-input"),
    (
        "signature-short",
        signed,
        _set("Signature", "sanaq=:" + base64.b64encode(bytes(63)).decode() + ":"),
        SignatureInputError,
        "bad-signature-input",
    ),
    ("signature-with-param", signed, _edit("Signature", "==:", "==:;x=1"), SignatureInputError, "bad-signature-input"),
    ("wrong-label", lambda: forged(label="sig1"), lambda r: None, SignatureInputError, "bad-signature-input"),
    ("relabelled-signature", signed, _edit("Signature", "sanaq=", "sig1="), SignatureInputError, "bad-signature-input"),
    (
        "two-signatures",
        signed,
        lambda r: (
            _edit("Signature-Input", 'v1"', 'v1"' + _SIG2)(r),
            _edit("Signature", "==:", "==:" + _SIG2_VALUE)(r),
        ),
        SignatureInputError,
        "bad-signature-input",
    ),
    (
        "second-signature-line",
        signed,
        lambda r: (_add_line("Signature-Input", _SIG2[2:])(r), _add_line("Signature", _SIG2_VALUE[2:])(r)),
        SignatureInputError,
        "bad-signature-input",
    ),
    (
        "missing-content-digest-component",
        lambda: forged(components=("@method", "@authority", "@path", "content-type")),
        lambda r: None,
        SignatureInputError,
        "bad-signature-input",
    ),
    (
        "missing-content-type-component",
        lambda: forged(components=("@method", "@authority", "@path", "content-digest")),
        lambda r: None,
        SignatureInputError,
        "bad-signature-input",
    ),
    (
        "missing-authority",
        lambda: forged("GET", components=("@method", "@path")),
        lambda r: None,
        SignatureInputError,
        "bad-signature-input",
    ),
    (
        "extra-component",
        lambda: forged(components=(*WITH_BODY, "content-length"), extra_headers={"Content-Length": str(len(BODY))}),
        lambda r: None,
        SignatureInputError,
        "bad-signature-input",
    ),
    (
        "reordered-components",
        lambda: forged(components=("@authority", "@method", "@path", "content-digest", "content-type")),
        lambda r: None,
        SignatureInputError,
        "bad-signature-input",
    ),
    (
        "post-with-get-components",
        lambda: forged(components=httpsig.COMPONENTS_WITHOUT_BODY),
        lambda r: None,
        SignatureInputError,
        "bad-signature-input",
    ),
    (
        "component-with-param",
        lambda: forged(component_params=(("x", True),)),
        lambda r: None,
        SignatureInputError,
        "bad-signature-input",
    ),
    (
        "alg-hmac",
        lambda: forged(params=_params(alg="hmac-sha256")),
        lambda r: None,
        SignatureInputError,
        "bad-signature-input",
    ),
    (
        "alg-rsa",
        lambda: forged(params=_params(alg="rsa-v1_5-sha256")),
        lambda r: None,
        SignatureInputError,
        "bad-signature-input",
    ),
    (
        "alg-token",
        lambda: forged(params=_params(alg=Token("ed25519"))),
        lambda r: None,
        SignatureInputError,
        "bad-signature-input",
    ),
    (
        "unknown-param",
        lambda: forged(params=_params(foo="x")),
        lambda r: None,
        SignatureInputError,
        "bad-signature-input",
    ),
    (
        "expires-param",
        lambda: forged(params=_params(expires=NOW + 60)),
        lambda r: None,
        SignatureInputError,
        "bad-signature-input",
    ),
    (
        "bad-tag",
        lambda: forged(params=_params(tag="sanaq-sync/v2")),
        lambda r: None,
        SignatureInputError,
        "bad-signature-input",
    ),
    ("no-tag", lambda: forged(params=_params(tag=None)), lambda r: None, SignatureInputError, "bad-signature-input"),
    (
        "tag-token",
        lambda: forged(params=_params(tag=Token("sanaq-sync/v1"))),
        lambda r: None,
        SignatureInputError,
        "bad-signature-input",
    ),
    (
        "nonce-15",
        lambda: forged(params=_params(nonce="a" * 15)),
        lambda r: None,
        SignatureInputError,
        "bad-signature-input",
    ),
    (
        "nonce-65",
        lambda: forged(params=_params(nonce="a" * 65)),
        lambda r: None,
        SignatureInputError,
        "bad-signature-input",
    ),
    (
        "nonce-base64-std",
        lambda: forged(params=_params(nonce="abc+def/ghi=jklm")),
        lambda r: None,
        SignatureInputError,
        "bad-signature-input",
    ),
    (
        "nonce-missing",
        lambda: forged(params=_params(nonce=None)),
        lambda r: None,
        SignatureInputError,
        "bad-signature-input",
    ),
    (
        "nonce-integer",
        lambda: forged(params=_params(nonce=12345678901234)),
        lambda r: None,
        SignatureInputError,
        "bad-signature-input",
    ),
    (
        "created-missing",
        lambda: forged(params=_params(created=None)),
        lambda r: None,
        SignatureInputError,
        "bad-signature-input",
    ),
    (
        "created-string",
        lambda: forged(params=_params(created=str(NOW))),
        lambda r: None,
        SignatureInputError,
        "bad-signature-input",
    ),
    (
        "created-boolean",
        lambda: forged(params=_params(created=True)),
        lambda r: None,
        SignatureInputError,
        "bad-signature-input",
    ),
    (
        "created-negative",
        lambda: forged(params=_params(created=-1)),
        lambda r: None,
        SignatureInputError,
        "bad-signature-input",
    ),
    (
        "keyid-uppercase",
        lambda: forged(params=_params(keyid=_kid(TABLET).upper())),
        lambda r: None,
        SignatureInputError,
        "bad-signature-input",
    ),
    (
        "keyid-short",
        lambda: forged(params=_params(keyid=_kid(TABLET)[:31])),
        lambda r: None,
        SignatureInputError,
        "bad-signature-input",
    ),
    (
        "keyid-name",
        lambda: forged(params=_params(keyid="tablet-0001-0001-0001-0001-00001")),
        lambda r: None,
        SignatureInputError,
        "bad-signature-input",
    ),
    (
        "keyid-missing",
        lambda: forged(params=_params(keyid=None)),
        lambda r: None,
        SignatureInputError,
        "bad-signature-input",
    ),
    ("query-string", signed, _attr(query="a=1"), SignatureInputError, "bad-signature-input"),
    ("method-patch", signed, _attr(method="PATCH"), SignatureInputError, "bad-signature-input"),
    ("get-with-body", lambda: signed("GET"), _attr(body=b"x"), SignatureInputError, "bad-signature-input"),
    ("covered-content-type-absent", signed, _drop("Content-Type"), SignatureInputError, "bad-signature-input"),
    ("covered-content-digest-absent", signed, _drop("Content-Digest"), SignatureInputError, "bad-signature-input"),
    ("stale", signed, _attr(now_s=NOW + 301), StaleRequestError, "clock-skew"),
    ("future", signed, _attr(now_s=NOW - 301), StaleRequestError, "clock-skew"),
    ("other-body", signed, _attr(body=BODY + b"!"), DigestMismatchError, "digest-mismatch"),
    (
        "digest-sha512",
        signed,
        _set("Content-Digest", "sha-512=:" + base64.b64encode(bytes(64)).decode() + ":"),
        DigestMismatchError,
        "digest-mismatch",
    ),
    (
        "digest-two-members",
        signed,
        _add_line("Content-Digest", "sha-512=:AA==:"),
        DigestMismatchError,
        "digest-mismatch",
    ),
    ("digest-garbled", signed, _set("Content-Digest", "sha-256=abc"), DigestMismatchError, "digest-mismatch"),
    ("unknown-key", lambda: signed(key=SigningKey(bytes(32))), lambda r: None, UnknownKeyError, "unknown-key"),
    ("signed-by-other-key", lambda: forged(key=OTHER), lambda r: None, BadSignatureError, "bad-signature"),
    ("flipped-signature-byte", signed, _flip_signature_byte, BadSignatureError, "bad-signature"),
    ("other-authority", signed, _attr(authority="evil.example:8443"), BadSignatureError, "bad-signature"),
    ("other-path", signed, _attr(path="/v1/custody"), BadSignatureError, "bad-signature"),
    ("other-method", signed, _attr(method="PUT"), BadSignatureError, "bad-signature"),
    ("other-content-type", signed, _set("Content-Type", "text/plain"), BadSignatureError, "bad-signature"),
    (
        "oversize-signature-input",
        signed,
        _edit("Signature-Input", "tag=", "x" * 4096 + "=1;tag="),
        OversizeError,
        "oversize",
    ),
    (
        "oversize-by-lines",
        signed,
        lambda r: [r.headers.add("Signature", "a=1") for _ in range(900)],
        OversizeError,
        "oversize",
    ),
]


@pytest.mark.parametrize(
    ("make", "mutate", "error", "code"), [case[1:] for case in REFUSALS], ids=[case[0] for case in REFUSALS]
)
def test_refusals(make: Callable[[], Req], mutate: Callable[[Req], None], error: type[WireError], code: str) -> None:
    req = make()
    mutate(req)
    with pytest.raises(error) as info:
        req.verify()
    assert type(info.value) is error
    assert info.value.code == code


def test_stale_error_carries_the_facts() -> None:
    with pytest.raises(StaleRequestError) as info:
        signed().verify(now_s=NOW + 1000)
    assert info.value.facts["created"] == NOW
    assert info.value.facts["now_s"] == NOW + 1000


@pytest.mark.parametrize(
    ("make", "kwargs", "error"),
    [
        # stale and wrong body: the window is checked before the digest
        (lambda: signed(created=NOW - 1000), {"body": b"other"}, StaleRequestError),
        # profile breach and stale: profile first
        (lambda: forged(params=_params(tag="x", created=NOW - 1000)), {}, SignatureInputError),
        # wrong body from an unknown key: the digest is checked before the key lookup
        (lambda: signed(key=SigningKey(bytes(32))), {"body": b"other"}, DigestMismatchError),
        # oversize before parse
        (signed, {"headers": CIMultiDict({"Signature": "(" * 5000, "Signature-Input": "x"})}, OversizeError),
    ],
)
def test_order_of_checks(make: Callable[[], Req], kwargs: dict[str, Any], error: type[WireError]) -> None:
    with pytest.raises(error):
        make().verify(**kwargs)


def test_lookup_returning_a_foreign_key_is_unknown_key() -> None:
    with pytest.raises(UnknownKeyError):
        signed().verify(lookup_key=lambda kid: bytes(OTHER.verify_key))


def test_limits_are_honoured() -> None:
    req = signed()
    with pytest.raises(OversizeError):
        req.verify(limits=Limits(max_signature_header_bytes=100))


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(st.text(max_size=300), st.binary(max_size=300).map(lambda b: b.decode("latin-1"))),
    st.one_of(
        st.text(max_size=300),
        st.text(alphabet='sanq=()";:*?-0123456789abcdefAQ=+/ ,\t@', max_size=200),
    ),
)
def test_random_headers_raise_only_wire_errors(sig_input: str, sig: str) -> None:
    req = signed()
    req.headers["Signature-Input"] = sig_input
    req.headers["Signature"] = sig
    with pytest.raises(WireError):
        req.verify()


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet='sanq=()";:*?-0123456789abcdefAQ=+/ ,\t@', max_size=200))
def test_random_sf_text_raises_only_signature_input_error(text: str) -> None:
    with contextlib.suppress(SignatureInputError):
        httpsig.parse_dictionary(text, what="x")


def test_pathological_input_is_fast() -> None:
    started = time.perf_counter()
    for text in ['a=("' + "\\" * 4000, "a=" + "(" * 4000, 'a="' + "a" * 4000, "a=:" + "A" * 4000, "a" * 4000 + ";"]:
        with pytest.raises(SignatureInputError):
            httpsig.parse_dictionary(text, what="x")
    assert time.perf_counter() - started < 0.5


# --- interop with http-message-signatures (pyauth), both directions ----------------------


@dataclasses.dataclass
class LibMessage:
    """The request interface http_message_signatures documents (``method``, absolute
    encoded ``url``, ``headers`` with items/assignment/deletion), as a
    ``requests.PreparedRequest`` provides it."""

    method: str
    url: str
    headers: dict[str, str]


def _lib_private_key(key: SigningKey) -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.from_private_bytes(bytes(key))


@pytest.mark.parametrize(("method", "include_alg"), [("POST", True), ("PUT", False), ("GET", True), ("DELETE", False)])
def test_interop_library_signs_we_verify(method: str, include_alg: bool) -> None:
    kid = _kid(TABLET)
    with_body = method in ("POST", "PUT")
    message = LibMessage(
        method, "https://gw.sanaq.example:8443/v1/batches", {"Content-Type": CTYPE} if with_body else {}
    )
    signer = HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(public_keys={}, private_keys={kid: _lib_private_key(TABLET)}),
    )
    signer.sign(
        message,
        key_id=kid,
        created=datetime.datetime.fromtimestamp(NOW, tz=datetime.UTC),
        nonce=NONCE,
        label="sanaq",
        tag=httpsig.TAG,
        include_alg=include_alg,
        covered_component_ids=WITH_BODY if with_body else httpsig.COMPONENTS_WITHOUT_BODY,
        body=BODY if with_body else None,
    )
    req = Req(method=method, body=BODY if with_body else b"", headers=CIMultiDict(message.headers))
    assert req.verify().nonce == NONCE
    if with_body:
        with pytest.raises(DigestMismatchError):
            req.verify(body=BODY + b"x")


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_interop_we_sign_library_verifies(method: str) -> None:
    now = int(time.time())  # the library checks created against its own clock
    req = signed(method, created=now)
    message = LibMessage(method, "https://gw.sanaq.example:8443/v1/batches", dict(req.headers))
    kid = _kid(TABLET)
    verifier = HTTPMessageVerifier(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(public_keys={kid: _lib_private_key(TABLET).public_key()}, private_keys={}),
    )
    expected = WITH_BODY if method == "POST" else httpsig.COMPONENTS_WITHOUT_BODY
    results = verifier.verify(message, expect_tag=httpsig.TAG, require_components=expected, body=req.body)
    assert len(results) == 1
    assert results[0].label == "sanaq"
    assert results[0].parameters == {"created": now, "keyid": kid, "nonce": NONCE, "tag": httpsig.TAG}
    assert list(results[0].covered_components)[:-1] == [f'"{c}"' for c in expected]
    tampered = LibMessage(method, "https://gw.sanaq.example:8443/v1/custody", dict(req.headers))
    with pytest.raises(InvalidSignature):
        verifier.verify(tampered, expect_tag=httpsig.TAG, body=req.body)
