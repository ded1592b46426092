"""Per-provider concurrency slots: at most ``max_concurrency`` model calls in flight at once.

A counting semaphore per provider, shared by every worker process. In production it is a
sorted set in Redis (``settings.REDIS_URL``) whose members are the holders' tokens, scored
by the time their lease expires; in embedded mode (no ``REDIS_URL``, one process) the same
thing in memory. A call holds a slot for as long as ``provider_slot(...)`` is entered:

    async with provider_slot(provider.pk, provider.max_concurrency, holder=f"step:{pk}",
                             on_wait=lambda: ...):
        reply = await client.chat.completions.create(...)

Guarantees:

- Admission is atomic (one Lua script: drop expired leases, admit if fewer than ``limit``
  are held), so no more than ``limit`` holders are admitted at once, across processes.
  Each admission is judged by the acquirer's own ``limit``: lowering it holds back new
  acquirers until enough holders have left; nobody already in is evicted.
- A holder whose process dies (SIGKILL) frees its slot when its lease expires
  (``lease_seconds``, 120 s by default); a live holder renews its lease every third of it,
  so a long call keeps its slot. Leases run on the Redis server's clock.
- The slot is released on every way out (return, exception, cancellation); releasing never
  raises (a Redis error is logged and the lease frees the slot later). Cancellation while
  waiting leaves nothing behind, even if it lands while an admission is in flight.
- Waiting is cheap: in each event loop only the oldest waiter for a provider asks Redis
  (backoff 5 ms doubling to 100 ms, with jitter); the others wait in line in memory. A
  release publishes on a channel per provider so the next waiter tries at once rather than
  at its next poll; the poll is the safety net if a message is lost (pub/sub is fire and
  forget). Blocking pops on token lists were not used: a token taken by a process that is
  then killed is lost for good, and each waiter would hold a Redis connection.
- Redis unreachable while acquiring raises ``ProviderSlotsUnavailable`` (retryable): the
  limit could not be checked, so the call must not go ahead.

The Redis client is made lazily for each running event loop (asyncio clients belong to one
loop); ``close()`` closes the current loop's. ``in_use`` and ``reset`` are synchronous, for
pages, API answers and tests.

Over 400 lines because it is one thing: the semaphore, in its Redis and in-memory forms
that must behave alike (the tests run the same cases on both), with its waiting line.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import threading
import time
import uuid
import weakref
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from typing import Any

import redis
import redis.asyncio as aredis
from django.conf import settings

from agents.providers.base import ProviderError
from controlplane.redis_names import redis_name

logger = logging.getLogger(__name__)

BACKOFF_START_SECONDS = 0.005
BACKOFF_CAP_SECONDS = 0.1
# Redis connections per event loop (one of them is the pub/sub listener's); more callers
# than this at one instant queue for a connection for up to REDIS_POOL_WAIT_SECONDS.
REDIS_POOL_SIZE = 16
REDIS_POOL_WAIT_SECONDS = 5.0
REDIS_TIMEOUT_SECONDS = 2.0


class ProviderSlotsUnavailable(ProviderError):
    """The provider's concurrency limit could not be checked (Redis unreachable).

    Retryable: the limit is unknown, not reached. The model call must not go ahead.
    """

    default_code = "provider_slots_unavailable"

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


def slots_key(provider_id: int) -> str:
    """The sorted set of a provider's slot holders (member: token, score: lease expiry, ms);
    per installation (controlplane.redis_names), as the rate limits are."""
    return redis_name("slots", "provider", provider_id)


def released_channel(provider_id: int) -> str:
    """The pub/sub channel a release is announced on, to wake the provider's waiters."""
    return redis_name("slots", "released", provider_id)


# -- one event loop's waiting line ---------------------------------------------------------


class _Gate:
    """The waiters of one provider in one event loop, oldest first; only the first polls.

    Each waiter is an ``asyncio.Event`` set when it should look again: when it becomes
    first in line, or (if first) when a slot was released.
    """

    def __init__(self) -> None:
        self.line: collections.deque[asyncio.Event] = collections.deque()

    def join(self) -> asyncio.Event:
        ticket = asyncio.Event()
        self.line.append(ticket)
        return ticket

    def leave(self, ticket: asyncio.Event) -> None:
        was_first = bool(self.line) and self.line[0] is ticket
        with contextlib.suppress(ValueError):
            self.line.remove(ticket)
        if was_first:
            self.wake_first()

    def wake_first(self) -> None:
        if self.line:
            self.line[0].set()


