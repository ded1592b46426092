"""The REST API of audit events (read only). Imports ``controlplane`` only."""
