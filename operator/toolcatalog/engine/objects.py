"""The latest ToolServers and ConnectorConfigs, as an informer's cache holds them.

Filled from the watch events kopf delivers and from the answers to our own writes, whichever is
newer: a watch event older than the status we just wrote never replaces it, so a reconcile never
decides from a status that lags behind its own last write.

Each object is kept as the compressed JSON of what a reconcile reads (metadata, spec, status) and
parsed on `get`: a parsed status with its tools costs about 30 KiB per resource, the packed body
about 2 KiB, and a reconcile's parse about a tenth of a millisecond per tool.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..api import constants as c
from ..api.resource import ObjectKey, Resource, resource_version_newer

_METADATA = ("namespace", "name", "uid", "generation", "resourceVersion", "deletionTimestamp")


@dataclass(frozen=True, slots=True)
class _Entry:
    kind: str
    uid: str
    resource_version: str | None
    packed: bytes

    def resource(self) -> Resource:
        return Resource.from_body(self.kind, unpack_json(self.packed))


def pack_json(value: Any) -> bytes:
    """Compact JSON, compressed at zlib's fastest level: what the engine keeps between reconciles."""
    return zlib.compress(json.dumps(value, separators=(",", ":"), default=dict).encode("utf-8"), 1)


def unpack_json(packed: bytes) -> Any:
    return json.loads(zlib.decompress(packed))


def _pack(body: Mapping[str, Any]) -> bytes:
    """Only what Resource.from_body reads: no managedFields, labels or foreign annotations."""
    meta = body.get("metadata") or {}
    kept = {key: meta[key] for key in _METADATA if meta.get(key) is not None}
    kept["annotations"] = {key: value for key, value in (meta.get("annotations") or {}).items()
                           if key.startswith(f"{c.GROUP}/")}
    slim = {"metadata": kept, "spec": body.get("spec") or {}, "status": body.get("status") or {}}
    return pack_json(slim)


class ObjectCache:
    def __init__(self) -> None:
        self._objects: dict[ObjectKey, _Entry] = {}

    def observe(self, kind: str, body: Mapping[str, Any]) -> bool:
        """A body from a watch event or a write's answer; False if it was no newer than the one kept (the same
        version is the same object: the watch echoing the answer of our own write)."""
        meta = body.get("metadata") or {}
        key: ObjectKey = (kind, str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        uid, version = str(meta.get("uid") or ""), meta.get("resourceVersion")
        current = self._objects.get(key)
        if current is not None and current.uid == uid and (
                (version is not None and version == current.resource_version)
                or not resource_version_newer(version, current.resource_version)):
            return False
        self._objects[key] = _Entry(kind, uid, version, _pack(body))
        return True

    def forget(self, key: ObjectKey, uid: str | None = None) -> bool:
        """A deleted object (only the incarnation with `uid`, when given); False if it was not kept."""
        current = self._objects.get(key)
        if current is None or (uid is not None and current.uid != uid):
            return False
        del self._objects[key]
        return True

    def get(self, key: ObjectKey) -> Resource | None:
        entry = self._objects.get(key)
        return entry.resource() if entry is not None else None

    def body(self, key: ObjectKey) -> dict[str, Any] | None:
        """What is kept of the object (metadata, spec, status) as plain JSON: for kinds other than sources."""
        entry = self._objects.get(key)
        return unpack_json(entry.packed) if entry is not None else None

    def version(self, key: ObjectKey) -> str | None:
        """The resourceVersion kept for `key` (None: not kept), without parsing the object."""
        entry = self._objects.get(key)
        return entry.resource_version if entry is not None else None

    def keys(self) -> list[ObjectKey]:
        return list(self._objects)

    def __contains__(self, key: object) -> bool:
        return key in self._objects

    def __len__(self) -> int:
        return len(self._objects)
