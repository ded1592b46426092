"""Rate limits: token buckets per tenant, agent and tool, checked before every call.

A call takes one token from every bucket that applies (tenant, agent, tool), all or
nothing, in one atomic step: a Lua script on Redis in production, a locked dict in
embedded mode. Redis being unreachable raises ``LimitsUnavailable``; it never allows.
Budgets (spend reservations) are in ``policies.budgets``.
"""

from __future__ import annotations

import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from controlplane.redis_names import redis_name


class LimitsUnavailable(RuntimeError):
    """The rate-limit store (Redis) could not be reached; the call must not go ahead.

    Callers treat it as a retryable failure: the limits are unknown, not exceeded.
    ``policies.budgets`` raises it too, when spend counters keep changing under a reservation.
    """


RATE_LIMIT_SCOPES = ("tenant", "agent", "tool")


@dataclass(frozen=True)
class RateLimit:
    """One token bucket from a policy definition: ``limit`` calls per ``per_seconds``.

    ``scope`` is "tenant" (every call of the tenant), "agent" or "tool"; ``target`` is the
    agent's or tool's slug, or "*" for a separate bucket per slug. ``burst`` is the bucket's
    capacity (default ``limit``): how many calls may go at once after a quiet spell.
    """

    id: str
    scope: str
    target: str
    limit: int
    per_seconds: float
    burst: int | None = None

    def __post_init__(self) -> None:
        if self.scope not in RATE_LIMIT_SCOPES:
            raise ValueError(f"rate limit {self.id!r}: scope must be one of {RATE_LIMIT_SCOPES}")
        if not self.id or not self.target:
            raise ValueError("a rate limit needs an id and a target")
        if self.limit < 1 or not self.per_seconds > 0:
            raise ValueError(f"rate limit {self.id!r}: limit >= 1 and per_seconds > 0 required")
        if self.burst is not None and self.burst < 1:
            raise ValueError(f"rate limit {self.id!r}: burst must be at least 1")

    @classmethod
    def from_definition(cls, entry: Mapping[str, Any]) -> RateLimit:
        """Build from a policy definition entry (keys as the fields, ``target`` defaulting to
        "*"); ValueError if invalid."""
        try:
            return cls(
                id=str(entry["id"]),
                scope=str(entry["scope"]),
                target=str(entry.get("target", "*")),
                limit=int(entry["limit"]),
                per_seconds=float(entry["per_seconds"]),
                burst=None if entry.get("burst") is None else int(entry["burst"]),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"invalid rate limit entry: {exc}") from exc

    @property
    def capacity(self) -> float:
        return float(self.burst if self.burst is not None else self.limit)

    @property
    def rate_per_second(self) -> float:
        return self.limit / self.per_seconds

    def subject_for(self, *, agent: str | None, tool: str | None) -> tuple[bool, str | None]:
        """Whether this limit applies to a call, and the slug its bucket is for."""
        if self.scope == "tenant":
            return True, None
        slug = agent if self.scope == "agent" else tool
        if slug is None or self.target not in ("*", slug):
            return False, None
        return True, slug


@dataclass(frozen=True)
class RateDecision:
    """The answer for one call: ``allowed``, or refused by ``limit_id`` until ``retry_after``.

    ``remaining`` is the fewest tokens left in any applicable bucket (``math.inf`` when
    no limit applies); on refusal, the tokens in the refusing bucket.
    """

    allowed: bool
    limit_id: str | None
    retry_after: float
    remaining: float


def bucket_key(tenant_id: int, limit: RateLimit, subject: str | None) -> str:
    """The bucket's storage key: per tenant, limit, scope and slug, and the limit's numbers.

    The numbers are part of the key so two different limits sharing an id never share a
    bucket (and editing a limit starts a fresh one). The ``{t<id>}`` hash tag keeps a
    tenant's buckets in one Redis Cluster slot, so one script may touch them all.
    """
    shape = f"{limit.limit}/{limit.per_seconds:g}s/{limit.capacity:g}"
    return f"{_namespace()}:{{t{tenant_id}}}:{limit.scope}:{subject or '-'}:{limit.id}:{shape}"


def _namespace() -> str:
    """Keys carry the installation (controlplane.redis_names): installations and test
    databases sharing one Redis never share a bucket between tenants with the same id."""
    return redis_name("rl")


# (key, rate_per_second, capacity) of one bucket
BucketSpec = tuple[str, float, float]
# (allowed, retry_after_seconds, remaining)
TakeResult = tuple[bool, float, float]


