"""The audit log: hash-chained AuditEvent rows written with every change, their redaction,
export and verification. Imports ``controlplane`` only."""
