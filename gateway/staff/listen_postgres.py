"""Live dashboard updates across gateway instances on PostgreSQL (ADR 0012).

Census migration 5 adds statement-level triggers that ``NOTIFY`` on commit:
``sanaq_census`` when batches, security events, custody records or review
cases are stored (by any instance), ``sanaq_staff`` when respondent lists,
acts, review decisions or access codes change (payload: the table).
``follow_changes`` ``LISTEN``s on its own connection and pokes this
instance's feed, which rebuilds and wakes its event streams at once; a
change to the lists also drops the feed's cached lists. PostgreSQL delivers
a transaction's notifications only after it commits, and folds identical
ones, so a group commit of many batches is one wake-up.

A lost connection is reopened after ``_RETRY_S``; the feed is poked once it
is back (a notification may have been missed), and its periodic refresh
(``refresh_interval_s``) covers the gap meanwhile.
"""

from __future__ import annotations

import asyncio

import psycopg
import structlog
from psycopg import AsyncConnection

from gateway._schema_postgres import CENSUS_CHANNEL, STAFF_CHANNEL, split_pool_params

from .db_postgres import describe_dsn, error_text
from .feed import DashboardFeed

__all__ = ["LIST_TABLES", "follow_changes"]

log = structlog.get_logger("sanaq.gateway.staff")

_RETRY_S = 1.0
# staff tables whose change invalidates the feed's cached respondent lists
LIST_TABLES = frozenset({"respondent_lists", "respondent_entries"})


async def follow_changes(dsn: str, feed: DashboardFeed, *, retry_s: float = _RETRY_S) -> None:
    """Poke ``feed`` for every census or staff NOTIFY, until cancelled; never raises on a lost connection."""
    conninfo, _ = split_pool_params(dsn)
    while True:
        try:
            conn = await AsyncConnection.connect(
                conninfo, autocommit=True, application_name="sanaq-gateway-staff-listen"
            )
            async with conn:
                await conn.execute(f"LISTEN {CENSUS_CHANNEL}")
                await conn.execute(f"LISTEN {STAFF_CHANNEL}")
                feed.poke(lists_changed=True)
                async for note in conn.notifies():
                    feed.poke(lists_changed=note.channel == STAFF_CHANNEL and note.payload in LIST_TABLES)
        except psycopg.Error as e:
            log.warning("staff.listen.lost", error=error_text(e), where=describe_dsn(dsn))
        await asyncio.sleep(retry_s)
