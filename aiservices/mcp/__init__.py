"""The Syndarix MCP server: the platform's tools over the Model Context Protocol at ``/mcp``.

``providers`` (where tools come from; apps register theirs), ``server`` (the JSON-RPC methods),
``sessions`` (``Mcp-Session-Id`` in the shared cache), ``views`` (the Streamable HTTP transport).
"""
