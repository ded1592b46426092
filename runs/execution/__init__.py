"""The Django side of running steps: claim, execute, finish, advance, sweep.

``worker.execute_step`` is the task body: ``claim`` takes a step and runs its executor
(``executors``: one per step type; ``llm``, ``conversation`` and ``orchestration`` for
agents, through ``calls``), guarded by ``policy_guard`` (decisions, approvals, rate limits,
budgets); the step ends with one of ``outcomes``; ``finish`` records how it ended,
``progress`` asks the pure scheduler (``runs.engine``) what is next and dispatches it,
``transitions`` changes the run, ``resume`` continues a step a person answered,
``sweeper`` recovers lost work.

May import Django, ``controlplane``, ``agents``, ``policies`` and the rest of ``runs``; it is
imported by ``runs.services``, ``runs.tasks`` and the approvals that resume steps.
"""
