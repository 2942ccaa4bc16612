"""The PostgreSQL backend of the store, for any number of bot replicas sharing one database.

Built on asyncpg rather than psycopg 3: it speaks PostgreSQL's binary protocol natively on asyncio (no thread pool,
no libpq), is among the fastest Python drivers, ships its own connection pool, and is actively maintained by
MagicStack. psycopg 3's async mode would do too; nothing here depends on asyncpg beyond the pool and `$n` placeholders.

How replicas stay correct:

- Every "who acts" change is one conditional statement (`INSERT ... ON CONFLICT DO NOTHING`, `UPDATE ... WHERE
  state = 'pending'`). Under READ COMMITTED a second writer waits for the first and re-checks the row it then sees,
  so exactly one caller wins.
- Polls and outbox messages are handed out by `SELECT ... FOR UPDATE SKIP LOCKED` plus a lease (owner and expiry)
  written in the same statement: replicas never wait on each other, never take the same row, and a replica that dies
  leaves only leases that run out, not locks held forever.
- Migrations run under a session advisory lock, so replicas starting together apply each one exactly once.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from bot.store.base import QueryObserver, Store
from bot.store.pg_launches import PgLaunches
from bot.store.pg_outbox import PgOutbox
from bot.store.schema import MIGRATIONS, statement_for

__all__ = ["PostgresStore"]

# pg_advisory_lock takes one bigint: a fixed, project-specific key ("bkjob" in ASCII) so that only bkjob-bot
# replicas migrating the same database serialise on it.
MIGRATION_LOCK_KEY = 0x626B6A6F62
_CLAIM_RETENTION_S = 24 * 3600.0
_PING_TIMEOUT_S = 2.0


class PostgresStore(PgLaunches, PgOutbox, Store):
    """One asyncpg pool per replica; every transaction holds its own connection, so no in-process lock is needed.

    This module holds the pool, the migrations, claims and retention; launches, approvals and audit are
    `PgLaunches`' (`bot.store.pg_launches`), the outbox is `PgOutbox`'s (`bot.store.pg_outbox`).
    """

    kind = "postgresql"

    def __init__(
        self,
        *,
        dsn: str,
        min_size: int = 1,
        max_size: int = 10,
        server_settings: Mapping[str, str] | None = None,
        on_query: QueryObserver | None = None,
    ) -> None:
        self._dsn = dsn
        self._on_query = on_query
        self._min_size = min_size
        self._max_size = max_size
        self._server_settings = dict(server_settings or {})
        self._pool: asyncpg.Pool | None = None

    @classmethod
    def from_url(cls, url: str) -> PostgresStore:
        """Accept postgresql:// and postgres://; `search_path=` or libpq's `options=-csearch_path=...` pick a schema.

        Both are lifted into server_settings (rather than left to the server to parse from the startup packet) so
        that a schema given either way is applied the same, and can be seen in `server_settings` when debugging.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError(f"not a PostgreSQL URL: {parts.scheme}://")
        settings: dict[str, str] = {}
        kept: list[tuple[str, str]] = []
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if name == "search_path":
                settings["search_path"] = value
            elif name == "options":
                settings.update(_parse_options(value))
            else:
                kept.append((name, value))
        dsn = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(kept), parts.fragment))
        return cls(dsn=dsn, server_settings=settings)

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("store is not open")
        return self._pool

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(
            dsn=self._dsn,
            min_size=self._min_size,
            max_size=self._max_size,
            server_settings=self._server_settings or None,
            # A pool resets a connection's query loggers when it is released: add the observer at every acquire.
            setup=self._observe if self._on_query is not None else None,
        )
        try:
            await self._migrate()
        except BaseException:
            await self.close()
            raise

    async def _observe(self, con: asyncpg.pool.PoolConnectionProxy) -> None:
        observe = self._on_query
        if observe is not None:
            con.add_query_logger(lambda logged: observe(logged.query, tuple(logged.args or ())))

    async def _migrate(self) -> None:
        """Under a session advisory lock: the second replica waits, then finds every migration already applied."""
        async with self.pool.acquire() as con:
            await con.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
            try:
                await con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
                current = await con.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version")
                for version, statements in enumerate(MIGRATIONS[current:], start=current + 1):
                    async with con.transaction():
                        for statement in statements:
                            sql = statement_for(statement, self.kind)
                            if sql is not None:
                                await con.execute(sql)
                        await con.execute("INSERT INTO schema_version (version) VALUES ($1)", version)
            finally:
                # A dropped connection releases the lock too; this is for the normal path, where it goes back
                # to the pool and must not keep the lock.
                await con.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def ping(self) -> bool:
        if self._pool is None:
            return False
        try:
            async with asyncio.timeout(_PING_TIMEOUT_S):
                return bool(await self._pool.fetchval("SELECT 1") == 1)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False

    async def claim(self, key: str, *, now: float) -> bool:
        # One lookup by key: a claim older than the retention is taken over here, and deleted by `prune`. A racing
        # upsert of the same key waits for the first and re-checks the WHERE on the row it committed.
        won = await self.pool.fetchval(
            "INSERT INTO claims (key, created_at) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE"
            " SET created_at = excluded.created_at WHERE claims.created_at < $3 RETURNING 1",
            key,
            now,
            now - _CLAIM_RETENTION_S,
        )
        return won is not None

    async def release(self, key: str) -> None:
        await self.pool.execute("DELETE FROM claims WHERE key = $1", key)

    # -- retention ----------------------------------------------------------------------------------------------

    # -- retention ----------------------------------------------------------------------------------------------

    async def prune(self, *, claims_before: float, sent_before: float, audit_before: float | None, limit: int) -> int:
        deleted = 0
        for sql, cutoff in (
            ("DELETE FROM claims WHERE key IN (SELECT key FROM claims WHERE created_at < $1 LIMIT $2)", claims_before),
            (
                "DELETE FROM outbox WHERE id IN"
                " (SELECT id FROM outbox WHERE state = 'sent' AND created_at < $1 LIMIT $2)",
                sent_before,
            ),
            ("DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE at < $1 LIMIT $2)", audit_before),
        ):
            if cutoff is not None:
                status = await self.pool.execute(sql, cutoff, limit)
                deleted += int(status.rsplit(" ", 1)[-1])
        return deleted


def _parse_options(options: str) -> dict[str, str]:
    """libpq's `options` holds command-line switches: `-c name=value` or `--name=value`, possibly several."""
    settings: dict[str, str] = {}
    words = shlex.split(options)
    i = 0
    while i < len(words):
        word = words[i]
        if word == "-c" and i + 1 < len(words):
            i += 1
            word = words[i]
        elif word.startswith("-c"):
            word = word[2:]
        elif word.startswith("--"):
            word = word[2:]
        else:
            raise ValueError(f"unsupported PostgreSQL option {word!r} (use -c name=value)")
        name, sep, value = word.partition("=")
        if not sep:
            raise ValueError(f"PostgreSQL option {word!r} has no value")
        settings[name.replace("-", "_")] = value
        i += 1
    return settings
