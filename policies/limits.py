"""Rate limits (token buckets) and budgets (spend counters with reservations).

Both are enforced *before* a call, never after:

* Rate limits take one token from every bucket that applies (tenant, agent, tool), all
  or nothing, in one atomic step: a Lua script on Redis in production, a locked dict in
  embedded mode. Redis being unreachable raises ``LimitsUnavailable``; it never allows.
* Budgets reserve a call's estimated spend with one conditional ``UPDATE`` per scope
  (used + reserved + estimate within every hard limit), so concurrent calls cannot
  together overshoot; after the call, ``reconcile`` swaps the estimate for the actual
  spend and ``release`` gives it back when the call failed before spending. A call that
  spends more than its estimate can take a scope past a hard limit by that difference;
  the next reservation in the scope is then refused. Soft limits are checked at
  ``reserve`` (with the estimate) and again after ``reconcile`` with ``soft_crossed``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Protocol

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.db.models import F, Value
from django.db.models.functions import Greatest
from django.db.models.lookups import LessThanOrEqual
from django.utils import timezone

from policies.models import SpendCounter


class LimitsUnavailable(RuntimeError):
    """The rate-limit store (Redis) could not be reached; the call must not go ahead.

    Callers treat it as a retryable failure: the limits are unknown, not exceeded.
    """


# ---------------------------------------------------------------------------------------
# Rate limits
# ---------------------------------------------------------------------------------------

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
    """Keys are namespaced by database, so installations (and test databases) sharing one
    Redis never share a bucket between tenants that happen to have the same id."""
    from django.conf import settings

    name = str(settings.DATABASES["default"].get("NAME") or "default")
    return f"cp:rl:{name.rsplit('/', 1)[-1]}"


# (key, rate_per_second, capacity) of one bucket
BucketSpec = tuple[str, float, float]
# (allowed, retry_after_seconds, remaining)
TakeResult = tuple[bool, float, float]


class RateLimiter(Protocol):
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
        ...

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


class MemoryRateLimiter:
    """In-process buckets for embedded mode (one process); thread-safe under one lock.

    With ``now`` omitted the clock is ``time.monotonic()``; do not mix the two on one bucket.
    """

    _PRUNE_EVERY = 1024

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float, float]] = {}  # key: (tokens, ts, full_at)
        self._calls = 0

    def take(
        self,
        key: str,
        rate_per_second: float,
        capacity: float,
        cost: float = 1.0,
        now: float | None = None,
    ) -> TakeResult:
        return self.take_all([(key, rate_per_second, capacity)], cost=cost, now=now)[0]

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


class RedisRateLimiter:
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
        import redis
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry

        client = redis.Redis.from_url(
            url,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            health_check_interval=30,
            # One quick retry covers a pooled connection the server has since closed.
            retry=Retry(ExponentialBackoff(cap=0.1, base=0.02), 1),
        )
        return cls(client)

    def take(
        self,
        key: str,
        rate_per_second: float,
        capacity: float,
        cost: float = 1.0,
        now: float | None = None,
    ) -> TakeResult:
        return self.take_all([(key, rate_per_second, capacity)], cost=cost, now=now)[0]

    def take_all(
        self, buckets: Sequence[BucketSpec], cost: float = 1.0, now: float | None = None
    ) -> list[TakeResult]:
        import redis

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


# ---------------------------------------------------------------------------------------
# Budgets
# ---------------------------------------------------------------------------------------

_MICRO = Decimal("0.000001")
_COST_FIELD = models.DecimalField(max_digits=14, decimal_places=6)


def _usd(value: float | Decimal) -> Decimal:
    return Decimal(str(value)).quantize(_MICRO, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Budget:
    """Hard and soft limits for one scope; None is no limit.

    Crossing a hard limit stops the call; crossing a soft limit asks for approval once.
    ``wall_seconds`` is elapsed time, checked but never reserved.
    """

    tokens: int | None = None
    cost_usd: float | None = None
    steps: int | None = None
    wall_seconds: float | None = None
    soft_tokens: int | None = None
    soft_cost_usd: float | None = None
    soft_steps: int | None = None

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value is not None and value < 0:
                raise ValueError(f"budget {name} must not be negative")


@dataclass(frozen=True)
class Spend:
    """Tokens, dollars and steps (a call that starts a step has ``steps=1``)."""

    tokens: int = 0
    cost_usd: float = 0.0
    steps: int = 0


@dataclass
class Reservation:
    """What ``reserve`` set aside; settle it exactly once with ``reconcile`` or ``release``."""

    tenant_id: int
    scopes: list[str]
    estimate: Spend
    settled: bool = field(default=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form, to keep with the step so a recovered worker can settle it."""
        return {
            "tenant_id": self.tenant_id,
            "scopes": list(self.scopes),
            "estimate": {
                "tokens": self.estimate.tokens,
                "cost_usd": self.estimate.cost_usd,
                "steps": self.estimate.steps,
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reservation:
        return cls(
            tenant_id=int(data["tenant_id"]),
            scopes=[str(s) for s in data["scopes"]],
            estimate=Spend(**data["estimate"]),
        )


@dataclass(frozen=True)
class BudgetCheck:
    """``ok``: go ahead, spend is reserved. Not ok and ``hard``: stop. Not ok and not hard:
    a soft limit was crossed (nothing reserved); ask for approval, then retry with the
    keys in ``soft_keys`` ("<scope>:<dimension>") acknowledged."""

    ok: bool
    hard: bool
    scope: str | None
    dimension: str | None
    reason: str
    reservation: Reservation | None
    soft_keys: tuple[str, ...] = ()

    @property
    def soft_key(self) -> str | None:
        return f"{self.scope}:{self.dimension}" if self.scope and self.dimension else None


def run_scope(run_id: int) -> str:
    """The budget scope of one run: ``run:<id>``."""
    return f"run:{run_id}"


def day_scope(now: datetime | None = None) -> str:
    """The budget scope of one UTC day for a tenant: ``day:YYYY-MM-DD`` (naive = UTC)."""
    now = now or timezone.now()
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return f"day:{now.astimezone(UTC).date().isoformat()}"


def _scope_label(scope: str) -> str:
    kind, _, rest = scope.partition(":")
    if kind == "run":
        return f"run {rest}"
    if kind == "day":
        return f"the tenant on {rest}"
    return scope


def _amount(dimension: str, value: float | Decimal) -> str:
    if dimension == "cost_usd":
        value = Decimal(value)
        return f"${value:,.2f}" if value == 0 or abs(value) >= Decimal("0.01") else f"${value:f}"
    if dimension == "tokens":
        return f"{int(value):,} tokens"
    if dimension == "steps":
        return f"{int(value)} steps"
    return f"{float(value):g} s"


_VERBS = {"tokens": "use", "cost_usd": "spend", "steps": "take"}
_NOUNS = {"tokens": "token", "cost_usd": "cost", "steps": "step"}


def _hard_reason(scope: str, dimension: str, total: float | Decimal, limit: float) -> str:
    bound = _amount(dimension, limit) if dimension == "cost_usd" else f"{int(limit):,}"
    return (
        f"{_scope_label(scope)} would {_VERBS[dimension]} {_amount(dimension, total)} "
        f"of its {bound} {_NOUNS[dimension]} budget"
    )


def _counters(tenant_id: int):
    return SpendCounter.objects.for_tenant(tenant_id)


def _within_hard_limits(budget: Budget, estimate: Spend) -> list[LessThanOrEqual]:
    """WHERE conditions: used + reserved + estimate <= limit for each limited dimension."""
    conditions = []
    if budget.tokens is not None:
        conditions.append(
            LessThanOrEqual(
                F("tokens") + F("reserved_tokens") + Value(estimate.tokens), budget.tokens
            )
        )
    if budget.cost_usd is not None:
        conditions.append(
            LessThanOrEqual(
                F("cost_usd") + F("reserved_cost_usd") + Value(_usd(estimate.cost_usd)),
                Value(_usd(budget.cost_usd), output_field=_COST_FIELD),
            )
        )
    if budget.steps is not None:
        # Steps have no reserved column: a reserved step counts at once (release undoes it).
        conditions.append(LessThanOrEqual(F("steps") + Value(estimate.steps), budget.steps))
    return conditions


def _first_exceeded(
    counter: SpendCounter, budget: Budget, estimate: Spend
) -> tuple[str, float | Decimal, float] | None:
    """Which hard limit the estimate would cross, with the total it would reach."""
    totals: list[tuple[str, float | Decimal, float | None]] = [
        ("tokens", counter.tokens + counter.reserved_tokens + estimate.tokens, budget.tokens),
        (
            "cost_usd",
            Decimal(counter.cost_usd)
            + Decimal(counter.reserved_cost_usd)
            + _usd(estimate.cost_usd),
            budget.cost_usd,
        ),
        ("steps", counter.steps + estimate.steps, budget.steps),
    ]
    for dimension, total, limit in totals:
        if limit is None:
            continue
        bound = _usd(limit) if dimension == "cost_usd" else limit
        if total > bound:
            return dimension, total, limit
    return None


def _reserve_scope(
    tenant_id: int, scope: str, budget: Budget, estimate: Spend
) -> tuple[str, float | Decimal, float] | None:
    """Reserve in one scope; None on success, else the limit that refused."""
    conditions = _within_hard_limits(budget, estimate)
    for _ in range(20):
        updated = (
            _counters(tenant_id)
            .filter(*conditions, scope=scope)
            .update(
                reserved_tokens=F("reserved_tokens") + estimate.tokens,
                reserved_cost_usd=F("reserved_cost_usd") + _usd(estimate.cost_usd),
                steps=F("steps") + estimate.steps,
                updated_at=timezone.now(),
            )
        )
        if updated:
            return None
        counter = _counters(tenant_id).filter(scope=scope).first()
        if counter is None:
            try:
                with transaction.atomic():  # a savepoint if the caller is in a transaction
                    _counters(tenant_id).create(tenant_id=tenant_id, scope=scope)
            except IntegrityError:
                pass  # another call created it first; fine
            continue
        exceeded = _first_exceeded(counter, budget, estimate)
        if exceeded is not None:
            return exceeded
        # Refused, yet within limits now: a concurrent reservation was settled. Try again.
    raise LimitsUnavailable(f"budget {scope} is changing too fast to reserve against; retry")


def _soft_crossings(
    tenant_id: int, budgets: Mapping[str, Budget], soft_acknowledged: set[str] | frozenset[str]
) -> list[tuple[str, str, float | Decimal, float]]:
    """Soft limits that used + reserved (this reservation included) is past, unacknowledged."""
    soft_scopes = [
        s
        for s, b in budgets.items()
        if (b.soft_tokens, b.soft_cost_usd, b.soft_steps) != (None, None, None)
    ]
    if not soft_scopes:
        return []
    counters = {c.scope: c for c in _counters(tenant_id).filter(scope__in=soft_scopes)}
    crossed = []
    for scope in sorted(soft_scopes):
        budget, counter = budgets[scope], counters.get(scope)
        if counter is None:  # nothing spent in this scope yet
            continue
        totals: list[tuple[str, float | Decimal, float | None]] = [
            ("tokens", counter.tokens + counter.reserved_tokens, budget.soft_tokens),
            (
                "cost_usd",
                Decimal(counter.cost_usd) + Decimal(counter.reserved_cost_usd),
                budget.soft_cost_usd,
            ),
            ("steps", counter.steps, budget.soft_steps),
        ]
        for dimension, total, limit in totals:
            if limit is None or f"{scope}:{dimension}" in soft_acknowledged:
                continue
            if total > (_usd(limit) if dimension == "cost_usd" else limit):
                crossed.append((scope, dimension, total, limit))
    return crossed


def reserve(
    tenant_id: int,
    estimate: Spend,
    budgets: dict[str, Budget],
    *,
    wall_seconds: float | None = None,
    soft_acknowledged: set[str] | frozenset[str] = frozenset(),
) -> BudgetCheck:
    """Set ``estimate`` aside in every scope of ``budgets``, or in none.

    Each scope is one conditional UPDATE, so concurrent callers can never together go
    past a hard limit; when a later scope refuses, the earlier ones are released. Best
    called outside a transaction (each UPDATE then commits and holds no lock). Elapsed
    ``wall_seconds`` at or past a scope's ``wall_seconds`` refuses without reserving.
    Scopes without limits are still counted, so their spend is known. Raises
    ``LimitsUnavailable`` in the unlikely case the counters keep changing under it.
    """
    for scope in sorted(budgets):
        limit = budgets[scope].wall_seconds
        if limit is not None and wall_seconds is not None and wall_seconds >= limit:
            return BudgetCheck(
                ok=False,
                hard=True,
                scope=scope,
                dimension="wall_seconds",
                reason=(
                    f"{_scope_label(scope)} has run for {wall_seconds:g} s "
                    f"of its {limit:g} s wall-time budget"
                ),
                reservation=None,
            )
    reserved: list[str] = []
    # Sorted: concurrent callers inside transactions lock the rows in one order.
    for scope in sorted(budgets):
        refused = _reserve_scope(tenant_id, scope, budgets[scope], estimate)
        if refused is not None:
            release(Reservation(tenant_id=tenant_id, scopes=reserved, estimate=estimate))
            dimension, total, limit = refused
            return BudgetCheck(
                ok=False,
                hard=True,
                scope=scope,
                dimension=dimension,
                reason=_hard_reason(scope, dimension, total, limit),
                reservation=None,
            )
        reserved.append(scope)
    reservation = Reservation(tenant_id=tenant_id, scopes=reserved, estimate=estimate)
    crossed = _soft_crossings(tenant_id, budgets, soft_acknowledged)
    if crossed:
        release(reservation)
        scope, dimension, total, limit = crossed[0]
        return BudgetCheck(
            ok=False,
            hard=False,
            scope=scope,
            dimension=dimension,
            reason=(
                f"{_scope_label(scope)} would reach {_amount(dimension, total)}, past its "
                f"soft limit of {_amount(dimension, limit)}; approval needed to continue"
            ),
            reservation=None,
            soft_keys=tuple(f"{s}:{d}" for s, d, _, _ in crossed),
        )
    return BudgetCheck(
        ok=True,
        hard=False,
        scope=None,
        dimension=None,
        reason="within budget",
        reservation=reservation,
    )


def soft_crossed(
    tenant_id: int,
    budgets: Mapping[str, Budget],
    *,
    soft_acknowledged: set[str] | frozenset[str] = frozenset(),
) -> BudgetCheck | None:
    """After a ``reconcile``: the soft limits the spend is now past that nobody agreed to
    pass, as a soft (not hard) ``BudgetCheck``; None when there are none.

    ``reserve`` checks soft limits with the call's estimate; this checks them with what
    calls actually spent, so a call that cost more than its estimate is asked about at once
    instead of never (when it was the last call) or only before the next one.
    """
    crossed = _soft_crossings(tenant_id, budgets, soft_acknowledged)
    if not crossed:
        return None
    scope, dimension, total, limit = crossed[0]
    return BudgetCheck(
        ok=False,
        hard=False,
        scope=scope,
        dimension=dimension,
        reason=(
            f"{_scope_label(scope)} has reached {_amount(dimension, total)}, past its "
            f"soft limit of {_amount(dimension, limit)}; approval needed to continue"
        ),
        reservation=None,
        soft_keys=tuple(f"{s}:{d}" for s, d, _, _ in crossed),
    )


def _settle(reservation: Reservation, actual: Spend | None) -> None:
    if reservation.settled or not reservation.scopes:
        reservation.settled = True
        return
    est, got = reservation.estimate, actual or Spend()
    zero_usd = Value(Decimal(0), output_field=_COST_FIELD)
    changes: dict[str, Any] = {
        "reserved_tokens": Greatest(F("reserved_tokens") - est.tokens, 0),
        "reserved_cost_usd": Greatest(
            F("reserved_cost_usd") - Value(_usd(est.cost_usd), output_field=_COST_FIELD),
            zero_usd,
            output_field=_COST_FIELD,
        ),
        "steps": Greatest(F("steps") - est.steps + got.steps, 0),
        "updated_at": timezone.now(),
    }
    if actual is not None:
        changes["tokens"] = F("tokens") + got.tokens
        changes["cost_usd"] = F("cost_usd") + _usd(got.cost_usd)
    # One UPDATE over every scope of the reservation.
    _counters(reservation.tenant_id).filter(scope__in=reservation.scopes).update(**changes)
    reservation.settled = True


def reconcile(reservation: Reservation, actual: Spend) -> None:
    """Replace the reserved estimate with the actual spend (may exceed the estimate).

    Settles the reservation: calling it (or ``release``) again on the same object is a no-op.
    Reserved values never go below zero.
    """
    _settle(reservation, actual)


def release(reservation: Reservation) -> None:
    """Give the reservation back: the call failed before it spent anything."""
    _settle(reservation, None)


def spend_of(tenant_id: int, scope: str) -> Spend:
    """What a scope has actually spent (reservations not included; steps count at reserve)."""
    counter = _counters(tenant_id).filter(scope=scope).first()
    if counter is None:
        return Spend()
    return Spend(tokens=counter.tokens, cost_usd=float(counter.cost_usd), steps=counter.steps)
