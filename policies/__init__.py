"""Policies: Policy and its immutable versions, the decision point, stored decisions, rate
limits, budgets (spend counters) and simulation of a draft against recorded decisions.

May import: ``controlplane`` and ``agents``; never ``runs`` (runs call the decision point;
approvals, which resume runs, live in ``runs.approvals``). String model references such as
``"runs.Run"`` are not imports.
"""
