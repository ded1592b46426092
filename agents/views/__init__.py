"""Dashboard pages of the registry, one module per entity: agents (versions, diff, publish,
rollback, tool grants), tools, providers (test connection), MCP servers (discover), secrets
and knowledge documents.

Pages mirror the registry API: forms validate, ``agents.services`` write, and
``TenantPageMixin`` enforces the tenant and each HTTP method's permission. A page about
one object looks it up inside the tenant (another tenant's object is a 404, before any
permission is considered); agent and tool pages also accept a per-object grant, as the
API does. A page's extra actions (``op``) that need more than its POST permission name it
in their ``@operation``, which audits a refusal like the base does. Imports ``agents`` and
``controlplane`` only: an agent's memory page is served by ``runs`` (``runs.memory_page``).
"""
