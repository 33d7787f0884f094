"""The only code that speaks MCP: fetch a tool list, listen for changes, the shared pool, egress."""
