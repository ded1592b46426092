"""The registry: agents and their versions, tools and grants, model providers, MCP servers,
secrets, knowledge documents and tickets.

Layer two of four (controlplane < agents < policies < runs): imports ``controlplane`` and
itself, never ``policies`` or ``runs``; what it needs from them (the engine's pattern and
condition checks) comes through ``controlplane.hooks``.
"""
