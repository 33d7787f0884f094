"""ToolHive's CRDs (MCPToolConfig, MCPServer, VirtualMCPServer, MCPWebhookConfig) as `make toolhive-crds` leaves
them in the cache, from ToolHive's own Go module: for the tests and the benchmarks, never committed here."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

VERSION = "v0.47.0"
GROUP = "toolhive.stacklok.dev"


def crds_dir() -> Path:
    cache = Path(os.environ.get("TOOLCATALOG_CACHE") or Path.home() / ".cache" / "toolcatalog")
    return cache / "toolhive" / VERSION / "crds"


def toolhive_crds() -> list[dict[str, Any]]:
    """The CRDs; FileNotFoundError naming the make target when they were not fetched."""
    files = sorted(crds_dir().glob(f"{GROUP}_*.yaml"))
    if not any(path.name == f"{GROUP}_mcptoolconfigs.yaml" for path in files):
        raise FileNotFoundError(f"ToolHive's CRDs are not in {crds_dir()}: run `make toolhive-crds` first")
    return [doc for path in files for doc in yaml.safe_load_all(path.read_text()) if doc]