class _LoopState:
    """What one event loop keeps: its waiting lines, and the store's per-loop resources."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop_ref = weakref.ref(loop)
        self.gates: dict[int, _Gate] = {}
        self.client: Any = None
        self.scripts: dict[str, Any] = {}
        self.pubsub: Any = None
        self.listener: asyncio.Task[None] | None = None
        self.watched: set[int] = set()

    def gate(self, provider_id: int) -> _Gate:
        gate = self.gates.get(provider_id)
        if gate is None:
            gate = self.gates[provider_id] = _Gate()
        return gate

    def wake(self, provider_id: int) -> None:
        gate = self.gates.get(provider_id)
        if gate is not None:
            gate.wake_first()


# -- stores ---------------------------------------------------------------------------------


class _Store(ABC):
    """Where the slots are counted. Async methods run on the caller's event loop."""

    def __init__(self) -> None:
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )
        self._states_lock = threading.Lock()

    def state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        with self._states_lock:
            state = self._states.get(loop)
            if state is None:
                state = self._states[loop] = _LoopState(loop)
            return state

    def all_states(self) -> list[_LoopState]:
        with self._states_lock:
            return list(self._states.values())

    @abstractmethod
    async def acquire(self, provider_id: int, member: str, limit: int, lease_ms: int) -> bool:
        """Admit ``member`` if fewer than ``limit`` live leases are held (or it holds one)."""

    @abstractmethod
    async def renew(self, provider_id: int, member: str, lease_ms: int) -> bool:
        """Extend ``member``'s lease; False if it no longer holds one."""

    @abstractmethod
    async def release(self, provider_id: int, member: str) -> None:
        """Drop ``member``'s lease (if any) and wake the provider's waiters."""

    async def watch(self, provider_id: int) -> None:  # noqa: B027 (optional hook)
        """Make sure this loop hears of releases for the provider (best effort)."""

    async def close(self) -> None:  # noqa: B027 (optional hook)
        """Close the current loop's connections."""

    @abstractmethod
    def in_use(self, provider_id: int) -> int: ...

    @abstractmethod
    def reset(self, provider_id: int) -> None: ...


class _MemoryStore(_Store):
    """Embedded mode: one process, any number of event loops; one lock over a dict."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._held: dict[int, dict[str, float]] = {}  # provider id: {member: expiry}

    def _live(self, provider_id: int, now: float) -> dict[str, float]:
        held = self._held.setdefault(provider_id, {})
        for member in [m for m, expiry in held.items() if expiry <= now]:
            del held[member]
        return held

    async def acquire(self, provider_id: int, member: str, limit: int, lease_ms: int) -> bool:
        with self._lock:
            now = time.monotonic()
            held = self._live(provider_id, now)
            if member in held or len(held) < limit:
                held[member] = now + lease_ms / 1000
                return True
            return False

    async def renew(self, provider_id: int, member: str, lease_ms: int) -> bool:
        with self._lock:
            held = self._held.get(provider_id, {})
            if member not in held:
                return False
            held[member] = time.monotonic() + lease_ms / 1000
            return True

    async def release(self, provider_id: int, member: str) -> None:
        with self._lock:
            removed = self._held.get(provider_id, {}).pop(member, None) is not None
        if not removed:
            return
        for state in self.all_states():
            loop = state.loop_ref()
            if loop is None:
                continue
            with contextlib.suppress(RuntimeError):  # that loop has closed
                loop.call_soon_threadsafe(state.wake, provider_id)

    def in_use(self, provider_id: int) -> int:
        with self._lock:
            return len(self._live(provider_id, time.monotonic()))

    def reset(self, provider_id: int) -> None:
        with self._lock:
            self._held.pop(provider_id, None)


# KEYS[1] the provider's slots; ARGV[1] member, ARGV[2] limit, ARGV[3] lease (ms).
# Drops expired leases, then admits the member if it already holds a lease (a retried
# call whose first reply was lost) or fewer than limit are held. The key expires with
# its last lease. Returns 1 if admitted, else 0. Redis runs one script at a time.
_ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1])
   or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', KEYS[1], math.floor(tonumber(last[2])) + 1000)
  return 1
end
return 0
"""

# KEYS[1] slots; ARGV[1] member, ARGV[2] lease (ms). A member still present was counted by
# every admission since its lease ran out (each drops expired leases first), so extending
# it never lets the count pass the limit. Returns 1 if renewed, 0 if the lease is gone.
_RENEW_LUA = """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], math.floor(tonumber(last[2])) + 1000)
return 1
"""

# KEYS[1] slots, KEYS[2] the release channel; ARGV[1] member. Announces only a real release.
_RELEASE_LUA = """
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
if removed == 1 then
  redis.call('PUBLISH', KEYS[2], '1')
end
return removed
"""

