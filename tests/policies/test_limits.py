"""Rate limits (token buckets, memory and Redis) and budgets (reservations on spend counters).

Redis tests share database 15 with other test runs, so every bucket key gets a unique
prefix and is deleted afterwards; nothing here flushes the database.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
import redis
from django.conf import settings as django_settings
from django.db import connections

from policies import limits
from policies.limits import (
    Budget,
    LimitsUnavailable,
    MemoryRateLimiter,
    RateLimit,
    RedisRateLimiter,
    Reservation,
    Spend,
    bucket_key,
    check_rate_limits,
    day_scope,
    get_rate_limiter,
    reconcile,
    release,
    reserve,
    run_scope,
    set_rate_limiter,
    spend_of,
)
from policies.models import SpendCounter

# --------------------------------------------------------------------------------------
# Rate limiter backends
# --------------------------------------------------------------------------------------


class PrefixedRedisLimiter(RedisRateLimiter):
    """The real Redis limiter, with keys made unique to this test and removed after it."""

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(client)
        self.prefix = f"test:{uuid.uuid4().hex}:"
        self.keys: set[str] = set()

    def take_all(self, buckets, cost=1.0, now=None):
        prefixed = [(self.prefix + key, rate, cap) for key, rate, cap in buckets]
        self.keys.update(key for key, _, _ in prefixed)
        return super().take_all(prefixed, cost=cost, now=now)

    def cleanup(self) -> None:
        if self.keys:
            self._client.delete(*self.keys)


@pytest.fixture
def redis_client():
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def redis_limiter(redis_client):
    limiter = PrefixedRedisLimiter(redis_client)
    yield limiter
    limiter.cleanup()


@pytest.fixture(params=["memory", "redis"])
def limiter(request):
    """Each backend in turn, also installed as the process's limiter."""
    if request.param == "memory":
        chosen = MemoryRateLimiter()
    else:
        chosen = request.getfixturevalue("redis_limiter")
    previous = set_rate_limiter(chosen)
    yield chosen
    set_rate_limiter(previous)


def _key() -> str:
    return f"bucket-{uuid.uuid4().hex[:8]}"


def test_bucket_allows_burst_then_refuses_with_retry_after(limiter):
    key = _key()
    # 1 token a second, room for 3.
    results = [limiter.take(key, 1.0, 3, now=100.0) for _ in range(4)]
    assert results[:3] == [(True, 0.0, 2.0), (True, 0.0, 1.0), (True, 0.0, 0.0)]
    assert results[3] == (False, 1.0, 0.0)


def test_bucket_refills_over_time_up_to_its_capacity(limiter):
    key = _key()
    for _ in range(3):
        assert limiter.take(key, 2.0, 3, now=10.0)[0]
    assert limiter.take(key, 2.0, 3, now=10.0) == (False, 0.5, 0.0)
    # A quarter second later half a token has come back: wait another quarter.
    assert limiter.take(key, 2.0, 3, now=10.25) == (False, 0.25, 0.5)
    assert limiter.take(key, 2.0, 3, now=10.5) == (True, 0.0, 0.0)
    # Long idle: full again, never more than the capacity.
    assert [limiter.take(key, 2.0, 3, now=1000.0)[0] for _ in range(4)] == [
        True,
        True,
        True,
        False,
    ]


def test_bucket_ignores_a_clock_that_goes_backwards(limiter):
    key = _key()
    assert limiter.take(key, 1.0, 1, now=50.0) == (True, 0.0, 0.0)
    # An earlier timestamp refills nothing (and does not move the bucket's clock back).
    assert limiter.take(key, 1.0, 1, now=40.0) == (False, 1.0, 0.0)
    assert limiter.take(key, 1.0, 1, now=51.0) == (True, 0.0, 0.0)


