"""Tool executors: one module per tool kind (builtin, http, mcp), one entry (``execute_tool``)."""