# KEYS[1] slots. Live leases, without writing (pages and API answers only read).
_COUNT_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
"""


def _unavailable(exc: Exception) -> ProviderSlotsUnavailable:
    return ProviderSlotsUnavailable(
        "The provider's concurrency limit could not be checked: Redis is unreachable "
        f"({type(exc).__name__}: {exc}). The call was not made; it may be retried."
    )


class _RedisStore(_Store):
    """Production: a sorted set per provider in Redis, shared by every worker process."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self._sync: redis.Redis | None = None
        self._sync_lock = threading.Lock()

    # per-loop client and scripts

    def _client(self, state: _LoopState) -> Any:
        if state.client is None:
            pool = aredis.BlockingConnectionPool.from_url(
                self.url,
                max_connections=REDIS_POOL_SIZE,
                timeout=REDIS_POOL_WAIT_SECONDS,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                socket_timeout=REDIS_TIMEOUT_SECONDS,
            )
            state.client = aredis.Redis(connection_pool=pool)
            state.scripts = {
                name: state.client.register_script(source)
                for name, source in (
                    ("acquire", _ACQUIRE_LUA),
                    ("renew", _RENEW_LUA),
                    ("release", _RELEASE_LUA),
                )
            }
        return state.client

    async def _run(self, name: str, keys: list[str], args: list[Any]) -> int:
        state = self.state()
        self._client(state)
        return int(await state.scripts[name](keys=keys, args=args))

    async def acquire(self, provider_id: int, member: str, limit: int, lease_ms: int) -> bool:
        try:
            return await self._run("acquire", [slots_key(provider_id)], [member, limit, lease_ms])
        except redis.RedisError as exc:
            raise _unavailable(exc) from exc

    async def renew(self, provider_id: int, member: str, lease_ms: int) -> bool:
        return bool(await self._run("renew", [slots_key(provider_id)], [member, lease_ms]))

    async def release(self, provider_id: int, member: str) -> None:
        keys = [slots_key(provider_id), released_channel(provider_id)]
        await self._run("release", keys, [member])

    async def watch(self, provider_id: int) -> None:
        state = self.state()
        if provider_id in state.watched and state.listener is not None:
            return
        try:
            if state.pubsub is None or state.listener is None:
                state.watched.clear()
                state.pubsub = self._client(state).pubsub(ignore_subscribe_messages=True)
            await state.pubsub.subscribe(released_channel(provider_id))
            state.watched.add(provider_id)
            if state.listener is None:
                state.listener = asyncio.get_running_loop().create_task(
                    self._listen(state), name="provider-slots-listener"
                )
        except redis.RedisError as exc:
            # Waiters still poll; only the early wake-up is lost.
            logger.warning("provider slots: cannot subscribe to releases: %s", exc)

    async def _listen(self, state: _LoopState) -> None:
        pubsub = state.pubsub
        try:
            async for message in pubsub.listen():
                channel = message.get("channel") or b""
                if isinstance(channel, bytes):
                    channel = channel.decode()
                with contextlib.suppress(ValueError):
                    state.wake(int(channel.rsplit(":", 1)[1]))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the listener is best effort; polls go on
            logger.warning("provider slots: release listener stopped: %s", exc)
        finally:
            if state.pubsub is pubsub:
                state.listener = None
                state.pubsub = None
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def close(self) -> None:
        state = self.state()
        if state.listener is not None:
            state.listener.cancel()
            with contextlib.suppress(BaseException):
                await state.listener
        if state.client is not None:
            client, state.client, state.scripts = state.client, None, {}
            with contextlib.suppress(Exception):
                await client.aclose()
                await client.connection_pool.disconnect()

    # synchronous reads for pages and tests

    def _sync_client(self) -> redis.Redis:
        with self._sync_lock:
            if self._sync is None:
                self._sync = redis.Redis.from_url(
                    self.url,
                    socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                    socket_timeout=REDIS_TIMEOUT_SECONDS,
                )
            return self._sync

    def in_use(self, provider_id: int) -> int:
        try:
            return int(self._sync_client().eval(_COUNT_LUA, 1, slots_key(provider_id)))
        except redis.RedisError as exc:
            raise _unavailable(exc) from exc

    def reset(self, provider_id: int) -> None:
        self._sync_client().delete(slots_key(provider_id))


_stores: dict[str, _Store] = {}
_stores_lock = threading.Lock()


def _store() -> _Store:
    """The store for the current settings: Redis if ``REDIS_URL`` is set, else memory."""
    url = settings.REDIS_URL or ""
    with _stores_lock:
        store = _stores.get(url)
        if store is None:
            store = _stores[url] = _RedisStore(url) if url else _MemoryStore()
        return store


