"""The daemon's configuration: one frozen dataclass tree, built once in ``__main__`` from TOML.

File: ``/etc/sanaq/usb-ingest.toml`` (``--config``). Every option has a default;
an unknown key is an error. Example::

    station_bundle = "/etc/sanaq/station"     # from `sanaq-keys enroll-station`
    gateway_url = ""                          # empty: the bundle's gateway_url
    state_dir = "/var/lib/sanaq-usb-ingest"   # spool, receipt log, snapshot cache, status.json
    snapshot_refresh_s = 900
    spool_min_free_bytes = 67108864         # refuse to spool when the disk gets this full
    receipt_keep_days = 90.0                # receipts.jsonl keeps whole receipts this long, then the index only
    spool_group_batches = 128               # a pull's batches become durable in groups of at most this many
    spool_group_bytes = 16777216            # ... or this many bytes (one flush per group; see ADR 0007)
    refuse_hid_composite = true             # refuse a "tablet" that is also a keyboard/mouse
    language = "kk"                           # what the technician reads: kk, ru or en
    log_level = "info"

    [limits]                                  # caps on what an untrusted volume may make us do
    max_files = 65536
    max_file_bytes = 4194304
    max_total_bytes = 17179869184
    max_manifest_bytes = 8388608
    max_fat_bytes = 8388608

    [forward]
    initial_backoff_s = 1.0
    max_backoff_s = 300.0
    request_timeout_s = 30.0
    concurrency = 2
    idle_poll_s = 30.0

Relative paths are resolved against the config file's directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from l10n import LANGUAGES
from runtime.toml_config import ConfigError, build, load_toml

__all__ = ["DEFAULT_CONFIG_PATH", "ForwardConfig", "IngestConfig", "VolumeLimits", "load_config"]

DEFAULT_CONFIG_PATH = Path("/etc/sanaq/usb-ingest.toml")
_LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True, slots=True)
class VolumeLimits:
    """Caps on an untrusted export volume; checked before anything is read.

    ``max_files`` bounds the entries of /SANAQ (a FAT directory holds at most
    65536), ``max_file_bytes`` one batch file (the protocol's envelope cap),
    ``max_total_bytes`` the sum of the listed batch sizes, ``max_fat_bytes``
    one FAT copy (bounds the memory and time pyfatfs spends parsing it).
    """

    max_files: int = 65_536
    max_file_bytes: int = 4 * 1024 * 1024
    max_total_bytes: int = 16 * 1024 * 1024 * 1024
    max_manifest_bytes: int = 8 * 1024 * 1024
    max_fat_bytes: int = 8 * 1024 * 1024

    def pull_memory_bound(self, files: int, *, fat_bytes: int | None = None, manifest_bytes: int | None = None) -> int:
        """The most one pull of a volume adds to the service's resident memory, in bytes (ADR 0007).

        ``24 x fat_bytes + 2 x manifest_bytes + 4 x max_file_bytes + 4 KiB x files``:
        pyfatfs parses one FAT copy (``fat_bytes``, the size of one FAT; at most
        ``max_fat_bytes``) into a Python list, ~22 bytes of memory per byte of a
        FAT16 while both copies are read; the manifest is held raw and as it is
        read; one batch file at a time is read, verified, written and read back
        (at most ``max_file_bytes`` each); and each batch file costs a small
        index (directory entry, manifest entry, the report's and the spool's
        entries). Nothing grows with the bytes already taken. Without the
        volume's own sizes, the limits: with the shipped ones 224 MiB plus
        4 KiB per file; a 50,000-sheet tablet (5,000 files of 10 sheets, FAT
        ~90 KiB, manifest ~0.6 MiB) at most ~39 MiB over the resting service
        (``tests/usb_ingest/test_usb_fifty_thousand.py`` measures it).
        """
        fat = self.max_fat_bytes if fat_bytes is None else fat_bytes
        manifest = self.max_manifest_bytes if manifest_bytes is None else manifest_bytes
        return 24 * fat + 2 * manifest + 4 * self.max_file_bytes + 4096 * files


@dataclass(frozen=True, slots=True)
class ForwardConfig:
    """How the forwarder talks to the gateway.

    Back-off doubles from ``initial_backoff_s`` up to ``max_backoff_s`` with
    full jitter; a ``Retry-After`` is honoured up to ``max_backoff_s``.
    ``idle_poll_s`` is how often an idle forwarder looks at the spool even
    without a wake-up (entries moved in by hand, a restarted gateway).
    """

    initial_backoff_s: float = 1.0
    max_backoff_s: float = 300.0
    request_timeout_s: float = 30.0
    concurrency: int = 2
    idle_poll_s: float = 30.0


@dataclass(frozen=True, slots=True)
class IngestConfig:
    station_bundle: Path = Path("/etc/sanaq/station")
    bundle_passphrase_file: Path | None = None
    gateway_url: str = ""
    ca_cert: Path | None = None
    state_dir: Path = Path("/var/lib/sanaq-usb-ingest")
    snapshot_refresh_s: float = 900.0
    spool_min_free_bytes: int = 64 * 1024 * 1024
    receipt_keep_days: float = 90.0
    spool_group_batches: int = 128
    spool_group_bytes: int = 16 * 1024 * 1024
    refuse_hid_composite: bool = True
    # the language of the status view, the device messages and the pull report (kk, ru or en)
    language: str = "kk"
    log_level: str = "info"
    limits: VolumeLimits = field(default_factory=VolumeLimits)
    forward: ForwardConfig = field(default_factory=ForwardConfig)

    @property
    def spool_dir(self) -> Path:
        return self.state_dir / "spool"

    @property
    def status_path(self) -> Path:
        return self.state_dir / "status.json"

    @property
    def snapshot_path(self) -> Path:
        return self.state_dir / "registry.snapshot"

    @property
    def receipt_log_path(self) -> Path:
        return self.state_dir / "receipts.jsonl"

    @property
    def receipt_keep_ms(self) -> int:
        return int(self.receipt_keep_days * 86_400_000)


def _resolve(path: Path | None, base: Path) -> Path | None:
    if path is None or path.is_absolute():
        return path
    return base / path


def _credential(path: Path | None, base: Path) -> Path | None:
    """A relative secret path: inside ``$CREDENTIALS_DIRECTORY`` under systemd, else next to the config.

    ``station_bundle = "."`` therefore names the credentials directory itself,
    where ``LoadCredential=`` puts the bundle's files.
    """
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if path is not None and not path.is_absolute() and creds:
        return Path(creds) / path
    return _resolve(path, base)


def _check(cfg: IngestConfig) -> None:
    if cfg.log_level not in _LOG_LEVELS:
        raise ConfigError(f"log_level must be one of {', '.join(_LOG_LEVELS)}")
    if cfg.language not in LANGUAGES:
        raise ConfigError(f"language must be one of {', '.join(LANGUAGES)}")
    if cfg.gateway_url and not cfg.gateway_url.startswith(("https://", "http://")):
        raise ConfigError("gateway_url must start with https:// (http:// only for tests)")
    if cfg.snapshot_refresh_s <= 0:
        raise ConfigError("snapshot_refresh_s must be positive")
    if cfg.receipt_keep_days < 0:
        raise ConfigError("receipt_keep_days must not be negative")
    if cfg.spool_group_batches < 1 or cfg.spool_group_bytes < 1:
        raise ConfigError("spool_group_batches and spool_group_bytes must be positive")
    for name in ("max_files", "max_file_bytes", "max_total_bytes", "max_manifest_bytes", "max_fat_bytes"):
        if getattr(cfg.limits, name) < 1:
            raise ConfigError(f"limits.{name} must be positive")
    fwd = cfg.forward
    if not 0 < fwd.initial_backoff_s <= fwd.max_backoff_s:
        raise ConfigError("forward.initial_backoff_s must be positive and at most forward.max_backoff_s")
    if fwd.request_timeout_s <= 0 or fwd.idle_poll_s <= 0 or not 1 <= fwd.concurrency <= 16:
        raise ConfigError("forward: timeouts must be positive and concurrency within 1..16")


def load_config(path: Path | None) -> IngestConfig:
    """Read and validate the TOML file (``None``: all defaults). Raises ``ConfigError``."""
    cfg = build(IngestConfig, load_toml(path), "usb-ingest config")
    base = path.parent if path is not None else Path.cwd()
    cfg = replace(
        cfg,
        station_bundle=_credential(cfg.station_bundle, base) or cfg.station_bundle,
        bundle_passphrase_file=_credential(cfg.bundle_passphrase_file, base),
        ca_cert=_credential(cfg.ca_cert, base),
        state_dir=_resolve(cfg.state_dir, base) or cfg.state_dir,
    )
    _check(cfg)
    return cfg
