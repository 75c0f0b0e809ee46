"""Staff dashboard configuration: one frozen dataclass, the ``[staff]`` table of gateway.toml.

Every option has a default that works on a laptop. ``db_path`` defaults to
``staff.db`` next to the SQLite census database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from .errors import StaffConfigError

__all__ = ["DEJAVU_SANS", "StaffConfig"]

DEJAVU_SANS = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


@dataclass(frozen=True, slots=True)
class StaffConfig:
    enabled: bool = True
    db_path: Path | None = None
    # sessions: absolute lifetime and inactivity limit
    session_ttl_s: int = 12 * 3600
    session_idle_s: int = 2 * 3600
    # login throttling: failures counted in a sliding window, per username and per client address
    login_window_s: int = 900
    login_max_failures_per_user: int = 5
    login_max_failures_per_address: int = 20
    max_concurrent_password_checks: int = 2
    # live dashboard
    refresh_interval_s: float = 2.0
    full_refresh_s: float = 30.0
    heartbeat_s: float = 15.0
    fresh_h: int = 24
    silent_h: int = 72
    chart_days: int = 14
    utc_offset_minutes: int = 300
    fleet_rows: int = 500
    recent_rows: int = 50
    # imports and printing
    max_csv_bytes: int = 16 * 1024 * 1024
    max_csv_rows: int = 200_000
    pdf_font: Path = DEJAVU_SANS
    act_prefix: str = "AT"

    def __post_init__(self) -> None:
        if self.session_ttl_s <= 0 or self.session_idle_s <= 0:
            raise StaffConfigError("staff.session_ttl_s and staff.session_idle_s must be > 0")
        if not 0 < self.fresh_h < self.silent_h:
            raise StaffConfigError("staff.fresh_h must be > 0 and < staff.silent_h")
        if self.refresh_interval_s <= 0 or self.full_refresh_s <= 0 or self.heartbeat_s <= 0:
            raise StaffConfigError("staff refresh and heartbeat intervals must be > 0")
        if self.login_max_failures_per_user < 1 or self.login_max_failures_per_address < 1:
            raise StaffConfigError("staff login failure limits must be >= 1")
        if not self.act_prefix.isalnum():
            raise StaffConfigError("staff.act_prefix must be letters and digits")

    def staff_db(self, census_sqlite_path: Path | None) -> Path:
        """Where staff.db lives: ``db_path`` or next to the SQLite census database."""
        if self.db_path is not None:
            return self.db_path
        if census_sqlite_path is None:
            raise StaffConfigError("staff.db_path must be set when the census store is not SQLite")
        return census_sqlite_path.parent / "staff.db"

    def local_text(self, at_ms: int | None, *, seconds: bool = False) -> str:
        """``YYYY-MM-DD HH:MM`` in the census local time zone ('never' for None)."""
        if at_ms is None:
            return "never"
        tz = timezone(timedelta(minutes=self.utc_offset_minutes))
        return datetime.fromtimestamp(at_ms / 1000, tz).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")

    @property
    def zone_text(self) -> str:
        sign = "+" if self.utc_offset_minutes >= 0 else "-"
        hours, minutes = divmod(abs(self.utc_offset_minutes), 60)
        return f"UTC{sign}{hours:02d}:{minutes:02d}"
