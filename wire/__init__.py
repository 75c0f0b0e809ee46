"""The Sanaq Sync wire protocol, pure: bytes, keys and ``now`` in; typed values out or an error.

No I/O, no asyncio, no logging, no clock, no randomness: callers pass times in
milliseconds and fresh random bytes. ``docs/protocol.md`` is the normative
specification; ``vectors/`` holds the shared test vectors.
"""

from __future__ import annotations

from . import canonical, errors
from .accesscodes import AccessCodeChange, AccessCodes, make_access_codes, parse_access_codes
from .assignments import Assignment, Assignments, make_assignments, parse_assignments
from .certificate import (
    Certificate,
    CertificateKey,
    carrier_from_text,
    carrier_to_text,
    make_certificate,
    make_certificate_key,
    verify_certificate,
)
from .documents import DocKind, SignedDocument, decode_document, sign_document, verify_document
from .envelope import (
    BatchHeader,
    Envelope,
    OpenedBatch,
    VerifiedEnvelope,
    check_device_id,
    decode_envelope,
    open_batch,
    open_envelope,
    seal_batch,
    verify_envelope,
)
from .keyids import key_id, key_id_hex
from .limits import DEFAULT_LIMITS, Limits
from .manifest import (
    EXPORT_DIR,
    MANIFEST_NAME,
    VOLUME_LABEL,
    CustodyRecord,
    Manifest,
    ManifestEntry,
    UsbHints,
    batch_file_name,
    make_custody,
    make_manifest,
    parse_custody,
    parse_manifest,
    peek_manifest_signer,
)
from .receipt import Receipt, make_receipt, parse_receipt
from .snapshot import (
    KeyEntry,
    RegistrySnapshot,
    StationEntry,
    TabletEntry,
    WebServiceEntry,
    accept_snapshot,
    make_snapshot,
)
from .syncstate import SyncState, compute_gaps, make_sync_state, parse_sync_state

__all__ = [
    "AccessCodeChange",
    "AccessCodes",
    "DEFAULT_LIMITS",
    "EXPORT_DIR",
    "MANIFEST_NAME",
    "VOLUME_LABEL",
    "Assignment",
    "Assignments",
    "BatchHeader",
    "Certificate",
    "CertificateKey",
    "CustodyRecord",
    "DocKind",
    "Envelope",
    "KeyEntry",
    "Limits",
    "Manifest",
    "ManifestEntry",
    "OpenedBatch",
    "Receipt",
    "RegistrySnapshot",
    "SignedDocument",
    "StationEntry",
    "SyncState",
    "TabletEntry",
    "UsbHints",
    "VerifiedEnvelope",
    "WebServiceEntry",
    "accept_snapshot",
    "batch_file_name",
    "canonical",
    "carrier_from_text",
    "carrier_to_text",
    "check_device_id",
    "compute_gaps",
    "decode_document",
    "decode_envelope",
    "errors",
    "key_id",
    "key_id_hex",
    "make_access_codes",
    "make_assignments",
    "make_certificate",
    "make_certificate_key",
    "make_custody",
    "make_manifest",
    "make_receipt",
    "make_snapshot",
    "make_sync_state",
    "open_batch",
    "open_envelope",
    "parse_access_codes",


    "parse_assignments",
    "parse_custody",
    "parse_manifest",
    "parse_receipt",
    "parse_sync_state",
    "peek_manifest_signer",
    "seal_batch",
    "sign_document",
    "verify_certificate",
    "verify_document",
    "verify_envelope",
]