def test_take_all_is_all_or_nothing(limiter):
    roomy, empty = _key(), _key()
    assert limiter.take(empty, 1.0, 1, now=0.0)[0]
    results = limiter.take_all([(roomy, 1.0, 2), (empty, 1.0, 1)], now=0.0)
    assert [allowed for allowed, _, _ in results] == [False, False]
    assert results[0] == (False, 0.0, 2.0)  # roomy had enough, so it gives no wait
    assert results[1] == (False, 1.0, 0.0)
    # Nothing was taken from the roomy bucket: both its tokens are still there.
    assert limiter.take(roomy, 1.0, 2, now=0.0) == (True, 0.0, 1.0)
    assert limiter.take(roomy, 1.0, 2, now=0.0) == (True, 0.0, 0.0)


def test_cost_above_capacity_is_a_programming_error(limiter):
    with pytest.raises(ValueError, match="cost <= capacity"):
        limiter.take(_key(), 1.0, 2, cost=3)


def test_memory_and_redis_give_the_same_answers(redis_limiter):
    memory = MemoryRateLimiter()
    rng = random.Random(20261122)
    keys = [(_key(), rng.choice([0.5, 1.0, 3.0, 10.0]), rng.choice([1, 2, 5])) for _ in range(4)]
    now = 1_000.0
    answers: list[tuple[list, list]] = []
    for _ in range(300):
        now += rng.choice([0.0, 0.0, 0.01, 0.1, 0.37, 1.5])
        buckets = rng.sample(keys, rng.randint(1, 3))
        cost = rng.choice([1.0, 1.0, 0.5])
        answers.append(
            (
                memory.take_all(buckets, cost=cost, now=now),
                redis_limiter.take_all(buckets, cost=cost, now=now),
            )
        )
    mismatches = [(m, r) for m, r in answers if m != r]
    assert mismatches == []
    allowed = sum(1 for m, _ in answers if m[0][0])
    assert 0 < allowed < len(answers)  # the sequence exercised both outcomes


def test_redis_bucket_refills_in_real_time(redis_limiter):
    key = _key()
    # 5 tokens a second, room for 2; the server's clock decides.
    assert [redis_limiter.take(key, 5.0, 2)[0] for _ in range(3)] == [True, True, False]
    refused = redis_limiter.take(key, 5.0, 2)
    assert not refused[0] and 0 < refused[1] <= 0.2
    time.sleep(0.25)
    assert redis_limiter.take(key, 5.0, 2)[0]


def test_redis_bucket_expires_once_it_would_be_full_again(redis_limiter, redis_client):
    key = _key()
    redis_limiter.take(key, 10.0, 2)
    ttl_ms = redis_client.pttl(redis_limiter.prefix + key)
    # Full again after 0.2 s; kept for twice that, but at least a second.
    assert 0 < ttl_ms <= 1000


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_concurrent_takes_never_exceed_the_capacity(backend, request):
    limiter = (
        MemoryRateLimiter() if backend == "memory" else request.getfixturevalue("redis_limiter")
    )
    key = _key()
    start = threading.Barrier(8)

    def hammer() -> int:
        start.wait()
        # A refill of one token per ~11 days: nothing comes back during the test.
        return sum(limiter.take(key, 1e-6, 50)[0] for _ in range(25))

    with ThreadPoolExecutor(8) as pool:
        allowed = sum(pool.map(lambda _: hammer(), range(8)))
    assert allowed == 50


def test_redis_unreachable_raises_limits_unavailable():
    dead = RedisRateLimiter.from_url("redis://127.0.0.1:1/0", timeout=0.5)
    with pytest.raises(LimitsUnavailable, match="rate limits unavailable"):
        dead.take(_key(), 1.0, 1)
    previous = set_rate_limiter(dead)
    try:
        with pytest.raises(LimitsUnavailable):
            check_rate_limits(
                1, [RateLimit("all", "tenant", "*", limit=5, per_seconds=1)], agent="a", tool=None
            )
    finally:
        set_rate_limiter(previous)


