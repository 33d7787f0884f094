"""The latest ToolServers and ConnectorConfigs, as an informer's cache holds them.

Filled from the watch events kopf delivers and from the answers to our own writes, whichever is
newer: a watch event older than the status we just wrote never replaces it, so a reconcile never
decides from a status that lags behind its own last write.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ..api.resource import ObjectKey, Resource, resource_version_newer


class ObjectCache:
    def __init__(self) -> None:
        self._objects: dict[ObjectKey, Resource] = {}

    def observe(self, kind: str, body: Mapping[str, Any]) -> Resource | None:
        """A body from a watch event or a write's answer; the cached resource (None if it was older)."""
        resource = Resource.from_body(kind, body)
        current = self._objects.get(resource.key)
        if current is not None and current.uid == resource.uid \
                and not resource_version_newer(resource.resource_version, current.resource_version):
            return None
        self._objects[resource.key] = resource
        return resource

    def forget(self, key: ObjectKey, uid: str | None = None) -> Resource | None:
        """A deleted object (only the incarnation with `uid`, when given)."""
        current = self._objects.get(key)
        if current is None or (uid is not None and current.uid != uid):
            return None
        return self._objects.pop(key)

    def get(self, key: ObjectKey) -> Resource | None:
        return self._objects.get(key)

    def __len__(self) -> int:
        return len(self._objects)

    def __iter__(self) -> Iterator[Resource]:
        return iter(list(self._objects.values()))
