"""The staff dashboard of the sync gateway: custody acts, respondent lists, coverage, review queue, live fleet view.

Mounted on the gateway app with ``setup_staff(app, ctx, StaffConfig(...))``;
served under ``/staff/`` behind staff accounts that share nothing with tablet
or station keys. Its own data (accounts, sessions, acts, lists, review
decisions, the tablets' assignment versions) lives in ``staff.db`` on a
SQLite deployment and in the census database's staff tables on PostgreSQL
(``db``, ``db_postgres``; ADR 0012); census data is only read, through
``StaffQueries`` (``queries``, ``queries_postgres``). It is also the gateway's source of
the tablets' assignments (``assignments.StaffAssignments``), since it holds the lists.

``setup_staff`` is imported lazily so that ``gateway.config`` can import
``StaffConfig`` without an import cycle (setup needs ``gateway.context``,
which needs ``gateway.config``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import StaffConfig
from .errors import StaffConfigError, StaffError

if TYPE_CHECKING:
    from .queries import SqliteStaffQueries, StaffQueries
    from .setup import setup_staff

__all__ = ["SqliteStaffQueries", "StaffConfig", "StaffConfigError", "StaffError", "StaffQueries", "setup_staff"]


def __getattr__(name: str) -> Any:
    if name == "setup_staff":
        from .setup import setup_staff  # noqa: PLC0415 - lazy on purpose, see the module docstring

        return setup_staff
    if name in ("SqliteStaffQueries", "StaffQueries"):
        from . import queries  # noqa: PLC0415

        return getattr(queries, name)
    raise AttributeError(name)