class RateLimiter(ABC):
    """A token-bucket store. Buckets start full; ``now`` (seconds) overrides the clock."""

    def take(
        self,
        key: str,
        rate_per_second: float,
        capacity: float,
        cost: float = 1.0,
        now: float | None = None,
    ) -> TakeResult:
        """Take ``cost`` tokens from one bucket if it has them."""
        return self.take_all([(key, rate_per_second, capacity)], cost=cost, now=now)[0]

    @abstractmethod
    def take_all(
        self, buckets: Sequence[BucketSpec], cost: float = 1.0, now: float | None = None
    ) -> list[TakeResult]:
        """Take ``cost`` from every bucket if all have it, else from none; atomic.

        One result per bucket: refusing buckets say when they will have enough; when
        anything refuses, nothing is consumed anywhere.
        """
        ...


def _check_cost(buckets: Sequence[BucketSpec], cost: float) -> None:
    for key, rate, capacity in buckets:
        if not rate > 0 or cost > capacity:
            raise ValueError(f"bucket {key}: needs rate > 0 and cost <= capacity")


class MemoryRateLimiter(RateLimiter):
    """In-process buckets for embedded mode (one process); thread-safe under one lock.

    With ``now`` omitted the clock is ``time.monotonic()``; do not mix the two on one bucket.
    """

    _PRUNE_EVERY = 1024

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float, float]] = {}  # key: (tokens, ts, full_at)
        self._calls = 0

    def take_all(
        self, buckets: Sequence[BucketSpec], cost: float = 1.0, now: float | None = None
    ) -> list[TakeResult]:
        _check_cost(buckets, cost)
        with self._lock:
            at = time.monotonic() if now is None else now
            levels: list[tuple[float, float]] = []
            for key, rate, capacity in buckets:
                tokens, ts, _ = self._buckets.get(key, (capacity, at, at))
                if at > ts:
                    tokens, ts = min(capacity, tokens + (at - ts) * rate), at
                levels.append((min(tokens, capacity), ts))
            allowed = all(tokens >= cost for tokens, _ in levels)
            results: list[TakeResult] = []
            for (key, rate, capacity), (tokens, ts) in zip(buckets, levels, strict=True):
                retry_after = 0.0
                if allowed:
                    tokens -= cost
                elif tokens < cost:
                    retry_after = (cost - tokens) / rate
                self._buckets[key] = (tokens, ts, ts + (capacity - tokens) / rate)
                results.append((allowed, retry_after, tokens))
            self._calls += 1
            if self._calls % self._PRUNE_EVERY == 0:
                # A bucket that has refilled completely is the same as no bucket at all.
                self._buckets = {k: b for k, b in self._buckets.items() if b[2] > at}
            return results


# KEYS: the buckets. ARGV[1] cost, ARGV[2] now ("" = server TIME), then rate and capacity
# per key. Reads (and refills) every bucket first; takes from all only if all have enough.
# Returns {allowed, retry_after_1, remaining_1, ...} with floats as strings (Lua numbers
# returned to Redis would be truncated to integers).
_TAKE_ALL_LUA = """
local cost = tonumber(ARGV[1])
local now
if ARGV[2] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
else
  now = tonumber(ARGV[2])
end
local n = #KEYS
local tokens, stamps = {}, {}
local allowed = 1
for i = 1, n do
  local rate, cap = tonumber(ARGV[1 + 2 * i]), tonumber(ARGV[2 + 2 * i])
  local b = redis.call('HMGET', KEYS[i], 'tokens', 'ts')
  local level, ts = tonumber(b[1]), tonumber(b[2])
  if level == nil or ts == nil then
    level, ts = cap, now
  end
  if now > ts then
    level, ts = math.min(cap, level + (now - ts) * rate), now
  end
  level = math.min(level, cap)
  tokens[i], stamps[i] = level, ts
  if level < cost then
    allowed = 0
  end
end
local out = {tostring(allowed)}
for i = 1, n do
  local rate, cap = tonumber(ARGV[1 + 2 * i]), tonumber(ARGV[2 + 2 * i])
  local level, retry = tokens[i], 0
  if allowed == 1 then
    level = level - cost
  elseif level < cost then
    retry = (cost - level) / rate
  end
  redis.call('HSET', KEYS[i], 'tokens', string.format('%.17g', level),
             'ts', string.format('%.17g', stamps[i]))
  redis.call('PEXPIRE', KEYS[i], math.max(1000, math.ceil(cap / rate * 2000)))
  out[#out + 1] = string.format('%.17g', retry)
  out[#out + 1] = string.format('%.17g', level)
end
return out
"""


