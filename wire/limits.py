"""Every size cap on untrusted protocol input, in one frozen dataclass.

Decoders take a ``Limits`` (default ``DEFAULT_LIMITS``) and check lengths
before any cryptography runs. Values are the protocol's normative maxima from
``docs/protocol.md``; a deployment may lower them, never raise them past what
the spec allows peers to send.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_LIMITS", "Limits"]


@dataclass(frozen=True, slots=True)
class Limits:
    max_envelope_bytes: int = 4 * 1024 * 1024
    max_ciphertext_bytes: int = 4 * 1024 * 1024 - 512
    max_records_per_batch: int = 1000
    max_sheet_bytes: int = 64 * 1024
    max_document_bytes: int = 16 * 1024 * 1024
    max_json_depth: int = 32
    max_manifest_bytes: int = 8 * 1024 * 1024
    max_manifest_batches: int = 100_000
    max_signature_header_bytes: int = 4096


DEFAULT_LIMITS = Limits()
