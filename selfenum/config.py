"""``SelfenumConfig``: built once in ``__main__`` from ``/etc/sanaq/selfenum.toml``; every option has a default.

Defaults follow the founding order (online self-enumeration 1-15 October 2020,
Astana time, UTC+05:00) and run on a laptop: plain HTTP on 127.0.0.1:8450,
state under ``./selfenum-state``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from runtime.toml_config import ConfigError, build, load_toml

__all__ = ["CertificatesConfig", "ForwardConfig", "LimitsConfig", "SelfenumConfig", "ServerConfig",
           "ThrottleConfig", "WindowConfig", "load_config"]

DEJAVU_SANS = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8450
    public_url: str = "http://127.0.0.1:8450"
    # Behind the TLS-terminating proxy in production: cookies are Secure and HSTS is sent unless this is set.
    insecure_cookies: bool = False
    trusted_proxy: bool = False


@dataclass(frozen=True, slots=True)
class WindowConfig:
    opens_at: str = "2020-10-01T00:00:00+05:00"
    closes_at: str = "2020-10-16T00:00:00+05:00"
    census_moment: str = "2020-10-01"

    def opens(self) -> datetime:
        return _instant(self.opens_at, "window.opens_at")

    def closes(self) -> datetime:
        return _instant(self.closes_at, "window.closes_at")

    def opens_ms(self) -> int:
        return int(self.opens().timestamp() * 1000)

    def closes_ms(self) -> int:
        return int(self.closes().timestamp() * 1000)

    def moment(self) -> date:
        try:
            return date.fromisoformat(self.census_moment)
        except ValueError as e:
            raise ConfigError("window.census_moment must be YYYY-MM-DD") from e


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    max_body_bytes: int = 16 * 1024
    max_field_chars: int = 100
    session_idle_s: int = 3600


@dataclass(frozen=True, slots=True)
class ThrottleConfig:
    """Wrong codes per address, sign-ins per code, in one sliding window; a right code costs its holder nothing."""

    per_address: int = 10
    per_address_window_s: float = 3600.0
    per_code_signins: int = 30


@dataclass(frozen=True, slots=True)
class ForwardConfig:
    request_timeout_s: float = 15.0
    initial_backoff_s: float = 1.0
    max_backoff_s: float = 300.0
    # The gateway admits limits.max_inflight_per_device (default 2) batches of one device at once, and the
    # web service is one device: more in flight would only earn 429s.
    max_inflight: int = 2
    registry_refresh_s: float = 900.0  # GET /v1/registry: receipt keys may rotate during the window
    # GET /v1/web/access-codes/since/N: codes minted, revoked or re-issued on the staff dashboard
    codes_poll_s: float = 30.0


@dataclass(frozen=True, slots=True)
class CertificatesConfig:
    """Participation certificates (docs/selfenum.md): the verification page always; downloads with a key."""

    # directory from `sanaq-keys certificate-key create` (certificate.key, certificate-key.doc); unset: no downloads
    key_dir: Path | None = None
    # the issuing authority's name printed on the certificate (not signed)
    issuer_name: str = "Статистика департаменті / Департамент статистики"


@dataclass(frozen=True, slots=True)
class SelfenumConfig:
    web_bundle: Path = Path("web-bundle")
    gateway_url: str = "https://127.0.0.1:8443"
    state_dir: Path = Path("selfenum-state")
    pdf_font: Path = DEJAVU_SANS
    # The access-code pepper. Default: codes.pepper in state_dir, made on first use. When the staff dashboard
    # mints codes, point this at a copy of the dashboard's codes.pepper (it must exist: never made here).
    codes_pepper_file: Path | None = None
    # Contacts respondents leave for a reminder are sealed under contacts.key (state_dir) and deleted on
    # submission and when the window closes.
    log_level: str = "info"
    server: ServerConfig = field(default_factory=ServerConfig)
    window: WindowConfig = field(default_factory=WindowConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    throttle: ThrottleConfig = field(default_factory=ThrottleConfig)
    forward: ForwardConfig = field(default_factory=ForwardConfig)
    certificates: CertificatesConfig = field(default_factory=CertificatesConfig)

    def check(self) -> SelfenumConfig:
        if self.window.opens() >= self.window.closes():
            raise ConfigError("window.opens_at must be before window.closes_at")
        self.window.moment()
        if self.throttle.per_address < 1 or self.limits.max_body_bytes < 1024:
            raise ConfigError("throttle.per_address must be >= 1 and limits.max_body_bytes >= 1024")
        if self.forward.codes_poll_s <= 0:
            raise ConfigError("forward.codes_poll_s must be > 0")
        return self


def _instant(text: str, where: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as e:
        raise ConfigError(f"{where} must be an ISO 8601 instant with offset") from e
    if value.tzinfo is None:
        raise ConfigError(f"{where} must carry a UTC offset (Astana is +05:00)")
    return value


def load_config(path: Path | None) -> SelfenumConfig:
    return build(SelfenumConfig, load_toml(path)).check()
