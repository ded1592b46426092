"""Tool executors: one module per tool kind (``builtin/<tool>``, ``http_tool``, ``mcp_client``),
one entry (``base.execute_tool``) with its parts beside it (``errors``: ``ToolError`` and the
network wordings; ``schema``: JSON Schema checks; ``hosts``: allowed hosts); ``mcp_services``
registers a server's discovered tools. Imports ``agents`` and ``controlplane`` only."""
