"""request_signature.json: requests signed under the RFC 9421 profile, and refusals.

Built with ``wire.httpsig`` (the generator writes no file if that module is
absent). Every case is verified as a server would: ``now_s`` is the server
clock, ``signers`` the enrolled keys; nonce replay is the server's own check
and is not part of these vectors.
"""

from __future__ import annotations

import base64
import importlib.util
from typing import Any

from gen_envelope import envelope_vectors
from gen_keys import DEVICE, KEYS, T_SEALED

__all__ = ["AUTHORITY", "httpsig_vectors"]

AUTHORITY = "gateway.sanaq.test"
CREATED = T_SEALED // 1000 + 5
NONCE = "bm9uY2UtMDAwMDAwMDE"
BATCH_TYPE = "application/vnd.sanaq.batch"


def _request(name: str, description: str, *, method: str, path: str, signer: str, body: bytes = b"",
             content_type: str | None = None, nonce: str = NONCE, created: int = CREATED,
             query: str = "") -> dict[str, Any]:
    from wire import httpsig  # noqa: PLC0415 - optional until that module lands

    added = httpsig.sign_request(method=method, authority=AUTHORITY, path=path, content_type=content_type,
                                 body=body if content_type is not None else None,
                                 signing_key=KEYS[signer].signing_key, created=created, nonce=nonce,
                                 **({"query": query} if query else {}))
    headers = {"Host": AUTHORITY}
    if content_type is not None:
        headers["Content-Type"] = content_type
    headers.update(added)
    fields = {k.lower(): v for k, v in headers.items() if k.lower() in ("content-digest", "content-type")}
    covered = httpsig.parse_dictionary(headers["Signature-Input"], what="Signature-Input")["sanaq"]
    assert isinstance(covered, httpsig.InnerList)
    base = httpsig.signature_base(httpsig.HttpRequest(method, AUTHORITY, path, fields, query=query or None), covered)
    return {
        "name": name,
        "description": description,
        "signer": signer,
        "method": method,
        "authority": AUTHORITY,
        "path": path,
        "query": query,
        "headers": headers,
        "body": body.hex(),
        "now_s": CREATED,
        "signature_base": base.decode("ascii"),
        "expected": "ok",
    }


def _variant(base: dict[str, Any], name: str, description: str, expected: str, **changes: Any) -> dict[str, Any]:
    headers = dict(base["headers"])
    for k, v in changes.pop("headers", {}).items():
        if v is None:
            headers.pop(k, None)
        else:
            headers[k] = v
    out = {**base, **changes, "name": name, "description": description, "headers": headers, "expected": expected}
    out.pop("signature_base", None)
    return out


def _reordered(case: dict[str, Any]) -> dict[str, str]:
    """Signature-Input and Signature of ``case`` re-signed with the parameters in another order."""
    from wire import httpsig  # noqa: PLC0415

    covered = httpsig.parse_dictionary(case["headers"]["Signature-Input"], what="Signature-Input")["sanaq"]
    assert isinstance(covered, httpsig.InnerList)
    inner = httpsig.InnerList(covered.items, tuple(reversed(covered.params)))
    fields = {k.lower(): v for k, v in case["headers"].items() if k.lower() in ("content-digest", "content-type")}
    request = httpsig.HttpRequest(case["method"], case["authority"], case["path"], fields)
    signature = KEYS[case["signer"]].signing_key.sign(httpsig.signature_base(request, inner)).signature
    return {"Signature-Input": httpsig.serialize_dictionary({"sanaq": inner}),
            "Signature": httpsig.serialize_dictionary({"sanaq": httpsig.Item(bytes(signature))})}


def _flip_b64(value: str) -> str:
    inner = value.split("=:", 1)[1].rstrip(":")
    raw = bytearray(base64.b64decode(inner))
    raw[-1] ^= 1
    return "sanaq=:" + base64.b64encode(bytes(raw)).decode("ascii") + ":"