def test_default_limiter_is_redis_in_production_and_memory_when_embedded(monkeypatch, settings):
    monkeypatch.setattr(limits, "_limiter", None)
    monkeypatch.setattr(limits, "_limiter_override", None)
    production = get_rate_limiter()
    assert isinstance(production, RedisRateLimiter)
    assert get_rate_limiter() is production  # one client per process
    assert production.take(_key(), 1.0, 1) == (True, 0.0, 0.0)  # talks to the real Redis

    monkeypatch.setattr(limits, "_limiter", None)
    settings.EMBEDDED = True
    assert isinstance(get_rate_limiter(), MemoryRateLimiter)

    replacement = MemoryRateLimiter()
    set_rate_limiter(replacement)
    assert get_rate_limiter() is replacement


# --------------------------------------------------------------------------------------
# check_rate_limits: scopes, per-slug buckets, all-or-nothing
# --------------------------------------------------------------------------------------


def _calls(tenant_id, rules, agent=None, tool=None, n=1, now=0.0):
    return [check_rate_limits(tenant_id, rules, agent=agent, tool=tool, now=now) for _ in range(n)]


def test_tenant_limit_applies_to_every_call(limiter):
    rules = [RateLimit("tenant-wide", "tenant", "*", limit=2, per_seconds=60)]
    first = _calls(7, rules, agent="triage")[0]
    second = _calls(7, rules, tool="search")[0]
    third = _calls(7, rules)[0]
    assert (first.allowed, second.allowed) == (True, True)
    assert first.remaining == 1.0 and second.remaining == 0.0
    assert not third.allowed
    assert third.limit_id == "tenant-wide"
    assert third.retry_after == pytest.approx(30.0)  # one token per 30 s


def test_tenants_have_separate_buckets(limiter):
    rules = [RateLimit("tenant-wide", "tenant", "*", limit=1, per_seconds=60)]
    assert _calls(7, rules)[0].allowed
    assert not _calls(7, rules)[0].allowed
    assert _calls(8, rules)[0].allowed


def test_agent_limit_applies_only_to_its_target(limiter):
    rules = [RateLimit("triage-only", "agent", target="triage", limit=1, per_seconds=60)]
    assert [d.allowed for d in _calls(7, rules, agent="triage", n=2)] == [True, False]
    assert all(d.allowed for d in _calls(7, rules, agent="writer", n=3))
    # A call with no agent (say, a workflow-level tool call) is not the agent's.
    assert all(d.allowed for d in _calls(7, rules, tool="search", n=3))


def test_star_target_gives_each_slug_its_own_bucket(limiter):
    rules = [RateLimit("per-tool", "tool", target="*", limit=2, per_seconds=60)]
    assert [d.allowed for d in _calls(7, rules, tool="search", n=3)] == [True, True, False]
    assert [d.allowed for d in _calls(7, rules, tool="email", n=3)] == [True, True, False]
    assert _calls(7, rules, tool="search")[0].limit_id == "per-tool"


def test_burst_sets_the_capacity(limiter):
    rules = [RateLimit("bursty", "agent", target="*", limit=1, per_seconds=10, burst=4)]
    assert [d.allowed for d in _calls(7, rules, agent="a", n=5)] == [True] * 4 + [False]
    # After 10 s one token is back, not four.
    later = _calls(7, rules, agent="a", n=2, now=10.0)
    assert [d.allowed for d in later] == [True, False]


def test_a_refusal_consumes_nothing_from_the_other_buckets(limiter):
    rules = [
        RateLimit("tenant-wide", "tenant", "*", limit=10, per_seconds=60),
        RateLimit("per-agent", "agent", target="*", limit=1, per_seconds=60),
    ]
    assert _calls(7, rules, agent="triage")[0].allowed
    refused = _calls(7, rules, agent="triage", n=5)
    assert {(d.allowed, d.limit_id) for d in refused} == {(False, "per-agent")}
    # The tenant bucket lost one token (the allowed call), not six.
    other = _calls(7, rules, agent="writer")[0]
    assert other.allowed
    tenant_key = bucket_key(7, rules[0], None)
    assert limiter.take_all([(tenant_key, 10 / 60, 10)], now=0.0)[0] == (True, 0.0, 7.0)


