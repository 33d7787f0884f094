"""ToolHive's CRDs (MCPToolConfig, MCPServer, VirtualMCPServer, MCPWebhookConfig) as `make toolhive-crds` leaves
them in the cache, from ToolHive's own Go module: for the tests and the benchmarks, never committed here."""

from __future__ import annotations

from typing import Any

import yaml

from .gateways import toolhive_dir

GROUP = "toolhive.stacklok.dev"


def toolhive_crds() -> list[dict[str, Any]]:
    """The CRDs; MissingArtifact (gateways.py) naming the make target when they were not fetched."""
    files = sorted((toolhive_dir(crds_only=True) / "crds").glob(f"{GROUP}_*.yaml"))
    return [doc for path in files for doc in yaml.safe_load_all(path.read_text()) if doc]
