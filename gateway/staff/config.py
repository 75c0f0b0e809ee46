"""Staff dashboard configuration: one frozen dataclass, the ``[staff]`` table of gateway.toml.

Every option has a default that works on a laptop. ``db_path`` defaults to
``staff.db`` next to the SQLite census database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from l10n import LANGUAGES

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
    # login throttling (gateway/staff/throttle.py): per (username, client address) the first
    # login_free_failures failures cost nothing, then each failure doubles the wait before the next
    # attempt (login_delay_base_s, 2x, 4x ... at most login_delay_max_s); a pair that stays quiet
    # for login_window_s after its wait starts afresh. Per username from all addresses,
    # login_user_ceiling failures within login_ceiling_window_s lock the account until the window
    # passes or an admin clears it (`sanaq-gateway staff unlock-user`, or the Accounts page).
    login_window_s: int = 900
    login_free_failures: int = 5
    login_delay_base_s: int = 2
    login_delay_max_s: int = 900
    login_user_ceiling: int = 50
    login_ceiling_window_s: int = 86_400
    max_concurrent_password_checks: int = 2
    # login attempts in flight at once (waiting for or in a password check); more get 503
    max_pending_logins: int = 32
    # Strict-Transport-Security max-age on staff responses served over HTTPS (0: no header)
    hsts_max_age_s: int = 31_536_000
    # the founding order's dates: census moment (00:00 Astana time, which was UTC+06:00 in 2020)
    # and census period (local dates); acceptance-transfer acts must fall between
    # acts_days_before days before the moment and acts_days_after days after the period ends
    census_moment: str = "2020-10-01T00:00+06:00"
    census_period_start: str = "2020-10-01"
    census_period_end: str = "2020-10-30"
    acts_days_before: int = 92
    acts_days_after: int = 92
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
    # online self-enumeration (docs/selfenum.md): the site printed on access-code slips, and the pepper the
    # codes are hashed under (default: codes.pepper next to staff.db; the web service must hold a copy)
    selfenum_url: str = "http://127.0.0.1:8450"
    codes_pepper_file: Path | None = None


    # participation certificates (docs/operations.md): the directory from `sanaq-keys certificate-key create`
    # (unset: the dashboard cannot issue them), the issuing authority's name printed on them (not signed),
    # and the most certificates one PDF holds
    certificate_key_dir: Path | None = None
    certificate_issuer_name: str = "Статистика департаменті / Департамент статистики"
    # where a certificate says it can be checked: the self-enumeration site's page, e.g. https://host/certificate
    certificate_verify_at: str = "sanaq-keys verify-certificate"
    certificates_per_pdf: int = 500


    # the pages' language for a user who has not chosen one (kk, ru or en); each user's choice is kept
    language: str = "kk"

    def __post_init__(self) -> None:
        if not 1 <= self.certificates_per_pdf <= 5000:
            raise StaffConfigError("staff.certificates_per_pdf must be 1..5000")
        if self.session_ttl_s <= 0 or self.session_idle_s <= 0:
            raise StaffConfigError("staff.session_ttl_s and staff.session_idle_s must be > 0")
        if not 0 < self.fresh_h < self.silent_h:
            raise StaffConfigError("staff.fresh_h must be > 0 and < staff.silent_h")
        if self.refresh_interval_s <= 0 or self.full_refresh_s <= 0 or self.heartbeat_s <= 0:
            raise StaffConfigError("staff refresh and heartbeat intervals must be > 0")
        if self.login_free_failures < 1 or self.login_user_ceiling < self.login_free_failures:
            raise StaffConfigError("staff.login_free_failures must be >= 1 and <= staff.login_user_ceiling")
        if not 0 < self.login_delay_base_s <= self.login_delay_max_s:
            raise StaffConfigError("staff.login_delay_base_s must be > 0 and <= staff.login_delay_max_s")
        if self.login_window_s <= 0 or self.login_ceiling_window_s <= 0:
            raise StaffConfigError("staff.login_window_s and staff.login_ceiling_window_s must be > 0")
        if not 1 <= self.max_concurrent_password_checks <= self.max_pending_logins:
            raise StaffConfigError("staff.max_concurrent_password_checks must be >= 1 and <= staff.max_pending_logins")
        if self.hsts_max_age_s < 0:
            raise StaffConfigError("staff.hsts_max_age_s must be >= 0")
        self._check_census_dates()
        if self.language not in LANGUAGES:
            raise StaffConfigError(f"staff.language must be one of {', '.join(LANGUAGES)}")
        if not self.act_prefix.isalnum():
            raise StaffConfigError("staff.act_prefix must be letters and digits")
        if not self.selfenum_url.startswith(("https://", "http://")) or len(self.selfenum_url) > 200:
            raise StaffConfigError("staff.selfenum_url must be an http(s) URL of at most 200 characters")

    def _check_census_dates(self) -> None:
        try:
            moment = self.moment
            start, end = date.fromisoformat(self.census_period_start), date.fromisoformat(self.census_period_end)
        except ValueError as e:
            raise StaffConfigError(
                "staff.census_moment must be YYYY-MM-DDTHH:MM+HH:MM and staff.census_period_start/end YYYY-MM-DD"
            ) from e
        if moment.utcoffset() is None:
            raise StaffConfigError("staff.census_moment needs its UTC offset, e.g. 2020-10-01T00:00+06:00")
        if not start <= end:
            raise StaffConfigError("staff.census_period_start must not be after staff.census_period_end")
        if not 0 <= self.acts_days_before <= 3660 or not 0 <= self.acts_days_after <= 3660:
            raise StaffConfigError("staff.acts_days_before and staff.acts_days_after must be 0..3660")

    @property
    def moment(self) -> datetime:
        """The census moment as an aware datetime (raises ``ValueError`` when malformed)."""
        return datetime.fromisoformat(self.census_moment)

    def acts_window_ms(self) -> tuple[int, int]:
        """[first, last] instant (Unix ms) an acceptance-transfer act may carry.

        From ``acts_days_before`` days before the census moment to the end of the
        last census day (local time) plus ``acts_days_after`` days.
        """
        tz = timezone(timedelta(minutes=self.utc_offset_minutes))
        first = self.moment - timedelta(days=self.acts_days_before)
        end_day = date.fromisoformat(self.census_period_end) + timedelta(days=1 + self.acts_days_after)
        last = datetime(end_day.year, end_day.month, end_day.day, tzinfo=tz) - timedelta(milliseconds=1)
        return int(first.timestamp() * 1000), int(last.timestamp() * 1000)

    def staff_db(self, census_sqlite_path: Path | None) -> Path:
        """Where staff.db lives: ``db_path`` or next to the SQLite census database."""
        if self.db_path is not None:
            return self.db_path
        if census_sqlite_path is None:
            raise StaffConfigError("staff.db_path must be set when the census store is not SQLite")
        return census_sqlite_path.parent / "staff.db"

    def codes_pepper(self, staff_db: Path) -> Path:
        return self.codes_pepper_file if self.codes_pepper_file is not None else staff_db.parent / "codes.pepper"

    def online_window_text(self) -> str:
        """The founding order's online window: the first 15 days of the census period, for the slips."""
        start = date.fromisoformat(self.census_period_start)
        return f"{start:%d.%m.%Y} - {start + timedelta(days=14):%d.%m.%Y}"

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
