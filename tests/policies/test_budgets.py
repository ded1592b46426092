"""Budgets: reservations on spend counters, reconcile and release, hard and soft limits."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from django.db import connections

from policies.budgets import (
    Budget,
    Reservation,
    Spend,
    day_scope,
    reconcile,
    release,
    reserve,
    run_scope,
    soft_crossed,
    spend_of,
)
from policies.models import SpendCounter


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
    assert soft_crossed(tenant, budgets) is None
    reconcile(check.reservation, Spend(tokens=700))  # the call used far more
    crossed = soft_crossed(tenant, budgets)
    assert (crossed.ok, crossed.hard, crossed.soft_key) == (False, False, "run:12:tokens")
    assert crossed.reason == (
        "run 12 has reached 700 tokens, past its soft limit of 500 tokens; "
        "approval needed to continue"
    )
    assert soft_crossed(tenant, budgets, soft_acknowledged={crossed.soft_key}) is None
    assert soft_crossed(tenant, {run_scope(13): Budget(soft_tokens=1)}) is None


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
