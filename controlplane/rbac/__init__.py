"""Roles and permissions: role -> permission sets, per-object grants (guardian), the access
of a request and the audit of a refusal. Imports ``controlplane`` only."""
