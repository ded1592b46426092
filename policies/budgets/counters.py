"""Spend counters in the database: reserve with one conditional UPDATE per scope, check soft
limits, settle (reconcile or release), read what a scope spent."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, models, transaction
from django.db.models import F, Value
from django.db.models.functions import Greatest
from django.db.models.lookups import LessThanOrEqual
from django.utils import timezone

from policies.budgets.reasons import hard_reason, scope_label, soft_check
from policies.budgets.values import Budget, BudgetCheck, Reservation, Spend, usd
from policies.models import SpendCounter
from policies.rate_limits import LimitsUnavailable

_COST_FIELD = models.DecimalField(max_digits=14, decimal_places=6)


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
                F("cost_usd") + F("reserved_cost_usd") + Value(usd(estimate.cost_usd)),
                Value(usd(budget.cost_usd), output_field=_COST_FIELD),
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
            Decimal(counter.cost_usd) + Decimal(counter.reserved_cost_usd) + usd(estimate.cost_usd),
            budget.cost_usd,
        ),
        ("steps", counter.steps + estimate.steps, budget.steps),
    ]
    for dimension, total, limit in totals:
        if limit is None:
            continue
        bound = usd(limit) if dimension == "cost_usd" else limit
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
                reserved_cost_usd=F("reserved_cost_usd") + usd(estimate.cost_usd),
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
            if total > (usd(limit) if dimension == "cost_usd" else limit):
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
                    f"{scope_label(scope)} has run for {wall_seconds:g} s "
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
                reason=hard_reason(scope, dimension, total, limit),
                reservation=None,
            )
        reserved.append(scope)
    reservation = Reservation(tenant_id=tenant_id, scopes=reserved, estimate=estimate)
    crossed = _soft_crossings(tenant_id, budgets, soft_acknowledged)
    if crossed:
        release(reservation)
        return soft_check(crossed, "would reach")
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
    return soft_check(crossed, "has reached")


def _settle(reservation: Reservation, actual: Spend | None) -> None:
    if reservation.settled or not reservation.scopes:
        reservation.settled = True
        return
    est, got = reservation.estimate, actual or Spend()
    zero_usd = Value(Decimal(0), output_field=_COST_FIELD)
    changes: dict[str, Any] = {
        "reserved_tokens": Greatest(F("reserved_tokens") - est.tokens, 0),
        "reserved_cost_usd": Greatest(
            F("reserved_cost_usd") - Value(usd(est.cost_usd), output_field=_COST_FIELD),
            zero_usd,
            output_field=_COST_FIELD,
        ),
        "steps": Greatest(F("steps") - est.steps + got.steps, 0),
        "updated_at": timezone.now(),
    }
    if actual is not None:
        changes["tokens"] = F("tokens") + got.tokens
        changes["cost_usd"] = F("cost_usd") + usd(got.cost_usd)
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
