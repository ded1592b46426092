"""Runs: workflows and their versions, runs, steps, events, approvals, the overview.

The top floor: may import ``policies``, ``agents`` and ``controlplane``; nothing imports it
but the wiring modules (``controlplane/urls.py``, ``routing.py``). Inside: ``engine/`` is pure
(no Django, no app), ``execution/`` is the Django side of running steps, ``approvals/`` the
lifecycle of the questions runs ask people.
"""
