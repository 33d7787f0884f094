"""ToolHive's CRDs for the ToolAllowlist tests: from its Go module, fetched by `make toolhive-crds` into the
cache (never inside a test), installed into or removed from the test's API server."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.k8s import wait_until
from toolcatalog.api import constants as c
from toolcatalog_dev import toolhivecrds
from toolcatalog_dev.cluster import ApiError
from toolcatalog_dev.gateways import MissingArtifact

CRD = "apiextensions.k8s.io/v1/customresourcedefinitions"
TOOLCONFIG_CRD = f"{c.TOOLHIVE_TOOLCONFIG_PLURAL}.{c.TOOLHIVE_GROUP}"
MCPTOOLCONFIGS = f"{c.TOOLHIVE_GROUP}/v1beta1/{c.TOOLHIVE_TOOLCONFIG_PLURAL}"


def toolhive_crds() -> list[dict[str, Any]]:
    """ToolHive's CRDs; the test fails at once, naming the make target, when they were not fetched."""
    try:
        return toolhivecrds.toolhive_crds()
    except MissingArtifact as missing:
        pytest.fail(str(missing))


async def served(api: Any) -> bool:
    """Whether discovery serves MCPToolConfigs (what the operator looks at)."""
    try:
        answer = await api.request("GET", f"/apis/{c.TOOLHIVE_GROUP}/v1beta1")
    except ApiError as error:
        if error.status == 404:
            return False
        raise
    return any(item.get("name") == c.TOOLHIVE_TOOLCONFIG_PLURAL for item in answer.get("resources") or [])


async def install(api: Any) -> None:
    """ToolHive's CRDs, established and served (on a real server once per session: they are cluster-scoped)."""
    for crd in toolhive_crds():
        try:
            await api.create(crd)
        except ApiError as error:
            if error.status != 409:
                raise
    await wait_until(lambda: served(api), timeout=60, what="ToolHive's MCPToolConfig to be served")


async def remove(api: Any) -> None:
    """No ToolHive CRDs at all (deleting one deletes its objects, on a real server too)."""
    for crd in toolhive_crds():
        try:
            await api.delete(CRD, None, crd["metadata"]["name"])
        except ApiError as error:
            if error.status != 404:
                raise

    async def gone() -> bool:
        return await api.get(CRD, None, TOOLCONFIG_CRD) is None and not await served(api)
    await wait_until(gone, timeout=60, what="ToolHive's CRDs to be gone")
