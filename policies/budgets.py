"""Budgets: spend counters per scope (a run, a tenant's UTC day) with reservations.

A budget is enforced *before* a call: ``reserve`` sets the call's estimated spend aside
with one conditional ``UPDATE`` per scope (used + reserved + estimate within every hard
limit), so concurrent calls cannot together overshoot; after the call, ``reconcile`` swaps
the estimate for the actual spend and ``release`` gives it back when the call failed
before spending. A call that spends more than its estimate can take a scope past a hard
limit by that difference; the next reservation in the scope is then refused. Soft limits
are checked at ``reserve`` (with the estimate) and again after ``reconcile`` with
``soft_crossed``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.db import IntegrityError, models, transaction
from django.db.models import F, Value
from django.db.models.functions import Greatest
from django.db.models.lookups import LessThanOrEqual
from django.utils import timezone

from policies.models import SpendCounter
from policies.rate_limits import LimitsUnavailable

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


def _soft_check(crossed: list[tuple[str, str, float | Decimal, float]], verb: str) -> BudgetCheck:
    """The soft ``BudgetCheck`` naming the first crossing, with every crossing's key."""
    scope, dimension, total, limit = crossed[0]
    return BudgetCheck(
        ok=False,
        hard=False,
        scope=scope,
        dimension=dimension,
        reason=(
            f"{_scope_label(scope)} {verb} {_amount(dimension, total)}, past its "
            f"soft limit of {_amount(dimension, limit)}; approval needed to continue"
        ),
        reservation=None,
        soft_keys=tuple(f"{s}:{d}" for s, d, _, _ in crossed),
    )


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
        return _soft_check(crossed, "would reach")
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
    return _soft_check(crossed, "has reached")


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