def httpsig_vectors() -> dict[str, Any] | None:
    if importlib.util.find_spec("wire.httpsig") is None:
        return None
    envelope = bytes.fromhex(envelope_vectors()[1][0]["envelope"])
    post = _request("post-batch", "tablet sends envelope case 'one-sheet'", method="POST", path="/v1/batches",
                    signer="tablet", body=envelope, content_type=BATCH_TYPE)
    get = _request("get-state", "tablet reads its sync state", method="GET", path=f"/v1/devices/{DEVICE}/state",
                   signer="tablet", nonce="Z2V0LXN0YXRlLW5vbmNlLTE")
    station = _request("post-batch-station", "station carries the same batch", method="POST", path="/v1/batches",
                       signer="station", body=envelope, content_type=BATCH_TYPE, nonce="c3RhdGlvbi1ub25jZS0x")
    assignments = _request("get-assignments-since", "tablet reads its assignments changed after version 3",
                           method="GET", path=f"/v1/devices/{DEVICE}/assignments", signer="tablet",
                           nonce="YXNzaWdubWVudHMtbm9uY2U", query="since=3")
    si = post["headers"]["Signature-Input"]
    cases = [
        post,
        get,
        station,
        _variant(post, "created-299s-late", "server clock 299 s ahead of created", "ok", now_s=CREATED + 299),
        _variant(post, "created-301s-late", "server clock 301 s ahead of created", "clock-skew", now_s=CREATED + 301),
        _variant(post, "created-301s-early", "server clock 301 s behind created", "clock-skew", now_s=CREATED - 301),
        _variant(post, "flipped-signature", "last signature byte flipped", "bad-signature",
                 headers={"Signature": _flip_b64(post["headers"]["Signature"])}),
        _variant(post, "body-changed", "one body byte changed; Content-Digest no longer matches",
                 "digest-mismatch", body=(bytes([envelope[0] ^ 1]) + envelope[1:]).hex()),
        _variant(post, "other-path", "the request went to another path than signed", "bad-signature",
                 path="/v1/custody"),
        _variant(post, "other-authority", "the request went to another host than signed", "bad-signature",
                 authority="evil.example", headers={"Host": "evil.example"}),
        _variant(post, "no-signature", "Signature and Signature-Input absent", "missing-signature",
                 headers={"Signature": None, "Signature-Input": None}),
        _variant(post, "other-label", "signature labelled sig1", "bad-signature-input",
                 headers={"Signature-Input": si.replace("sanaq=", "sig1=", 1),
                          "Signature": post["headers"]["Signature"].replace("sanaq=", "sig1=", 1)}),
        _variant(post, "wrong-tag", "tag other than sanaq-sync/v1", "bad-signature-input",
                 headers={"Signature-Input": si.replace('tag="sanaq-sync/v1"', 'tag="sanaq-sync/v2"')}),
        _variant(post, "expires-param", "an expires parameter is refused", "bad-signature-input",
                 headers={"Signature-Input": si + f";expires={CREATED + 60}"}),
        _variant(post, "alg-hmac", "alg other than ed25519", "bad-signature-input",
                 headers={"Signature-Input": si + ';alg="hmac-sha256"'}),
        _variant(post, "nonce-short", "nonce of 15 characters", "bad-signature-input",
                 headers={"Signature-Input": si.replace(NONCE, NONCE[:15])}),
        _variant(post, "missing-digest-component", "content-digest not covered", "bad-signature-input",
                 headers={"Signature-Input": si.replace(' "content-digest"', "")}),
        _variant(post, "unknown-key", "signed by a key that is not enrolled", "unknown-key",
                 signer="other_station", headers=_request("x", "", method="POST", path="/v1/batches",
                                                          signer="other_station", body=envelope,
                                                          content_type=BATCH_TYPE)["headers"]),
        _variant(get, "get-with-body", "a GET carrying a body", "bad-signature-input", body="00"),
        _variant(post, "created-300s-late", "server clock exactly 300 s ahead of created: inside the window", "ok",
                 now_s=CREATED + 300),
        _variant(post, "created-300s-early", "server clock exactly 300 s behind created: inside the window", "ok",
                 now_s=CREATED - 300),
        _variant(post, "params-reordered", "parameters in the order tag, nonce, keyid, created (signed so): "
                 "verifiers accept any order", "ok", headers=_reordered(post)),
        _variant(post, "signature-63-bytes", "Signature holds 63 bytes", "bad-signature-input",
                 headers={"Signature": "sanaq=:" + base64.b64encode(bytes(63)).decode("ascii") + ":"}),
        _variant(post, "signature-base64-unpadded", "Signature base64 without its padding (non-canonical)",
                 "bad-signature-input", headers={"Signature": post["headers"]["Signature"].replace("==:", ":")}),
        _variant(post, "query-string", "a query string on a signed POST", "bad-signature-input", query="x=1"),
        _variant(get, "query-not-covered", "a query string on a GET whose signature does not cover @query",
                 "bad-signature-input", query="since=3"),
        assignments,
        _variant(assignments, "query-changed", "the request went with another query than signed", "bad-signature",
                 query="since=4"),
        _variant(assignments, "query-dropped", "signed with @query, sent without a query", "bad-signature-input",
                 query=""),
        _variant(assignments, "query-characters", "a query with a character outside the profile's set",
                 "bad-signature-input", query="since=3%20"),
        _request("content-type-parameter", "Content-Type with a parameter, signed as sent", method="POST",
                 path="/v1/batches", signer="tablet", body=envelope, content_type=BATCH_TYPE + "; charset=binary",
                 nonce="Y3QtcGFyYW1ldGVyLW5vbmNl"),
    ]
    return {
        "vectors": "request_signature",
        "spec": "docs/protocol.md, section 'Request signatures (RFC 9421 profile)'",
        "procedure": [
            "Verify each request as the gateway does, with the server clock now_s, a window of 300 s and the "
            "enrolled keys in 'signers' (looked up by keyid). The first failure gives 'expected'. Nonce replay "
            "is not part of these vectors (it needs server state).",
            "For the valid cases 'signature_base' is the exact RFC 9421 signature base that was signed.",
        ],
        "window_s": 300,
        "signers": ["tablet", "station"],
        "keys": None,
        "cases": cases,
    }
