"""Budgets: spend counters per scope (a run, a tenant's UTC day) with reservations.

A budget is enforced *before* a call: ``reserve`` sets the call's estimated spend aside
with one conditional ``UPDATE`` per scope (used + reserved + estimate within every hard
limit), so concurrent calls cannot together overshoot; after the call, ``reconcile`` swaps
the estimate for the actual spend and ``release`` gives it back when the call failed
before spending. A call that spends more than its estimate can take a scope past a hard
limit by that difference; the next reservation in the scope is then refused. Soft limits
are checked at ``reserve`` (with the estimate) and again after ``reconcile`` with
``soft_crossed``.

Modules: ``values`` (limits, spend, reservations, checks, scopes), ``counters`` (the
database side: reserve, settle, read) and ``reasons`` (the words of a refusal).
"""

from policies.budgets.counters import reconcile, release, reserve, soft_crossed, spend_of
from policies.budgets.values import Budget, BudgetCheck, Reservation, Spend, day_scope, run_scope

__all__ = [
    "Budget",
    "BudgetCheck",
    "Reservation",
    "Spend",
    "day_scope",
    "reconcile",
    "release",
    "reserve",
    "run_scope",
    "soft_crossed",
    "spend_of",
]
