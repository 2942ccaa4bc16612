"""Bounded reads of HTTP bodies, for requests into the bot and answers from BK-JOB alike."""

from __future__ import annotations

from aiohttp import StreamReader

__all__ = ["read_at_most"]


async def read_at_most(stream: StreamReader, limit: int) -> bytes:
    """Up to `limit + 1` bytes, so the caller can tell "too large" from "exactly the limit".

    `StreamReader.read(n)` returns what has arrived so far, not n bytes: a body that comes in several chunks
    must be read on until its end or the limit.
    """
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = await stream.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
