"""The store backends tests run on: SQLite always, PostgreSQL when TEST_DATABASE_URL reaches one (else a skip that
says why). Each PostgreSQL test gets a schema of its own, dropped afterwards, so tests never see each other's rows.

The two-backend `store` fixture and the PostgreSQL-only `pg` fixture are in `tests/conftest.py`.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import pytest

from bot.store import PostgresStore

__all__ = ["PgSchema", "postgres_url_or_skip"]


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


async def postgres_url_or_skip() -> str:
    """TEST_DATABASE_URL if a server answers there; otherwise the test is skipped with the reason."""
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        pytest.skip(
            "TEST_DATABASE_URL is not set; set it (e.g. postgresql://postgres@127.0.0.1:5432/test)"
            " to run the PostgreSQL store tests"
        )
    try:
        con = await asyncpg.connect(url, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        pytest.skip(
            f"PostgreSQL not reachable at TEST_DATABASE_URL={_redacted(url)}; set it to run the PostgreSQL store tests"
            f" ({type(exc).__name__}: {exc})"
        )
    await con.close()
    return url


class PgSchema:
    """A fresh schema on the test server: stores opened here see only it, and it is dropped with everything in it."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.name = f"t_{uuid.uuid4().hex[:12]}"
        self._stores: list[PostgresStore] = []

    @property
    def url(self) -> str:
        """The base URL with the schema as libpq's `options`, the way a deployment would pass one."""
        sep = "&" if "?" in self.base_url else "?"
        return f"{self.base_url}{sep}options={quote(f'-csearch_path={self.name}')}"

    async def __aenter__(self) -> PgSchema:
        con = await asyncpg.connect(self.base_url)
        try:
            await con.execute(f"CREATE SCHEMA {self.name}")
        finally:
            await con.close()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(*(store.close() for store in self._stores))
        con = await asyncpg.connect(self.base_url)
        try:
            await con.execute(f"DROP SCHEMA IF EXISTS {self.name} CASCADE")
        finally:
            await con.close()

    def store(self, **kwargs: int) -> PostgresStore:
        """A store (one replica) on this schema, not yet opened; closed when the schema is dropped."""
        store = PostgresStore(dsn=self.base_url, server_settings={"search_path": self.name}, **kwargs)
        self._stores.append(store)
        return store

    async def open_store(self) -> PostgresStore:
        store = self.store()
        await store.open()
        return store

    async def fetch(self, sql: str) -> list[asyncpg.Record]:
        con = await asyncpg.connect(self.base_url, server_settings={"search_path": self.name})
        try:
            return await con.fetch(sql)
        finally:
            await con.close()