class RedisRateLimiter(RateLimiter):
    """Buckets in Redis, shared by every process; one Lua script call per check.

    The script refills and takes atomically (Redis runs scripts one at a time), and uses
    the server's clock when ``now`` is omitted, so workers' clocks do not matter. A bucket
    expires after twice its full-refill time: by then it is full, the same as absent.
    Any Redis error becomes ``LimitsUnavailable``.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._script = client.register_script(_TAKE_ALL_LUA)

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 2.0) -> RedisRateLimiter:
        client = redis.Redis.from_url(
            url,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            health_check_interval=30,
            # One quick retry covers a pooled connection the server has since closed.
            retry=Retry(ExponentialBackoff(cap=0.1, base=0.02), 1),
        )
        return cls(client)

    def take_all(
        self, buckets: Sequence[BucketSpec], cost: float = 1.0, now: float | None = None
    ) -> list[TakeResult]:
        _check_cost(buckets, cost)
        if not buckets:
            return []
        args: list[str] = [repr(float(cost)), "" if now is None else repr(float(now))]
        for _, rate, capacity in buckets:
            args += [repr(float(rate)), repr(float(capacity))]
        try:
            raw = self._script(keys=[key for key, _, _ in buckets], args=args)
        except redis.RedisError as exc:
            raise LimitsUnavailable(
                f"rate limits unavailable: Redis error {type(exc).__name__}: {exc}"
            ) from exc
        allowed = int(raw[0]) == 1
        return [
            (allowed, float(raw[1 + 2 * i]), float(raw[2 + 2 * i])) for i in range(len(buckets))
        ]


_limiter: RateLimiter | None = None
_limiter_override: RateLimiter | None = None
_limiter_lock = threading.Lock()


def get_rate_limiter() -> RateLimiter:
    """The process's limiter: Redis (one client from ``settings.REDIS_URL``) in production,
    in-memory in embedded mode; ``set_rate_limiter`` replaces it (tests)."""
    global _limiter
    if _limiter_override is not None:
        return _limiter_override
    with _limiter_lock:
        if _limiter is None:
            _limiter = (
                MemoryRateLimiter()
                if settings.EMBEDDED
                else RedisRateLimiter.from_url(settings.REDIS_URL)
            )
        return _limiter


def set_rate_limiter(limiter: RateLimiter | None) -> RateLimiter | None:
    """Use ``limiter`` from now on (None: back to the default); returns the previous override."""
    global _limiter_override
    previous, _limiter_override = _limiter_override, limiter
    return previous


def check_rate_limits(
    tenant_id: int,
    limits: Sequence[RateLimit],
    *,
    agent: str | None,
    tool: str | None,
    now: float | None = None,
) -> RateDecision:
    """Take a token from every bucket that applies to this call, or from none.

    Tenant limits always apply; agent and tool limits when their target is the call's
    slug or "*" (a bucket per slug). Refused: the refusing limit with the longest wait
    (the first such in ``limits`` on a tie). Raises ``LimitsUnavailable`` if the store is down.
    """
    applicable: list[tuple[RateLimit, BucketSpec]] = []
    seen: set[str] = set()
    for limit in limits:
        applies, subject = limit.subject_for(agent=agent, tool=tool)
        key = bucket_key(tenant_id, limit, subject)
        if applies and key not in seen:  # identical limits in two policies: one bucket
            seen.add(key)
            applicable.append((limit, (key, limit.rate_per_second, limit.capacity)))
    if not applicable:
        return RateDecision(allowed=True, limit_id=None, retry_after=0.0, remaining=math.inf)
    results = get_rate_limiter().take_all([spec for _, spec in applicable], now=now)
    if results[0][0]:
        return RateDecision(
            allowed=True, limit_id=None, retry_after=0.0, remaining=min(r[2] for r in results)
        )
    refusing: tuple[RateLimit, TakeResult] | None = None
    for (limit, _), result in zip(applicable, results, strict=True):
        if result[1] > 0 and (refusing is None or result[1] > refusing[1][1]):
            refusing = (limit, result)
    assert refusing is not None  # a refusal always has a bucket short of tokens
    limit, (_, retry_after, remaining) = refusing
    return RateDecision(
        allowed=False, limit_id=limit.id, retry_after=retry_after, remaining=remaining
    )
