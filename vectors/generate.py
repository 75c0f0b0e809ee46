#!/usr/bin/env python3
"""Write the language-neutral test vectors of the Sanaq Sync protocol into ``vectors/*.json``.

Deterministic: keys come from SHA-256 of public labels (``gen_keys.py``), the
sealed-box ephemeral secrets likewise, times are constants, and Ed25519
signatures are deterministic, so two runs write identical bytes.

    python vectors/generate.py           write the files
    python vectors/generate.py --check   exit 1 if any file on disk differs (for CI)

The valid cases are built independently of ``wire`` (``struct``/``hashlib``)
and then cross-checked against ``wire``'s own encoders, so a drift in either
stops the generator. ``docs/protocol.md`` section "Test vectors" describes the
files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# Published byte-for-byte copies of files the code loads (one source, kept equal by --check):
# the census sheet's JSON Schema, next to its vectors for app teams.
COPIES = {"census-sheet-1.schema.json": HERE.parent / "wire" / "schemas" / "census-sheet-1.schema.json"}
if str(HERE) not in sys.path:  # allow "import generate" from tests as well as running the script
    sys.path.insert(0, str(HERE))

from gen_canonical import canonical_vectors  # noqa: E402
from gen_certificates import certificate_vectors  # noqa: E402
from gen_documents import (  # noqa: E402
    access_codes_vectors,
    assignments_vectors,
    receipt_vectors,
    sync_state_vectors,
)
from gen_ed25519 import ed25519_vectors  # noqa: E402
from gen_envelope import envelope_vectors  # noqa: E402
from gen_httpsig import httpsig_vectors  # noqa: E402
from gen_keys import KEYS, SEED_PREFIX, derive, keys_json  # noqa: E402
from gen_registry import custody_vectors, manifest_vectors, snapshot_vectors  # noqa: E402
from gen_sheets import sheet_vectors  # noqa: E402
from nacl.signing import SigningKey  # noqa: E402

import wire  # noqa: E402

__all__ = ["build_all", "main", "render"]

_KEY_REFERENCES = ("device_key", "signer", "data_key", "station_key", "root", "key")


def _referenced_keys(node: Any, found: set[str]) -> set[str]:
    """Names of keys a vector file refers to, so each file carries the keys it needs."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k in _KEY_REFERENCES and isinstance(v, str) and v in KEYS:
                found.add(v)
            elif k in ("trusted", "signers", "revoked") and isinstance(v, list):
                found.update(x for x in v if x in KEYS)
            else:
                _referenced_keys(v, found)
    elif isinstance(node, list):
        for item in node:
            _referenced_keys(item, found)
    return found


def _cross_check(valid_envelopes: list[dict[str, Any]]) -> None:
    """The independently built valid envelopes must equal what ``wire.seal_batch`` writes."""
    for case in valid_envelopes:
        i = case["inputs"]
        made = wire.seal_batch(
            device_id=i["device_id"], seq=i["seq"], sheets=i["sheets"], sealed_at_ms=i["sealed_at_ms"],
            device_key=SigningKey(KEYS[i["device_key"]].secret), data_public_key=KEYS["data"].public,
            ephemeral_secret=bytes.fromhex(i["ephemeral_secret"]), schema=i["schema"],
        )
        if made.hex() != case["envelope"]:
            raise SystemExit(f"wire.seal_batch disagrees with vector {case['name']!r}")


def build_all() -> dict[str, dict[str, Any]]:
    """File name -> content of every vector file."""
    envelope, valid = envelope_vectors()
    _cross_check(valid)
    manifest = manifest_vectors()
    manifest_doc = bytes.fromhex(manifest["volume"]["files"][0]["content"])
    files: dict[str, dict[str, Any]] = {
        "envelope.json": envelope,
        "receipt.json": receipt_vectors(valid),
        "snapshot.json": snapshot_vectors(),
        "manifest.json": manifest,
        "custody.json": custody_vectors(manifest_doc),
        "sync_state.json": sync_state_vectors(),
        "access_codes.json": access_codes_vectors(),


        "assignments.json": assignments_vectors(),
        "canonical_json.json": canonical_vectors(),
        "sheets.json": sheet_vectors(),
        "ed25519.json": ed25519_vectors(),
        "certificate.json": certificate_vectors(),
    }
    request = httpsig_vectors()
    if request is not None:
        files["request_signature.json"] = request
    for content in files.values():
        if "keys" in content:
            content["keys"] = keys_json(*sorted(_referenced_keys(content, set())))
    files["keys.json"] = {
        "vectors": "keys",
        "spec": "docs/protocol.md, sections 'Keys and key ids' and 'Test vectors'",
        "derivation": f"secret = SHA-256({SEED_PREFIX.decode()!r} || label); Ed25519: RFC 8032 seed; "
        "X25519: secret scalar. key_id = SHA-256('sanaq-sync/v1/key-id' || 0x00 || public_key)[0:16].",
        "ephemeral_secrets": "each sealed box uses SHA-256('sanaq-sync/v1/test-vector/ephemeral/' || label); "
        "the secret is given in full wherever bytes are to be reproduced",
        "example_derivation": {"label": "root", "input": (SEED_PREFIX + b"root").hex(), "seed": derive("root").hex(),
                               "key_id_input": (b"sanaq-sync/v1/key-id\x00" + KEYS["root"].public).hex(),
                               "key_id_sha256": hashlib.sha256(b"sanaq-sync/v1/key-id\x00" + KEYS["root"].public)
                               .hexdigest()},
        "keys": keys_json(),
    }
    return files


def render(content: dict[str, Any]) -> str:
    return json.dumps(content, indent=2, ensure_ascii=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the files on disk, write nothing")
    parser.add_argument("--out", type=Path, default=HERE, help="directory to write to (default: this one)")
    args = parser.parse_args(argv)
    files = build_all()
    texts = {name: render(content) for name, content in files.items()}
    texts |= {name: source.read_text(encoding="utf-8") for name, source in COPIES.items()}
    stale = sorted(p.name for p in args.out.glob("*.json") if p.name not in texts) if args.check else []
    for name, text in texts.items():
        path = args.out / name
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
            continue
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    if stale:
        print("vectors out of date or unknown (run: python vectors/generate.py): " + ", ".join(stale),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
