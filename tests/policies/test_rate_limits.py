"""Rate limits: token buckets, in memory and in Redis, and ``check_rate_limits``.

Redis tests share database 15 with other test runs, so every bucket key gets a unique
prefix and is deleted afterwards; nothing here flushes the database.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from django.conf import settings as django_settings

from policies import rate_limits
from policies.rate_limits import (
    LimitsUnavailable,
    MemoryRateLimiter,
    RateLimit,
    RedisRateLimiter,
    bucket_key,
    check_rate_limits,
    get_rate_limiter,
    set_rate_limiter,
)

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
    monkeypatch.setattr(rate_limits, "_limiter", None)
    monkeypatch.setattr(rate_limits, "_limiter_override", None)
    production = get_rate_limiter()
    assert isinstance(production, RedisRateLimiter)
    assert get_rate_limiter() is production  # one client per process
    assert production.take(_key(), 1.0, 1) == (True, 0.0, 0.0)  # talks to the real Redis

    monkeypatch.setattr(rate_limits, "_limiter", None)
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
