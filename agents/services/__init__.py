"""Registry writes, one module per entity; each service is atomic, keyword-only, audited.

``secrets``, ``providers``, ``mcp_servers``, ``tools`` (and grants), ``agents`` (and
versions), ``knowledge``, ``tickets``; the steps they share are ``controlplane.entities``. Callers
import the entity's module and run inside the tenant context (the base views set it).
Secrets are never put into audit rows: snapshots list safe fields only and pass through
redaction. Imports ``agents`` and ``controlplane`` only.
"""
