"""Gateway configuration: one frozen dataclass tree, built once in ``__main__`` from TOML.

Every option has a default that works on a laptop. Key paths that are relative
are resolved against ``$CREDENTIALS_DIRECTORY`` when systemd's
``LoadCredential=`` provides one, else against the config file's directory.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from runtime.toml_config import ConfigError, build, load_toml
from wire.census_sheet import CensusMoment

from .staff.config import StaffConfig

__all__ = [
    "LOG_LEVELS", "MAX_INFLIGHT_PER_DEVICE", "MAX_WORKERS", "CensusConfig", "CommitConfig", "GatewayConfig",
    "KeysConfig", "LimitsConfig", "ServerConfig", "load_config", "usable_cpus",
]

LOG_LEVELS = ("debug", "info", "warning", "error")
MAX_WORKERS = 128  # server.workers above this is a typo, not a machine (docs/adr/0010-all-cores.md)
MAX_INFLIGHT_PER_DEVICE = 1024  # gateway.device_slots: every lock offset must fit in off_t


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, e.g. systemd ``CPUAffinity=``): the default workers."""
    return max(1, len(os.sched_getaffinity(0)))


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8443
    plain_http: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    shutdown_timeout_s: float = 30.0
    idle_timeout_s: float = 75.0
    log_level: str = "info"
    instance_id: str = "gw-1"
    registry_staleness_s: float = 5.0
    # worker processes sharing the listener (gateway.supervisor); 1: one process, no supervisor
    workers: int = field(default_factory=usable_cpus)


@dataclass(frozen=True, slots=True)
class KeysConfig:
    root_public_key: str = ""
    root_public_key_file: Path | None = None
    data_key: Path = Path("data.key")
    previous_data_keys: tuple[Path, ...] = ()
    receipt_key: Path = Path("gateway.key")
    passphrase_file: Path | None = None
    bootstrap_snapshot: Path | None = None


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    max_body_bytes: int = 4 * 1024 * 1024
    max_sheets_per_batch: int = 1000
    max_header_bytes: int = 8190
    max_inflight_per_device: int = 2
    request_window_s: int = 300
    max_concurrent_ingest: int = 128
    retry_after_s: int = 5
    body_timeout_s: float = 60.0
    body_min_rate_bytes_s: int = 1024
    body_rate_grace_s: float = 5.0
    max_buffered_body_bytes: int = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class CommitConfig:
    max_group: int = 256
    max_wait_ms: float = 2.0


@dataclass(frozen=True, slots=True)
class CensusConfig:
    """The census moment the sheet date rules use (docs/census-sheet.md); the founding order's by default."""

    moment: str = "2020-10-01"
    utc_offset_minutes: int = 360

    def census_moment(self) -> CensusMoment:
        try:
            return CensusMoment.parse(self.moment, self.utc_offset_minutes)
        except ValueError as e:
            raise ConfigError(f"census: {e}") from e


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    database: str = "sqlite:///var/lib/sanaq-gateway/census.db"
    server: ServerConfig = field(default_factory=ServerConfig)
    keys: KeysConfig = field(default_factory=KeysConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    commit: CommitConfig = field(default_factory=CommitConfig)
    staff: StaffConfig = field(default_factory=StaffConfig)
    census: CensusConfig = field(default_factory=CensusConfig)

    @property
    def sqlite_path(self) -> Path | None:
        if self.database.startswith("sqlite:///"):
            return Path(self.database[len("sqlite://") :])
        if self.database.startswith("sqlite:"):
            return Path(self.database[len("sqlite:") :])
        return None


def _resolve(path: Path | None, base: Path) -> Path | None:
    if path is None or path.is_absolute():
        return path
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if creds and (Path(creds) / path).exists():
        return Path(creds) / path
    return base / path


def load_config(path: Path | None) -> GatewayConfig:
    """Read and validate the TOML file (``None``: all defaults). Raises ``ConfigError``."""
    cfg = build(GatewayConfig, load_toml(path), "gateway config")
    base = path.parent if path is not None else Path.cwd()
    keys = KeysConfig(
        root_public_key=cfg.keys.root_public_key,
        root_public_key_file=_resolve(cfg.keys.root_public_key_file, base),
        data_key=_resolve(cfg.keys.data_key, base) or cfg.keys.data_key,
        previous_data_keys=tuple(_resolve(p, base) or p for p in cfg.keys.previous_data_keys),
        receipt_key=_resolve(cfg.keys.receipt_key, base) or cfg.keys.receipt_key,
        passphrase_file=_resolve(cfg.keys.passphrase_file, base),
        bootstrap_snapshot=_resolve(cfg.keys.bootstrap_snapshot, base),
    )
    _check(cfg)
    server = cfg.server
    if not server.plain_http and (server.tls_cert is None or server.tls_key is None):
        raise ConfigError("server.tls_cert and server.tls_key are required unless server.plain_http = true")
    server = dataclasses.replace(
        server, tls_cert=_resolve(server.tls_cert, base), tls_key=_resolve(server.tls_key, base)
    )
    if not cfg.database.startswith(("sqlite:", "postgresql://", "postgres://")):
        raise ConfigError("database must be sqlite:///PATH or postgresql://...")
    cfg.census.census_moment()
    staff = dataclasses.replace(
        cfg.staff,
        db_path=_resolve(cfg.staff.db_path, base),
        pdf_font=_resolve(cfg.staff.pdf_font, base) or cfg.staff.pdf_font,
        codes_pepper_file=_resolve(cfg.staff.codes_pepper_file, base),


        certificate_key_dir=_resolve(cfg.staff.certificate_key_dir, base),
    )
    return GatewayConfig(
        database=cfg.database, server=server, keys=keys, limits=cfg.limits, commit=cfg.commit, staff=staff,
        census=cfg.census,
    )


_POSITIVE_LIMITS = (
    "max_body_bytes",
    "max_sheets_per_batch",
    "max_header_bytes",
    "request_window_s",
    "max_concurrent_ingest",
    "retry_after_s",
    "body_timeout_s",
    "body_min_rate_bytes_s",
    "max_buffered_body_bytes",
)


def _check(cfg: GatewayConfig) -> None:
    """Refuse values that would make the service misbehave; each message names its option."""
    server = cfg.server
    if server.log_level not in LOG_LEVELS:
        raise ConfigError(f"server.log_level must be one of {', '.join(LOG_LEVELS)} (got {server.log_level!r})")
    for name in ("shutdown_timeout_s", "idle_timeout_s", "registry_staleness_s"):
        if getattr(server, name) <= 0:
            raise ConfigError(f"server.{name} must be positive")
    for name in _POSITIVE_LIMITS:
        if getattr(cfg.limits, name) <= 0:
            raise ConfigError(f"limits.{name} must be positive")
    if cfg.limits.body_rate_grace_s < 0 or cfg.limits.max_inflight_per_device < 0:
        raise ConfigError("limits.body_rate_grace_s and limits.max_inflight_per_device must not be negative")
    if not 1 <= server.workers <= MAX_WORKERS:
        raise ConfigError(f"server.workers must be between 1 and {MAX_WORKERS} (got {server.workers})")
    if cfg.limits.max_inflight_per_device > MAX_INFLIGHT_PER_DEVICE:
        raise ConfigError(f"limits.max_inflight_per_device must be at most {MAX_INFLIGHT_PER_DEVICE}")
    if cfg.limits.max_buffered_body_bytes < cfg.limits.max_body_bytes:
        raise ConfigError("limits.max_buffered_body_bytes must be at least limits.max_body_bytes")
