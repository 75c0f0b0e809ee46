"""The USB ingest daemon's exception tree, grouped by who is at fault.

Every error has a stable ``code`` (it appears in logs, in the pull report and
in the technician view) and ``facts`` that identify the object (device node,
file name, device id, seq), never sheet contents or key material::

    IngestError                     base; never raised itself
    +-- VolumeError                 the medium cannot be read as an export volume
    |   +-- CorruptVolume           not a readable FAT volume (wraps every pyfatfs/struct/... error)
    |   +-- NotAnExportVolume       readable FAT, but no /SANAQ/MANIFEST.SQM
    |   +-- LimitExceeded           more files, bigger files or more bytes than the config allows
    |   +-- DeviceGone              reading failed with an OS error (unplugged mid-transfer, EIO)
    +-- ContentRefused              the tablet's signed content does not hold together
    |   +-- ManifestInvalid         the manifest does not decode or its signature does not verify
    |   +-- ManifestMismatch        the files on the volume disagree with the manifest
    |   +-- BatchInvalid            a batch file fails decoding, signature, or its manifest entry
    |   +-- BatchConflict           the station took another batch under this (device, seq) before
    +-- TrustError                  the station cannot (or must not) trust the signer
    |   +-- SnapshotMissing         no registry snapshot held
    |   +-- SnapshotExpired         the held snapshot is out of date: ingestion stops until refreshed
    |   +-- UnknownTablet           the manifest names a device the registry does not list
    |   +-- RegistryStale           ... and the gateway could not be asked for a newer registry
    |   +-- TabletNotInService      the tablet is revoked, returned or lost
    |   +-- KeyMismatch             the manifest is signed by another key than the tablet's enrolled one
    +-- StationError                this machine is at fault
    |   +-- SpoolError              the spool cannot be written or read (disk full, I/O error)
    |   +-- StateLocked             another sanaq-usb-ingest process uses the same state directory
    |   +-- StationSetupError       the station bundle or configuration cannot be used
    |   +-- RequeueRefused          a technician's requeue names no rejected entry, or one delivered/pending since
    +-- GatewayError                the gateway could not be reached or answered unexpectedly
        +-- GatewayUnreachable      network error, timeout, 5xx, 429 (transient; ``retry_after_s``)
        +-- GatewayRefused          a 4xx problem answer (``status``, ``problem_code``, ``server_time_ms``)
        +-- BadReceipt              a 200 answer whose receipt does not verify or covers another batch
"""

from __future__ import annotations

from typing import Any

from wire.errors import CodedError

__all__ = [
    "BadReceipt",
    "BatchConflict",
    "BatchInvalid",
    "ContentRefused",
    "CorruptVolume",
    "DeviceGone",
    "GatewayError",
    "GatewayRefused",
    "GatewayUnreachable",
    "IngestError",
    "KeyMismatch",
    "LimitExceeded",
    "ManifestInvalid",
    "ManifestMismatch",
    "NotAnExportVolume",
    "RegistryStale",
    "RequeueRefused",
    "SnapshotExpired",
    "SnapshotMissing",
    "SpoolError",
    "StateLocked",
    "StationError",
    "StationSetupError",
    "TabletNotInService",
    "TrustError",
    "UnknownTablet",
    "VolumeError",
]


class IngestError(CodedError):
    """Base of the daemon's errors; ``code`` is stable, ``facts`` identify the object."""

    code = "ingest-error"


class VolumeError(IngestError):
    code = "volume-error"


class CorruptVolume(VolumeError):
    code = "corrupt-volume"


class NotAnExportVolume(VolumeError):
    code = "not-an-export-volume"


class LimitExceeded(VolumeError):
    code = "limit-exceeded"


class DeviceGone(VolumeError):
    code = "device-gone"


class ContentRefused(IngestError):
    code = "content-refused"


class ManifestInvalid(ContentRefused):
    code = "manifest-invalid"


class ManifestMismatch(ContentRefused):
    """The volume's file set or a file's bytes disagree with the signed manifest.

    ``kind`` is one of ``missing`` (listed, absent), ``extra`` (present, not
    listed or not a protocol name; never read), ``size`` (directory size differs)
    and ``hash`` (SHA-256 of the bytes differs).
    """

    code = "manifest-mismatch"

    def __init__(self, message: str, *, kind: str, file: str, **facts: Any) -> None:
        super().__init__(message, kind=kind, file=file, **facts)
        self.kind = kind
        self.file = file


class BatchInvalid(ContentRefused):
    code = "batch-invalid"


class BatchConflict(ContentRefused):
    code = "batch-conflict"


class TrustError(IngestError):
    code = "trust-error"


class SnapshotMissing(TrustError):
    code = "trust-missing"


class SnapshotExpired(TrustError):
    code = "trust-expired"


class UnknownTablet(TrustError):
    code = "unknown-tablet"


class RegistryStale(TrustError):
    """A device this station's snapshot does not list, and the gateway could not be asked: not an alarm."""

    code = "registry-stale"


class TabletNotInService(TrustError):
    code = "tablet-not-in-service"


class KeyMismatch(TrustError):
    code = "key-mismatch"


class StationError(IngestError):
    code = "station-error"


class SpoolError(StationError):
    code = "spool-error"


class StateLocked(StationError):
    code = "state-locked"


class StationSetupError(StationError):
    code = "station-setup"


class RequeueRefused(StationError):
    code = "requeue-refused"


class GatewayError(IngestError):
    code = "gateway-error"


class GatewayUnreachable(GatewayError):
    code = "gateway-unreachable"

    def __init__(self, message: str, *, retry_after_s: float | None = None, **facts: Any) -> None:
        super().__init__(message, **facts)
        self.retry_after_s = retry_after_s


class GatewayRefused(GatewayError):
    code = "gateway-refused"

    def __init__(
        self, message: str, *, status: int, problem_code: str, server_time_ms: int | None = None, **facts: Any
    ) -> None:
        super().__init__(message, status=status, problem_code=problem_code, **facts)
        self.status = status
        self.problem_code = problem_code
        self.server_time_ms = server_time_ms


class BadReceipt(GatewayError):
    code = "bad-receipt"
