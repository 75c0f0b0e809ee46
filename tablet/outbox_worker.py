"""An ``Outbox`` owned by one dedicated thread, for asyncio code.

The outbox commits with ``synchronous=FULL`` (an fsync per transaction) and an
``sqlite3`` connection belongs to the thread that opened it, so async callers
hand it small functions that run, one at a time and in order, on the thread
that opened it: the event loop never waits on the disk, and a fleet of
simulated tablets gets one thread each.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from .outbox import Outbox
from .sheet_schema import SheetValidator

__all__ = ["OutboxWorker"]

T = TypeVar("T")


class OutboxWorker:
    """Open with ``await OutboxWorker.open(...)``; ``await run(fn)`` calls ``fn(outbox)`` on its thread."""

    def __init__(self, executor: ThreadPoolExecutor, outbox: Outbox) -> None:
        self._executor = executor
        self._outbox = outbox
        self.device_id = outbox.device_id

    @classmethod
    async def open(
        cls, path: str | os.PathLike[str], *, device_id: str, now_ms: int, validator: SheetValidator | None = None
    ) -> OutboxWorker:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"outbox-{device_id}")
        loop = asyncio.get_running_loop()
        try:
            outbox = await loop.run_in_executor(
                executor, lambda: Outbox.open(path, device_id=device_id, now_ms=now_ms, validator=validator)
            )
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(executor, outbox)

    async def run(self, fn: Callable[[Outbox], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, self._outbox)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._outbox.close)
        finally:
            self._executor.shutdown(wait=True)

    async def __aenter__(self) -> OutboxWorker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
