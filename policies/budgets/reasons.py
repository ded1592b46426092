"""The words of a budget refusal: which scope, how much of what, against which limit."""

from __future__ import annotations

from decimal import Decimal

from policies.budgets.values import BudgetCheck


def scope_label(scope: str) -> str:
    """``run:7`` -> ``run 7``; ``day:2025-01-31`` -> ``the tenant on 2025-01-31``."""
    kind, _, rest = scope.partition(":")
    if kind == "run":
        return f"run {rest}"
    if kind == "day":
        return f"the tenant on {rest}"
    return scope


def format_amount(dimension: str, value: float | Decimal) -> str:
    """``value`` in the words of its dimension: dollars, tokens, steps or seconds."""
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


def hard_reason(scope: str, dimension: str, total: float | Decimal, limit: float) -> str:
    """Why a reservation was refused: the total it would reach against the hard limit."""
    bound = format_amount(dimension, limit) if dimension == "cost_usd" else f"{int(limit):,}"
    return (
        f"{scope_label(scope)} would {_VERBS[dimension]} {format_amount(dimension, total)} "
        f"of its {bound} {_NOUNS[dimension]} budget"
    )


def soft_check(crossed: list[tuple[str, str, float | Decimal, float]], verb: str) -> BudgetCheck:
    """The soft ``BudgetCheck`` naming the first crossing, with every crossing's key."""
    scope, dimension, total, limit = crossed[0]
    return BudgetCheck(
        ok=False,
        hard=False,
        scope=scope,
        dimension=dimension,
        reason=(
            f"{scope_label(scope)} {verb} {format_amount(dimension, total)}, past its "
            f"soft limit of {format_amount(dimension, limit)}; approval needed to continue"
        ),
        reservation=None,
        soft_keys=tuple(f"{s}:{d}" for s, d, _, _ in crossed),
    )
