"""One asyncio event loop per process for outbound I/O.

A step that waits on a model provider, an HTTP tool, an MCP server or an http agent waits
as a coroutine on this loop, not as a thread blocked in a socket: the official SDKs' async
clients (``AsyncOpenAI``, ``AsyncAnthropic``), ``httpx.AsyncClient`` and the ``mcp`` client
all run here, so hundreds of calls in flight cost a few kilobytes each, and any of them can
be cancelled at once (the socket is closed; nothing is left to finish in the background).

Sync code (a step executor in its thread) calls ``run(factory)``. Before it waits, the
thread hands its database connection back to the pool (``release_db``): no connection is
held across I/O, so a bounded pool serves any number of waiting steps. The calling thread
may belong to a ``CancelScope`` (a step): cancelling the scope cancels every coroutine it
waits on, and ``run`` then raises the scope's error.

While it waits, the thread still runs what a coroutine asks of it with ``in_caller(fn)``
(for example: record "waiting for a provider slot" in the database, which must not happen
on the loop).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import logging
import os
import queue
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, ParamSpec, TypeVar

from django.db import connections

T = TypeVar("T")
P = ParamSpec("P")
logger = logging.getLogger(__name__)


class Cancelled(Exception):
    """Raised by ``run`` when the caller's scope was cancelled and has no error of its own."""


class _Loop:
    """The process's loop, in a daemon thread; made again in a forked child."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    def get(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                loop = asyncio.new_event_loop()
                started = threading.Event()

                def serve() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(started.set)
                    loop.run_forever()

                thread = threading.Thread(target=serve, name="io-loop", daemon=True)
                thread.start()
                started.wait()
                self._loop, self._thread, self._pid = loop, thread, os.getpid()
            return self._loop

    def is_loop_thread(self) -> bool:
        return self._thread is threading.current_thread() and self._pid == os.getpid()


_loop = _Loop()


def loop() -> asyncio.AbstractEventLoop:
    """The process's I/O loop (started on first use)."""
    return _loop.get()


class CancelScope:
    """What one step waits on: ``cancel(reason)`` aborts all of it, now and from then on.

    ``error`` makes the exception ``run`` raises in the step's thread once cancelled (the
    engine passes its ``StepCancelled``).
    """

    def __init__(self, error: Callable[[str], BaseException] = Cancelled) -> None:
        self._lock = threading.Lock()
        self._futures: set[concurrent.futures.Future] = set()
        self._error = error
        self.reason: str | None = None

    @property
    def cancelled(self) -> bool:
        return self.reason is not None

    def cancel(self, reason: str) -> None:
        with self._lock:
            if self.reason is None:
                self.reason = reason
            futures = list(self._futures)
        for future in futures:
            future.cancel()  # cancels the task on the loop: its socket closes at once

    def check(self) -> None:
        """Raise the scope's error if it was cancelled."""
        if self.reason is not None:
            raise self._error(self.reason)

    def _add(self, future: concurrent.futures.Future) -> None:
        with self._lock:
            self._futures.add(future)
            cancelled = self.reason is not None
        if cancelled:
            future.cancel()

    def _discard(self, future: concurrent.futures.Future) -> None:
        with self._lock:
            self._futures.discard(future)

    @contextlib.contextmanager
    def bound(self) -> Iterator[CancelScope]:
        """Make this the scope of the current thread (nesting restores the outer one)."""
        previous = getattr(_local, "scope", None)
        _local.scope = self
        try:
            yield self
        finally:
            _local.scope = previous


_local = threading.local()
_caller: contextvars.ContextVar[queue.SimpleQueue | None] = contextvars.ContextVar(
    "aio_caller", default=None
)


def current_scope() -> CancelScope | None:
    """The scope the current thread belongs to, if any."""
    return getattr(_local, "scope", None)


def release_db() -> None:
    """Give this thread's database connections back to the pool, unless in a transaction.

    Only pooled connections: closing an unpooled one would cost a reconnect per call.
    """
    for conn in connections.all(initialized_only=True):
        if (
            conn.connection is not None
            and not conn.in_atomic_block
            and conn.settings_dict.get("OPTIONS", {}).get("pool")
        ):
            conn.close()


def in_caller(fn: Callable[[], Any]) -> None:
    """From a coroutine started by ``run``: have the waiting thread call ``fn`` (soon).

    Outside ``run`` (no waiting thread) the call is dropped: it is a notice, not work.
    """
    waiting = _caller.get()
    if waiting is not None:
        waiting.put(fn)


def blocking(fn: Callable[P, Awaitable[T]]) -> Callable[P, T]:
    """The sync twin of the coroutine function ``fn``: each call is ``run`` on the loop."""

    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> T:
        return run(lambda: fn(*args, **kwargs))

    return call


def run(factory: Callable[[], Awaitable[T]], *, timeout: float | None = None) -> T:
    """Run ``factory()``'s coroutine on the process's loop and wait for its result.

    ``factory`` is called in this thread (so a client is made, and a missing key raised,
    here); the coroutine runs on the loop. The thread's scope, if any, can cancel it.
    ``timeout`` bounds the wait (``TimeoutError``); callers normally rely on their
    client's own timeout.
    """
    if _loop.is_loop_thread():
        raise RuntimeError("aio.run called on the I/O loop itself: await the coroutine instead")
    scope = current_scope()
    if scope is not None:
        scope.check()
    awaitable = factory()
    notices: queue.SimpleQueue = queue.SimpleQueue()

    async def wrapped() -> T:
        _caller.set(notices)
        try:
            return await awaitable
        finally:
            notices.put(None)  # wake the waiting thread

    release_db()
    future = asyncio.run_coroutine_threadsafe(wrapped(), loop())
    if scope is not None:
        scope._add(future)
    try:
        while not future.done():
            try:
                notice = notices.get(timeout=timeout)
            except queue.Empty:
                future.cancel()
                raise TimeoutError(f"no answer in {timeout:g} s") from None
            if notice is not None:
                try:
                    notice()
                except Exception:  # a notice is best effort: the call goes on
                    logger.warning("notice from an I/O call failed", exc_info=True)
                finally:
                    release_db()
            elif not future.done():
                future.result()  # the coroutine ended: its future completes in a moment
        return future.result()
    except concurrent.futures.CancelledError:
        if scope is not None and scope.cancelled:
            scope.check()
        raise Cancelled("the call was cancelled") from None
    finally:
        if scope is not None:
            scope._discard(future)