def test_the_refusal_with_the_longest_wait_is_reported(limiter):
    rules = [
        RateLimit("fast", "tenant", "*", limit=1, per_seconds=1),
        RateLimit("slow", "agent", target="triage", limit=1, per_seconds=100),
        RateLimit("tool-fast", "tool", target="*", limit=1, per_seconds=2),
    ]
    assert _calls(7, rules, agent="triage", tool="search")[0].allowed
    refused = _calls(7, rules, agent="triage", tool="search")[0]
    assert (refused.allowed, refused.limit_id) == (False, "slow")
    assert refused.retry_after == pytest.approx(100.0)


def test_no_applicable_limit_allows_without_touching_the_store(limiter):
    rules = [RateLimit("tools", "tool", target="search", limit=1, per_seconds=60)]
    decision = check_rate_limits(7, rules, agent="triage", tool=None)
    assert decision.allowed and decision.limit_id is None
    assert decision.remaining == float("inf")


def test_rate_limit_definitions_are_validated():
    entry = {"id": "x", "scope": "tool", "target": "search", "limit": 5, "per_seconds": 60}
    assert RateLimit.from_definition(entry) == RateLimit("x", "tool", "search", 5, 60.0)
    assert RateLimit.from_definition(entry).capacity == 5.0
    with pytest.raises(ValueError, match="scope"):
        RateLimit.from_definition({**entry, "scope": "run"})
    with pytest.raises(ValueError, match="per_seconds"):
        RateLimit.from_definition({**entry, "per_seconds": 0})
    with pytest.raises(ValueError, match="invalid rate limit entry"):
        RateLimit.from_definition({"id": "x"})


def test_bucket_key_separates_limits_that_differ():
    a = RateLimit("x", "agent", target="*", limit=5, per_seconds=60)
    b = RateLimit("x", "agent", target="*", limit=6, per_seconds=60)
    assert bucket_key(1, a, "triage") != bucket_key(1, b, "triage")
    assert bucket_key(1, a, "triage") != bucket_key(1, a, "writer")
    assert bucket_key(1, a, "triage") != bucket_key(2, a, "triage")
    assert "{t1}" in bucket_key(1, a, "triage")


# --------------------------------------------------------------------------------------
# Budgets
# --------------------------------------------------------------------------------------


def _counter(tenant, scope) -> SpendCounter:
    return SpendCounter.objects.for_tenant(tenant).get(scope=scope)


def test_scope_names():
    assert run_scope(42) == "run:42"
    late_evening_east = datetime(2026, 11, 23, 1, 30, tzinfo=timezone(timedelta(hours=3)))
    assert day_scope(late_evening_east) == "day:2026-11-22"
    assert day_scope(datetime(2026, 11, 22, 23, 59)) == "day:2026-11-22"  # naive is UTC
    assert day_scope() == f"day:{datetime.now(UTC).date().isoformat()}"


def test_hard_token_limit_refuses_the_call_that_would_cross(world):
    tenant, scope = world.acme.id, run_scope(1)
    budgets = {scope: Budget(tokens=100)}
    assert reserve(tenant, Spend(tokens=60), budgets).ok
    refused = reserve(tenant, Spend(tokens=50), budgets)
    assert (refused.ok, refused.hard, refused.scope, refused.dimension) == (
        False,
        True,
        scope,
        "tokens",
    )
    assert refused.reason == "run 1 would use 110 tokens of its 100 token budget"
    assert refused.reservation is None
    assert _counter(tenant, scope).reserved_tokens == 60
    # Exactly reaching the limit is allowed.
    assert reserve(tenant, Spend(tokens=40), budgets).ok
    assert _counter(tenant, scope).reserved_tokens == 100


def test_hard_cost_limit_uses_exact_decimals(world):
    tenant, scope = world.acme.id, run_scope(42)
    budgets = {scope: Budget(cost_usd=5.00)}
    assert reserve(tenant, Spend(cost_usd=3.10), budgets).ok
    refused = reserve(tenant, Spend(cost_usd=2.10), budgets)
    assert refused.hard and refused.dimension == "cost_usd"
    assert refused.reason == "run 42 would spend $5.20 of its $5.00 cost budget"
    # 0.1 + 0.2 style sums must not drift past the limit.
    assert reserve(tenant, Spend(cost_usd=1.70), budgets).ok
    assert reserve(tenant, Spend(cost_usd=0.20), budgets).ok
    assert _counter(tenant, scope).reserved_cost_usd == Decimal("5.000000")
    assert not reserve(tenant, Spend(cost_usd=0.000001), budgets).ok


