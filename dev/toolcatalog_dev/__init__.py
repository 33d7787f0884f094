"""toolcatalog's development tooling: the API-server emulator, the real control plane, test MCP
servers, the demo. Installed into the development environment (make venv), never into the image."""
