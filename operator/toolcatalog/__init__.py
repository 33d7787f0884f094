"""toolcatalog: a Kubernetes operator that keeps the catalog of MCP servers' tools current."""

__version__ = "0.1.0"