def test_reconcile_replaces_the_estimate_with_the_actual_spend(world):
    tenant, scope = world.acme.id, run_scope(3)
    check = reserve(tenant, Spend(tokens=1000, cost_usd=0.5, steps=1), {scope: Budget()})
    assert check.ok and check.reservation is not None
    reconcile(check.reservation, Spend(tokens=321, cost_usd=0.123456, steps=1))
    counter = _counter(tenant, scope)
    assert (counter.reserved_tokens, counter.reserved_cost_usd) == (0, Decimal(0))
    assert spend_of(tenant, scope) == Spend(tokens=321, cost_usd=0.123456, steps=1)
    # Settled once: reconciling or releasing again changes nothing.
    reconcile(check.reservation, Spend(tokens=321, cost_usd=0.123456, steps=1))
    release(check.reservation)
    assert spend_of(tenant, scope) == Spend(tokens=321, cost_usd=0.123456, steps=1)


def test_actual_spend_above_the_estimate_is_recorded_and_blocks_later_calls(world):
    tenant, scope = world.acme.id, run_scope(4)
    budgets = {scope: Budget(tokens=100)}
    check = reserve(tenant, Spend(tokens=50), budgets)
    reconcile(check.reservation, Spend(tokens=120))
    assert spend_of(tenant, scope).tokens == 120
    # Over the limit: even a call estimated at nothing is refused now.
    refused = reserve(tenant, Spend(), budgets)
    assert refused.hard and "120 tokens of its 100 token budget" in refused.reason


def test_release_frees_the_reservation(world):
    tenant, scope = world.acme.id, run_scope(5)
    budgets = {scope: Budget(tokens=100, cost_usd=1.0, steps=1)}
    check = reserve(tenant, Spend(tokens=100, cost_usd=1.0, steps=1), budgets)
    assert check.ok
    assert not reserve(tenant, Spend(tokens=1), budgets).ok
    release(check.reservation)
    counter = _counter(tenant, scope)
    assert (counter.reserved_tokens, counter.reserved_cost_usd, counter.steps) == (0, 0, 0)
    assert spend_of(tenant, scope) == Spend()
    assert reserve(tenant, Spend(tokens=100, cost_usd=1.0, steps=1), budgets).ok


def test_reserved_values_never_go_negative(world):
    tenant, scope = world.acme.id, run_scope(6)
    reserve(tenant, Spend(tokens=10, cost_usd=0.1), {scope: Budget()})
    oversized = Reservation(tenant_id=tenant, scopes=[scope], estimate=Spend(50, 0.5, 1))
    release(oversized)
    counter = _counter(tenant, scope)
    assert (counter.reserved_tokens, counter.reserved_cost_usd, counter.steps) == (0, 0, 0)


def test_step_budget_counts_steps_not_calls_within_them(world):
    tenant, scope = world.acme.id, run_scope(7)
    budgets = {scope: Budget(steps=2)}
    first = reserve(tenant, Spend(steps=1), budgets)
    second = reserve(tenant, Spend(steps=1), budgets)
    assert first.ok and second.ok
    # Model and tool calls inside the last step still go ahead.
    assert reserve(tenant, Spend(tokens=500), budgets).ok
    third = reserve(tenant, Spend(steps=1), budgets)
    assert third.hard and third.reason == "run 7 would take 3 steps of its 2 step budget"
    release(second.reservation)  # that step never started
    assert reserve(tenant, Spend(steps=1), budgets).ok
    reconcile(first.reservation, Spend(tokens=10, steps=1))
    assert spend_of(tenant, scope).steps == 2


