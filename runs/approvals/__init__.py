"""Approvals: the questions a run waits on (ApprovalRequest, ApprovalVote) and their lifecycle.

Who may decide, the quorum, expiry, and resuming the waiting step once decided; with the
API, the dashboard pages (inbox, one request) and the navigation's count. The models belong
to the ``runs`` app (their tables keep the names they had in ``policies``).

May import: ``controlplane``, ``agents``, ``policies`` and the rest of ``runs``.
"""
