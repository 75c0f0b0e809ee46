"""The tablet client's exception tree, grouped by who is at fault.

Errors carry facts (device id, seq, sheet id, path, JSON path of a schema
violation), never sheet contents or key material::

    TabletError                     base; ``code`` is a stable string
    +-- SheetError                  a sheet offered to the outbox is unusable (caller's data)
    |   +-- InvalidSheetError       fails the census-sheet schema or canonical JSON
    |   +-- DuplicateSheetError     same sheet_id already queued with other contents
    +-- OutboxError                 the outbox file or its state (local storage)
    |   +-- OutboxSchemaError       not an outbox, or written by a newer version
    |   +-- DeviceMismatchError     outbox belongs to another device id
    |   +-- CoverageRefusedError    a receipt or sync state does not cover what it claims
    |                               (other device, unknown seq, other batch hash, seqs
    |                               this outbox never sealed); nothing was deleted
    +-- ExportError                 writing the USB export volume failed
    |   +-- NothingToExportError    no pending batch to export
    |   +-- ExportTargetError       target path unusable (too small, not a file/device)
    +-- IdentityError               the tablet home holds no usable identity
    |   +-- IdentityExistsError     ``init`` would overwrite an installed identity (use --force)
    +-- SyncError                   talking to the gateway did not give a usable answer
        +-- GatewayUnreachableError network, TLS or 5xx answers until the retry budget ran out
        +-- GatewayRefusedError     the gateway refused the request (``gateway_code`` from its problem)
        +-- ProofRefusedError       a receipt or sync state failed verification or names other
                                    data (forged, other key, other batch); nothing was deleted

The sync engine turns the ``SyncError`` subtree into a ``SyncReport`` (its
``stop`` names the code); only callers that need one answer (``init
--resume-from-gateway``, ``simulate``'s registry upload) see them raised.
"""

from __future__ import annotations

from typing import Any

from wire.errors import CodedError

__all__ = [
    "AlreadyEnumeratedError",
    "CoverageRefusedError",
    "DeviceMismatchError",
    "DuplicateSheetError",
    "ExportError",
    "ExportTargetError",
    "GatewayRefusedError",
    "GatewayUnreachableError",
    "IdentityError",
    "IdentityExistsError",
    "InvalidSheetError",
    "NothingToExportError",
    "OutboxError",
    "OutboxSchemaError",
    "ProofRefusedError",
    "SheetError",
    "SyncError",
    "TabletError",
    "UnknownEntryError",
]


class TabletError(CodedError):
    """Base of the tablet's errors; ``facts`` identify the object, never its contents."""

    code = "tablet-error"


class SheetError(TabletError):
    code = "sheet-error"


class UnknownEntryError(TabletError):
    """``fill --entry N`` names no entry of the held assignments."""

    code = "unknown-entry"


class AlreadyEnumeratedError(TabletError):
    """``fill --entry N`` of an entry already enumerated, without ``--anyway``."""

    code = "already-enumerated"


class InvalidSheetError(SheetError):
    code = "invalid-sheet"


class DuplicateSheetError(SheetError):
    code = "duplicate-sheet"


class OutboxError(TabletError):
    code = "outbox-error"


class OutboxSchemaError(OutboxError):
    code = "outbox-schema"


class DeviceMismatchError(OutboxError):
    code = "device-mismatch"


class CoverageRefusedError(OutboxError):
    code = "coverage-refused"


class ExportError(TabletError):
    code = "export-error"


class NothingToExportError(ExportError):
    code = "nothing-to-export"


class ExportTargetError(ExportError):
    code = "export-target"


class IdentityError(TabletError):
    code = "identity-error"


class IdentityExistsError(IdentityError):
    code = "identity-exists"


class SyncError(TabletError):
    """``code`` may be narrowed per instance: the gateway's problem code, or ``receipt-refused`` etc."""

    code = "sync-error"

    def __init__(self, message: str, *, code: str | None = None, **facts: Any) -> None:
        super().__init__(message, **{k: v for k, v in facts.items() if v is not None})
        if code is not None:
            self.code = code


class GatewayUnreachableError(SyncError):
    code = "unreachable"


class GatewayRefusedError(SyncError):
    """``code`` is the problem code the gateway answered with (``revoked``, ``conflict``...)."""

    code = "gateway-refused"


class ProofRefusedError(SyncError):
    code = "proof-refused"