def test_soft_limit_asks_until_acknowledged(world):
    tenant, scope = world.acme.id, run_scope(8)
    budgets = {scope: Budget(tokens=1000, soft_tokens=500)}
    reconcile(reserve(tenant, Spend(tokens=400), budgets).reservation, Spend(tokens=400))

    soft = reserve(tenant, Spend(tokens=200), budgets)
    assert (soft.ok, soft.hard, soft.scope, soft.dimension) == (False, False, scope, "tokens")
    assert soft.soft_key == "run:8:tokens" and soft.soft_keys == ("run:8:tokens",)
    assert soft.reason == (
        "run 8 would reach 600 tokens, past its soft limit of 500 tokens; "
        "approval needed to continue"
    )
    assert soft.reservation is None
    assert _counter(tenant, scope).reserved_tokens == 0  # released

    acknowledged = reserve(tenant, Spend(tokens=200), budgets, soft_acknowledged={soft.soft_key})
    assert acknowledged.ok
    assert _counter(tenant, scope).reserved_tokens == 200
    # The hard limit still holds after the soft one is acknowledged.
    hard = reserve(tenant, Spend(tokens=401), budgets, soft_acknowledged={soft.soft_key})
    assert hard.hard and not hard.ok


def test_soft_limits_report_every_crossing_at_once(world):
    tenant, scope = world.acme.id, run_scope(9)
    budgets = {scope: Budget(soft_tokens=10, soft_cost_usd=0.01)}
    soft = reserve(tenant, Spend(tokens=20, cost_usd=0.02), budgets)
    assert not soft.ok and not soft.hard
    assert soft.soft_keys == ("run:9:tokens", "run:9:cost_usd")
    ok = reserve(
        tenant, Spend(tokens=20, cost_usd=0.02), budgets, soft_acknowledged=set(soft.soft_keys)
    )
    assert ok.ok


def test_a_call_that_spent_more_than_its_estimate_crosses_the_soft_limit_after_reconcile(world):
    tenant, scope = world.acme.id, run_scope(12)
    budgets = {scope: Budget(soft_tokens=500)}
    check = reserve(tenant, Spend(tokens=100), budgets)
    assert check.ok  # the estimate stays under the soft limit
    assert limits.soft_crossed(tenant, budgets) is None
    reconcile(check.reservation, Spend(tokens=700))  # the call used far more
    crossed = limits.soft_crossed(tenant, budgets)
    assert (crossed.ok, crossed.hard, crossed.soft_key) == (False, False, "run:12:tokens")
    assert crossed.reason == (
        "run 12 has reached 700 tokens, past its soft limit of 500 tokens; "
        "approval needed to continue"
    )
    assert limits.soft_crossed(tenant, budgets, soft_acknowledged={crossed.soft_key}) is None
    assert limits.soft_crossed(tenant, {run_scope(13): Budget(soft_tokens=1)}) is None


def test_day_and_run_scopes_both_apply(world):
    tenant, day = world.acme.id, day_scope(datetime(2026, 11, 22, 12, tzinfo=UTC))
    run_a, run_b = run_scope(10), run_scope(11)

    def budgets(run):
        return {run: Budget(tokens=100), day: Budget(tokens=150)}

    assert reserve(tenant, Spend(tokens=100), budgets(run_a)).ok
    by_day = reserve(tenant, Spend(tokens=100), budgets(run_b))
    assert (by_day.hard, by_day.scope) == (True, day)
    assert by_day.reason == "the tenant on 2026-11-22 would use 200 tokens of its 150 token budget"

    by_run = reserve(tenant, Spend(tokens=10), budgets(run_a))
    assert (by_run.hard, by_run.scope) == (True, run_a)
    # The day scope (reserved first) gave back what it had set aside for the refused call.
    assert _counter(tenant, day).reserved_tokens == 100
    assert (
        not SpendCounter.objects.for_tenant(tenant)
        .filter(scope=run_b, reserved_tokens__gt=0)
        .exists()
    )

    ok = reserve(tenant, Spend(tokens=50), budgets(run_b))
    assert ok.ok and ok.reservation.scopes == [day, run_b]
    reconcile(ok.reservation, Spend(tokens=30))
    assert spend_of(tenant, day).tokens == 30 and spend_of(tenant, run_b).tokens == 30