# -- the interface --------------------------------------------------------------------------


async def _attempt(store: _Store, provider_id: int, member: str, limit: int, lease_ms: int) -> bool:
    try:
        return await store.acquire(provider_id, member, limit, lease_ms)
    except BaseException:
        # Cancelled or failed after the script was sent: it may have admitted us anyway.
        await asyncio.shield(_release_quietly(store, provider_id, member))
        raise


async def _release_quietly(store: _Store, provider_id: int, member: str) -> None:
    try:
        await store.release(provider_id, member)
    except Exception as exc:  # the lease frees the slot later
        logger.warning(
            "provider slots: could not release %s of provider %s (%s); its lease will free it",
            member,
            provider_id,
            exc,
        )


async def _acquire(
    store: _Store,
    provider_id: int,
    limit: int,
    member: str,
    on_wait: Callable[[], None] | None,
    lease_ms: int,
) -> None:
    gate = store.state().gate(provider_id)
    # Someone of this loop already waits: go behind them rather than jump the line.
    if not gate.line and await _attempt(store, provider_id, member, limit, lease_ms):
        return
    if on_wait is not None:
        on_wait()
    ticket = gate.join()
    try:
        while gate.line[0] is not ticket:
            ticket.clear()
            await ticket.wait()
        await store.watch(provider_id)
        delay = BACKOFF_START_SECONDS
        while True:
            ticket.clear()  # before the attempt, so a release during it is not missed
            if await _attempt(store, provider_id, member, limit, lease_ms):
                return
            jittered = delay * random.uniform(0.5, 1.0)  # noqa: S311 (not crypto)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(jittered):
                    await ticket.wait()
            delay = min(delay * 2, BACKOFF_CAP_SECONDS)
    finally:
        gate.leave(ticket)


async def _keep_lease(store: _Store, provider_id: int, member: str, lease_ms: int) -> None:
    every = lease_ms / 3000
    while True:
        await asyncio.sleep(every)
        try:
            if not await store.renew(provider_id, member, lease_ms):
                logger.warning(
                    "provider slots: %s of provider %s lost its lease (Redis unreachable for "
                    "longer than the lease?); the call goes on outside the limit",
                    member,
                    provider_id,
                )
                return
        except Exception as exc:  # try again at the next renewal
            logger.warning("provider slots: could not renew %s: %s", member, exc)


async def _leave(store: _Store, provider_id: int, member: str, keeper: asyncio.Task[None]) -> None:
    keeper.cancel()
    # A renewal in flight must not land after the release.
    await asyncio.wait([keeper])
    await _release_quietly(store, provider_id, member)
    # Hand over at once to the next waiter of this loop (others hear the announcement).
    store.state().wake(provider_id)


@contextlib.asynccontextmanager
async def provider_slot(
    provider_id: int,
    limit: int,
    *,
    holder: str,
    on_wait: Callable[[], None] | None = None,
    lease_seconds: float = 120.0,
) -> AsyncIterator[None]:
    """Hold one of the provider's ``limit`` slots for the duration of the block.

    Waits (as long as it takes) when all are held; ``on_wait`` is called once, on the event
    loop, if the slot was not free at once: it must be quick and not block (schedule the
    "waiting for a provider slot" record elsewhere). ``holder`` names the holder in Redis
    (e.g. ``"step:<id>"``); a suffix makes each entry unique. Raises
    ``ProviderSlotsUnavailable`` if Redis cannot be reached while acquiring. Cancellation
    while waiting or holding leaves no slot held.
    """
    if limit < 1:
        raise ValueError("a provider's concurrency limit is at least 1")
    if lease_seconds <= 0:
        raise ValueError("lease_seconds must be positive")
    store = _store()
    lease_ms = max(1, round(lease_seconds * 1000))
    member = f"{holder}:{uuid.uuid4().hex}"
    await _acquire(store, provider_id, limit, member, on_wait, lease_ms)
    keeper = asyncio.get_running_loop().create_task(
        _keep_lease(store, provider_id, member, lease_ms), name=f"provider-slot-lease:{member}"
    )
    try:
        yield
    finally:
        await asyncio.shield(_leave(store, provider_id, member, keeper))


def in_use(provider_id: int) -> int:
    """How many of the provider's slots are held now (live leases), across every process.

    Raises ``ProviderSlotsUnavailable`` if Redis cannot be reached.
    """
    return _store().in_use(provider_id)


def reset(provider_id: int) -> None:
    """Forget every holder of the provider's slots (tests; an operator's last resort)."""
    _store().reset(provider_id)


async def close() -> None:
    """Close the current event loop's Redis connections (before the loop ends)."""
    await _store().close()
