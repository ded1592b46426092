"""Crowds of provider-slot holders on event loops in threads and in spawned processes.

Importable before Django is set up (a ``multiprocessing`` spawn child imports this module
first): the slots module is imported inside the functions. The holders count themselves in
Redis (``counter_url``), so the peak they report is measured by the holders across every
loop, thread and process, not by the semaphore under test.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aredis

# KEYS[1] in flight now, KEYS[2] the peak so far. Returns the count after entering.
_ENTER_LUA = """
local now = redis.call('INCR', KEYS[1])
if now > tonumber(redis.call('GET', KEYS[2]) or '0') then
  redis.call('SET', KEYS[2], now)
end
return now
"""


@dataclass(frozen=True)
class Crowd:
    """One crowd's parameters; ``total`` is the size of every crowd together (the barrier)."""

    provider_id: int
    limit: int
    total: int
    counter_url: str
    prefix: str
    hold_seconds: float = 0.02

    def key(self, name: str) -> str:
        return f"{self.prefix}:{name}"


async def crowd(spec: Crowd, count: int, name: str) -> list[int]:
    """Run ``count`` holders on this loop; each returns how often its ``on_wait`` was called.

    An admitted holder stays in until every holder of every crowd has either been admitted
    or been told to wait, so exactly ``limit`` get in without waiting and the rest wait.
    """
    from agents.providers import slots

    counters = aredis.Redis.from_url(spec.counter_url)
    enter = counters.register_script(_ENTER_LUA)
    loop = asyncio.get_running_loop()
    pending: list[asyncio.Task[Any]] = []

    async def one(index: int) -> int:
        waited = 0

        def on_wait() -> None:
            nonlocal waited
            waited += 1
            pending.append(loop.create_task(counters.incr(spec.key("decided"))))

        async with slots.provider_slot(
            spec.provider_id, spec.limit, holder=f"{name}-{index}", on_wait=on_wait
        ):
            if not waited:
                await counters.incr(spec.key("decided"))
            await enter(keys=[spec.key("inflight"), spec.key("peak")])
            while int(await counters.get(spec.key("decided")) or 0) < spec.total:
                await asyncio.sleep(0.005)
            await asyncio.sleep(spec.hold_seconds)
            await counters.decr(spec.key("inflight"))
        await counters.incr(spec.key("finished"))
        return waited

    try:
        return list(await asyncio.gather(*(one(i) for i in range(count))))
    finally:
        await asyncio.gather(*pending)
        await counters.aclose()
        await slots.close()


def crowds_in_threads(spec: Crowd, threads: int, per_thread: int, name: str) -> list[int]:
    """One event loop per thread, ``per_thread`` holders on each; every holder's wait count."""
    results: list[list[int]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            results[index] = asyncio.run(crowd(spec, per_thread, f"{name}-t{index}"))
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    if errors:
        raise errors[0]
    return [waits for chunk in results for waits in chunk]


def _setup_django(database_name: str) -> None:
    import django
    from django.conf import settings

    django.setup()
    # Slot keys are namespaced by database: use the parent's (its test database).
    settings.DATABASES["default"]["NAME"] = database_name


def process_crowd(
    spec: Crowd, threads: int, per_thread: int, database_name: str, results: Any
) -> None:
    """Entry point of a spawned process: crowds in threads, wait counts sent to ``results``."""
    _setup_django(database_name)
    try:
        results.put(("ok", crowds_in_threads(spec, threads, per_thread, f"p{os.getpid()}")))
    except BaseException as exc:
        results.put(("error", repr(exc)))


def process_hold_forever(
    provider_id: int, lease_seconds: float, database_name: str, counter_url: str, flag: str
) -> None:
    """Entry point of a spawned process: take one slot, say so in ``flag``, hold until killed."""
    _setup_django(database_name)
    from agents.providers import slots

    async def hold() -> None:
        async with slots.provider_slot(
            provider_id, 1, holder="doomed", lease_seconds=lease_seconds
        ):
            redis.Redis.from_url(counter_url).set(flag, os.getpid())
            while True:
                await asyncio.sleep(3600)

    asyncio.run(hold())


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)