def test_wall_time_is_checked_without_reserving(world):
    tenant, scope = world.acme.id, run_scope(12)
    budgets = {scope: Budget(wall_seconds=300)}
    assert reserve(tenant, Spend(tokens=5), budgets, wall_seconds=299.5).ok
    late = reserve(tenant, Spend(tokens=5), budgets, wall_seconds=300)
    assert (late.ok, late.hard, late.dimension) == (False, True, "wall_seconds")
    assert late.reason == "run 12 has run for 300 s of its 300 s wall-time budget"
    assert _counter(tenant, scope).reserved_tokens == 5  # only the first call's


def test_budgets_are_per_tenant(world):
    scope = run_scope(13)
    budgets = {scope: Budget(tokens=10)}
    assert reserve(world.acme.id, Spend(tokens=10), budgets).ok
    assert reserve(world.globex.id, Spend(tokens=10), budgets).ok
    assert not reserve(world.acme.id, Spend(tokens=1), budgets).ok
    assert spend_of(world.globex.id, "run:999") == Spend()


def test_reservation_survives_a_round_trip_through_json(world):
    tenant, scope = world.acme.id, run_scope(14)
    check = reserve(tenant, Spend(tokens=70, cost_usd=0.25, steps=1), {scope: Budget()})
    restored = Reservation.from_dict(check.reservation.as_dict())
    assert restored == check.reservation
    reconcile(restored, Spend(tokens=60, cost_usd=0.2, steps=1))
    assert spend_of(tenant, scope) == Spend(tokens=60, cost_usd=0.2, steps=1)
    assert _counter(tenant, scope).reserved_tokens == 0


def test_negative_budgets_are_refused():
    with pytest.raises(ValueError, match="tokens"):
        Budget(tokens=-1)


@pytest.mark.django_db(transaction=True)
def test_concurrent_reservations_never_exceed_the_limit(world):
    tenant = world.acme.id
    day = day_scope()
    run_scopes = [run_scope(100 + i) for i in range(8)]
    start = threading.Barrier(8)

    def worker(run: str) -> int:
        granted = 0
        try:
            start.wait()
            for _ in range(10):
                check = reserve(
                    tenant,
                    Spend(tokens=7, cost_usd=0.07),
                    {run: Budget(tokens=70), day: Budget(tokens=100, cost_usd=1.0)},
                )
                if check.ok:
                    granted += 1
                    reconcile(check.reservation, Spend(tokens=7, cost_usd=0.07))
            return granted
        finally:
            connections.close_all()

    with ThreadPoolExecutor(8) as pool:
        granted = list(pool.map(worker, run_scopes))
    # The day allows floor(100 / 7) = 14 calls, shared by all eight runs.
    assert sum(granted) == 14
    assert spend_of(tenant, day) == Spend(tokens=98, cost_usd=0.98)
    assert sum(spend_of(tenant, s).tokens for s in run_scopes) == 98
    rows = SpendCounter.objects.for_tenant(tenant)
    assert {(r.reserved_tokens, r.reserved_cost_usd) for r in rows} == {(0, Decimal(0))}


@pytest.mark.django_db(transaction=True)
def test_concurrent_reservations_hold_while_in_flight(world):
    """Reservations not yet settled count against the limit for everyone else."""
    tenant, scope = world.acme.id, run_scope(200)
    start = threading.Barrier(8)
    held: list[Reservation] = []
    lock = threading.Lock()

    def worker(_: int) -> None:
        try:
            start.wait()
            for _ in range(5):
                check = reserve(tenant, Spend(tokens=3), {scope: Budget(tokens=50)})
                if check.ok:
                    with lock:
                        held.append(check.reservation)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(worker, range(8)))
    assert len(held) == 16  # floor(50 / 3)
    assert _counter(tenant, scope).reserved_tokens == 48
    for reservation in held:
        release(reservation)
    assert _counter(tenant, scope).reserved_tokens == 0
