"""PostgreSQL census store: several gateway instances on one cluster, with group commit.

Cross-instance guarantees come from the database, never from process memory:
UNIQUE (device_id, seq), UNIQUE (batch_hash) and PRIMARY KEY (key_id, nonce).
An ingest inserts with ``ON CONFLICT DO NOTHING``; while another instance holds
the same key uncommitted, PostgreSQL makes the insert wait for that outcome, so
of two racing instances one stores and the other then reads the winner's row
and answers ``Duplicate`` (the stored receipt) or ``Conflict``. Transactions run
at READ COMMITTED, which is what lets that read see the winner's row.

The group committer and the rules are ``store_commit`` and ``store_rules`` (shared with
SQLite); this module is the PostgreSQL adapter: its pool, its migrations and
its transactions. Each group the committer hands it runs on one pooled
connection (``BEGIN``, a savepoint per job, one COMMIT). A group is run again
only when it is known that nothing of it committed: a connection found broken
before COMMIT was sent (e.g. after a server restart) and a deadlock or
serialization failure. A connection lost *during* COMMIT is ambiguous and is
never retried here; the client retries and then gets ``Duplicate`` if it had
committed. The committer orders a group's jobs by key, so two instances'
groups take row locks in one order.

Reads and the nonce purge run on pooled connections in autocommit.

Opening refuses a server that may acknowledge unflushed commits
(``NotDurableError``) and applies pending migrations (see ``_schema_postgres``);
every new pooled connection is checked for durability again. The URL may carry
``pool_min_size``, ``pool_max_size`` and ``pool_timeout_s`` query parameters;
they are taken out before libpq sees the URL.

``python -m gateway.store_postgres migrate`` applies migrations as the schema
owner and grants the gateway's role its privileges (least-privilege deployment).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import sys
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import psycopg
import structlog
from psycopg import AsyncConnection, IsolationLevel
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

from runtime.toml_config import ConfigError

from ._schema_postgres import (
    NotDurableError,
    apply_migrations,
    check_connection_durable,
    error_text,
    main,
    migrate,
    split_pool_params,
)
from .store import StoreUnavailable
from .store_commit import (
    ATTEMPTS,
    COMMIT,
    Dialect,
    EngineFailure,
    GroupCommitter,
    Job,
    Rows,
    Sql,
    Step,
    ValueRefused,
    drive_async,
)
from .store_rules import REGISTRY_CHANNEL, SharedStore

__all__ = ["NotDurableError", "PostgresStore", "main", "migrate"]

log = structlog.get_logger("sanaq.gateway")

T = TypeVar("T")
_LISTEN_RETRY_S = 1.0
_PLACEHOLDER = re.compile(r"\?")


@functools.lru_cache(maxsize=256)
def _pyformat(text: str) -> str:
    """The shared SQL's ``?`` placeholders as psycopg's ``%s`` (the shared SQL has no other ``?`` or ``%``)."""
    return _PLACEHOLDER.sub("%s", text)


async def _run(conn: AsyncConnection[Any], sql: Sql) -> Rows:
    text = _pyformat(sql.text)
    if sql.many:
        async with conn.cursor() as cur:
            await cur.executemany(text, sql.params)
            return Rows(cur.rowcount, [])
    cur = await conn.execute(text, sql.params)
    rows = [tuple(r) for r in await cur.fetchall()] if cur.description is not None else []
    return Rows(cur.rowcount, rows)


class PostgresStore(SharedStore):
    DIALECT: ClassVar[Dialect] = Dialect(begin="BEGIN", notify_registry="SELECT pg_notify(?, ?)")
    PURGE_IN_GROUP: ClassVar[bool] = False  # a pooled connection in autocommit: no need to wait for a group

    def __init__(
        self,
        dsn: str,
        *,
        max_group: int = 256,
        max_wait_ms: float = 2.0,
        durable: bool = True,
        pool_min_size: int = 2,
        pool_max_size: int = 8,
        pool_timeout_s: float = 10.0,
    ) -> None:
        try:
            self._conninfo, options = split_pool_params(dsn)
            params = conninfo_to_dict(self._conninfo)
        except (ValueError, psycopg.Error) as e:
            raise ConfigError(f"database: not a usable PostgreSQL URL: {e}") from e
        self._pool_min = int(options.get("pool_min_size", pool_min_size))
        self._pool_max = max(self._pool_min, int(options.get("pool_max_size", pool_max_size)), 2)
        self._pool_timeout_s = options.get("pool_timeout_s", pool_timeout_s)
        self._durable = durable
        self._where = f"host={params.get('host', 'default')} dbname={params.get('dbname', 'default')}"
        self._conn_kwargs: dict[str, Any] = {}
        if "application_name" not in params:
            self._conn_kwargs["application_name"] = "sanaq-gateway"
        if "connect_timeout" not in params:
            self._conn_kwargs["connect_timeout"] = 10
        self._pool: AsyncConnectionPool[Any] | None = None
        self._committer = GroupCommitter(
            self._run_group, max_group=max_group, max_wait_s=max_wait_ms / 1000, name="postgres-committer"
        )

    # ---- lifecycle -------------------------------------------------------------
    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            conn = await AsyncConnection.connect(self._conninfo, autocommit=True, **self._conn_kwargs)
        except psycopg.Error as e:
            raise StoreUnavailable(f"cannot connect to PostgreSQL ({self._where}): {e}") from e
        async with conn:
            try:
                if self._durable:
                    await check_connection_durable(conn)
                applied = await apply_migrations(conn)
            except psycopg.errors.InsufficientPrivilege as e:
                raise StoreUnavailable(
                    f"schema migrations pending ({self._where}) and this role may not apply them;"
                    " run `python -m gateway.store_postgres migrate` as the schema owner"
                ) from e
            except psycopg.Error as e:
                raise StoreUnavailable(f"cannot prepare PostgreSQL store ({self._where}): {e}") from e
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            self._conninfo,
            kwargs={"autocommit": True, **self._conn_kwargs},
            min_size=self._pool_min,
            max_size=self._pool_max,
            open=False,
            configure=self._configure,
            timeout=self._pool_timeout_s,
            name="sanaq-census",
        )
        try:
            await pool.open(wait=True, timeout=self._pool_timeout_s)
        except psycopg.Error as e:
            await pool.close()
            raise StoreUnavailable(f"cannot open PostgreSQL pool ({self._where}): {e}") from e
        self._pool = pool
        self._committer.start()
        log.info("store.postgres.open", where=self._where, migrated=applied, pool_max=self._pool_max)

    async def _configure(self, conn: AsyncConnection[Any]) -> None:
        await conn.set_isolation_level(IsolationLevel.READ_COMMITTED)
        if self._durable:
            await check_connection_durable(conn)

    async def close(self) -> None:
        await self._committer.stop()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    # ---- the adapter: one group in one transaction on a pooled connection ----------------------------
    async def _run_group(self, jobs: list[Job]) -> list[tuple[bool, Any]]:
        pool = self._pool
        if pool is None:
            raise EngineFailure("store is closed", None, retry=False)
        try:
            async with pool.connection() as conn:
                try:
                    return await drive_async(self._group_transaction(jobs), functools.partial(self._write, conn))
                except BaseException:
                    if not conn.broken:
                        with contextlib.suppress(psycopg.Error):
                            await conn.execute("ROLLBACK")
                    raise
        except psycopg.Error as e:  # no connection (pool timeout, server down): nothing was sent
            raise EngineFailure(error_text(e), e.sqlstate, retry=False) from e

    async def _write(self, conn: AsyncConnection[Any], sql: Sql) -> Rows:
        try:
            return await _run(conn, sql)
        except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected) as e:
            raise EngineFailure(error_text(e), e.sqlstate, retry=True) from e  # rolled back by the server
        except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as e:
            if sql is COMMIT:  # a deferred check at COMMIT fails the group
                raise EngineFailure(error_text(e), e.sqlstate, retry=False) from e
            raise ValueRefused(error_text(e), e.sqlstate) from e
        except psycopg.OperationalError as e:
            retry = conn.broken and sql is not COMMIT
            if retry and self._pool is not None:
                await _drop_broken(self._pool)
            raise EngineFailure(error_text(e), e.sqlstate, retry=retry) from e
        except psycopg.Error as e:
            raise EngineFailure(error_text(e), e.sqlstate, retry=False) from e

    async def _read(self, rule: Callable[[], Step[T]]) -> T:
        pool = self._pool
        if pool is None:
            raise StoreUnavailable("store is closed")
        for attempt in range(1, ATTEMPTS + 1):
            conn: AsyncConnection[Any] | None = None
            try:
                async with pool.connection() as conn:
                    return await drive_async(rule(), functools.partial(_run, conn))
            except psycopg.OperationalError as e:
                if conn is None or not conn.broken or attempt == ATTEMPTS:
                    raise StoreUnavailable(f"store read failed: {e}") from e
                await _drop_broken(pool)
            except psycopg.Error as e:
                raise StoreUnavailable(f"store read failed: {e}") from e
        raise AssertionError("unreachable")

    async def watch_registry(self, changed: Callable[[], None]) -> None:
        """``LISTEN`` on its own connection and call ``changed`` for every registry NOTIFY, until cancelled.

        A lost connection is reopened after ``_LISTEN_RETRY_S``, and ``changed``
        is called once it is back (a notification may have been missed); the
        caller's periodic check covers the gap (``gateway.registry``).
        """
        while True:
            try:
                conn = await AsyncConnection.connect(
                    self._conninfo,
                    autocommit=True,
                    **{**self._conn_kwargs, "application_name": "sanaq-gateway-registry"},
                )
                async with conn:
                    await conn.execute(f"LISTEN {REGISTRY_CHANNEL}")
                    changed()
                    async for _ in conn.notifies():
                        changed()
            except psycopg.Error as e:
                log.warning("store.registry_listen.lost", error=error_text(e), where=self._where)
            await asyncio.sleep(_LISTEN_RETRY_S)


async def _drop_broken(pool: AsyncConnectionPool[Any]) -> None:
    """Test the idle connections and replace the dead ones (one outage breaks them all)."""
    with contextlib.suppress(psycopg.Error):
        await pool.check()


if __name__ == "__main__":
    sys.exit(main())
