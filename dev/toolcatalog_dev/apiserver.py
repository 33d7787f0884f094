"""The Kubernetes API server behaviours our operator depends on, added to kmock's emulator.

kmock's ``KubernetesEmulator`` keeps objects in memory and serves discovery, list, watch, get,
POST, PATCH and DELETE, but does not act like an API server where our operator depends on it.
``FaithfulEmulator`` adds, for every write arriving over HTTP (from kopf, the ``kubernetes``
client, kubectl or ApiEmulator's helpers):

- create: ``name`` from ``generateName`` (kopf posts Events so), ``uid``, ``creationTimestamp``,
  ``resourceVersion``, ``generation: 1`` on custom resources; ``status`` is dropped when the
  kind has the status subresource. Secrets: ``stringData`` becomes base64 ``data``.
- patch: ``resourceVersion`` changes when the object does; ``generation`` grows when anything
  but metadata and status changes (custom resources); uid, name, namespace, creationTimestamp
  stay. A merge patch with a stale ``metadata.resourceVersion`` gets 409, a failed JSON-patch
  ``test`` 422 (what kopf expects). Content types are checked: json-patch needs a list,
  merge-patch an object, strategic-merge-patch is 415 on custom resources (built-in kinds take
  it, with merge-patch semantics), apply-patch is 415.
- status subresource: a write to ``/status`` changes only ``status``; a write to the object
  never changes ``status``.
- custom resources are pruned and defaulted by their CRD schema (crds/*.yaml), as a real server
  does: a status field the CRD lacks is silently dropped. Nothing is validated: no types,
  enums, patterns or CEL rules (the operator validates specs with models.py).
- deleting an object deletes the objects whose ``ownerReferences`` name its uid, transitively.
- ``labelSelector`` on list and watch; discovery and list shapes that kubectl accepts; kmock
  0.8's URL parser is fixed for ``/api/v1/namespaces[/<name>]``.

Not emulated: PUT, server-side apply, strategic-merge list merging, ``fieldSelector``, watch
``resourceVersion`` (a watch replays every object as ADDED, then streams changes), bookmarks,
watch timeouts, Table output (kubectl shows NAME and AGE only), RBAC, admission, namespace
existence; on DELETE with finalizers kmock sets ``deletionTimestamp`` without bumping
``resourceVersion``. kmock's request log shows the normalised patch, not the client's body.
"""
from __future__ import annotations

import asyncio
import base64
import contextvars
import copy
import datetime
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import attrs
import jsonpatch
import kmock
import kmock._internal.parsing as _kmock_parsing

_DISPATCHING: contextvars.ContextVar[kmock.Request | None] = contextvars.ContextVar("dispatching", default=None)
_WRITES = (kmock.action.CREATE, kmock.action.UPDATE, kmock.action.DELETE)
_SELECTOR_TERM = re.compile(
    r"\s*(?P<neg>!)?(?P<key>[\w./-]+)\s*"
    r"(?:(?P<op>==|=|!=)\s*(?P<value>[\w.-]*)|\s(?P<setop>in|notin)\s*\((?P<values>[^)]*)\))?\s*(?:,|$)")


def _parse_path(path: str, _parse: Any = _kmock_parsing.parse_path) -> Any:
    """kmock 0.8 reads /api/v1/namespaces[/<name>] as a namespace prefix and fails: fix that."""
    parts = path.strip("/").split("/")
    if parts[:3] == ["api", "v1", "namespaces"] and len(parts) <= 4:
        return _kmock_parsing.ParsedPath("", "v1", "namespaces", None, (parts[3:] or [None])[0])
    return _parse(path)


if getattr(_kmock_parsing.parse_path, "__module__", "") != __name__:
    _kmock_parsing.parse_path = _parse_path


def _error(status: int, reason: str, message: str) -> kmock.KubernetesError:
    return kmock.KubernetesError(status=status, reason=reason, message=message)


def prune_and_default(value: Any, schema: dict[str, Any]) -> Any:
    """What a real API server does to a custom resource: drop unknown fields, fill defaults."""
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [prune_and_default(item, schema["items"]) for item in value]
    if not isinstance(value, dict) or schema.get("x-kubernetes-preserve-unknown-fields"):
        return value
    if "properties" in schema:
        props = schema["properties"]
        result = {k: prune_and_default(v, props[k]) for k, v in value.items() if k in props}
        for name, sub in props.items():
            if name not in result and "default" in sub:
                result[name] = prune_and_default(copy.deepcopy(sub["default"]), sub)
        return result
    if isinstance(schema.get("additionalProperties"), dict):
        return {k: prune_and_default(v, schema["additionalProperties"]) for k, v in value.items()}
    return {}


def merge_diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The RFC 7386 merge patch that turns ``old`` into ``new``."""
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(old.get(key), dict):
            if sub := merge_diff(old[key], value):
                patch[key] = sub
        elif key not in old or old[key] != value:
            if old.get(key) is not None and isinstance(value, dict) != isinstance(old[key], dict):
                raise _error(422, "Invalid", f"{key}: cannot change between object and scalar")
            patch[key] = value
    return patch


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Kubernetes label selector semantics, equality- and set-based."""
    for term in _SELECTOR_TERM.finditer(selector.strip()):
        if not term.group(0).strip(" ,"):
            continue
        key, has = term["key"], term["key"] in labels
        if term["op"]:
            ok = (labels.get(key) == term["value"]) == (term["op"] != "!=")
        elif term["setop"]:
            values = {v.strip() for v in term["values"].split(",")}
            ok = (has and labels[key] in values) == (term["setop"] == "in")
        else:
            ok = has != bool(term["neg"])
        if not ok:
            return False
    return True


def _labels(obj: Any) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def _spec_part(obj: dict[str, Any]) -> dict[str, Any]:
    """What counts for metadata.generation: everything but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


@attrs.define(kw_only=True)
class FaithfulEmulator(kmock.KubernetesEmulator):
    """kmock's emulator plus the server-side behaviours listed in the module docstring."""

    schemas: dict[kmock.resource, dict[str, Any]] = attrs.field(factory=dict)  # CRD openAPIV3Schema
    _resource_version: int = attrs.field(default=1000, init=False)
    _write_lock: asyncio.Lock = attrs.field(factory=asyncio.Lock, init=False)

    def next_resource_version(self) -> str:
        self._resource_version += 1
        return str(self._resource_version)

    def has_status_subresource(self, resource: kmock.resource) -> bool:
        return resource in self.resources and "status" in self.resources[resource].subresources

    def __iter__(self) -> Iterator[kmock.Request]:
        """While a request is dispatched, the request log seems to hold only that request.

        kmock matches a request to a reaction by scanning the whole log through each reaction's
        filters: quadratic, 250 ms per request after 600 requests. Filters judge one request
        alone, so this is exact, unless a reaction is sliced (``[:n]``): then the slow path.
        """
        current = _DISPATCHING.get()
        if current is not None:
            yield current
        else:
            yield from super().__iter__()

    async def _handle(self, request: kmock.Request) -> Any:
        sliced = any(True for payload in self._payloads for _ in payload._walk(kmock.Slicer))
        token = _DISPATCHING.set(None if sliced else request)
        try:
            return await self._apply_and_serve(request)
        finally:
            _DISPATCHING.reset(token)

    async def _apply_and_serve(self, request: kmock.Request) -> Any:
        if request.resource is None or request.action not in _WRITES:
            return await super()._handle(request)
        async with self._write_lock:  # between reading the current object and kmock applying the write
            key = (request.resource, request.namespace, request.name)
            current = self._current(key)
            if request.action == kmock.action.CREATE:
                self._prepare_create(request)
            elif request.action == kmock.action.UPDATE and current is not None:
                self._prepare_update(request, current)
            response = await super()._handle(request)
            if current is not None and self._current(key) is None:
                await self._collect_garbage({current["metadata"].get("uid")})
            return response

    def _current(self, key: tuple[kmock.resource, str | None, str | None]) -> dict[str, Any] | None:
        if key[2] is None or key not in self.objects or self.objects[key].deleted:
            return None
        return copy.deepcopy(self.objects[key].raw)

    def _prepare_create(self, request: kmock.Request) -> None:
        obj = request.data
        if not isinstance(obj, dict):
            raise _error(400, "BadRequest", "the body must be an object")
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        if not meta.get("name"):
            raise _error(422, "Invalid", "metadata.name: Required value")
        if request.namespace:
            meta["namespace"] = request.namespace
        meta.pop("deletionTimestamp", None)
        meta.update(uid=str(uuid.uuid4()), resourceVersion=self.next_resource_version(),
                    creationTimestamp=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        if request.resource in self.schemas:
            meta["generation"] = 1
        if self.has_status_subresource(request.resource):
            obj.pop("status", None)
        normalised = self._normalise(request.resource, obj)
        obj.clear()
        obj.update(normalised)

    def _prepare_update(self, request: kmock.Request, current: dict[str, Any]) -> None:
        new = self._apply_patch(request, current)
        if self.has_status_subresource(request.resource):
            status_from = new if request.subresource == "status" else current
            new = {k: copy.deepcopy(v) for k, v in (current if request.subresource == "status" else new).items()
                   if k != "status"}
            if "status" in status_from:
                new["status"] = status_from["status"]
        meta = new.setdefault("metadata", {})
        for field in ("uid", "name", "namespace", "creationTimestamp", "generation", "resourceVersion"):
            if field in current["metadata"]:
                meta[field] = current["metadata"][field]
        new = self._normalise(request.resource, new)
        if request.resource in self.schemas and _spec_part(new) != _spec_part(current):
            new["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1
        if new != current:
            new["metadata"]["resourceVersion"] = self.next_resource_version()
        # Let kmock apply it: rewrite the body in place into the patch that yields `new`.
        if isinstance(request.data, list):
            request.data[:] = jsonpatch.make_patch(current, new).patch
        else:
            diff = merge_diff(current, new)
            request.data.clear()
            request.data.update(diff)

    def _apply_patch(self, request: kmock.Request, current: dict[str, Any]) -> dict[str, Any]:
        content_type = next((v for k, v in request.headers.items() if k.lower() == "content-type"), "")
        content_type = content_type.split(";")[0].strip()
        body = request.data
        if content_type == "application/json-patch+json" and isinstance(body, list):
            try:
                return jsonpatch.apply_patch(current, body, in_place=False)
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
                raise _error(422, "Invalid", str(exc)) from exc
        if content_type == "application/strategic-merge-patch+json" and request.resource in self.schemas:
            raise _error(415, "UnsupportedMediaType", "strategic merge patch is not supported"
                                                      " for custom resources: use merge-patch+json")
        if content_type not in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            raise _error(415, "UnsupportedMediaType", f"the patch content type {content_type!r}"
                                                      " is not supported (or not emulated)")
        if not isinstance(body, dict):
            raise _error(400, "BadRequest", "a merge patch must be an object")
        sent_version = (body.get("metadata") or {}).get("resourceVersion")
        if sent_version and sent_version != current["metadata"].get("resourceVersion"):
            raise _error(409, "Conflict", "the object has been modified; please apply your changes"
                                          " to the latest version and try again")
        patched = kmock.Object(copy.deepcopy(current))
        patched.patch(body)
        return copy.deepcopy(patched.raw)

    def _normalise(self, resource: kmock.resource, obj: dict[str, Any]) -> dict[str, Any]:
        """Prune and default custom resources, encode Secrets' stringData; metadata stays first."""
        obj = dict(obj)
        if resource == kmock.resource("v1/secrets") and obj.get("stringData"):
            data = dict(obj.get("data") or {})
            for key, text in obj.pop("stringData").items():
                data[key] = base64.b64encode(str(text).encode()).decode()
            obj["data"] = data
        schema = self.schemas.get(resource)
        if schema is not None:
            pruned = prune_and_default({k: v for k, v in obj.items() if k != "metadata"}, schema)
            obj = {"metadata": obj.get("metadata", {}), **pruned}
        head = {k: obj[k] for k in ("apiVersion", "kind", "metadata") if k in obj}
        return {**head, **obj}

    async def _collect_garbage(self, uids: set[str | None]) -> None:
        """Delete the dependents of deleted owners, transitively (as background deletion does)."""
        uids.discard(None)
        while uids:
            orphaned_uids: set[str | None] = set()
            async with self._lock:
                for (resource, _, _), obj in list(self.objects.items()):
                    if obj.deleted:
                        continue
                    owners = {ref.get("uid") for ref in obj.get("metadata", {}).get("ownerReferences") or []}
                    if owners & uids:
                        raw = obj.raw
                        obj.delete()
                        orphaned_uids.add(raw.get("metadata", {}).get("uid"))
                        await self._buses[resource].put({"type": "DELETED", "object": raw})
            orphaned_uids.discard(None)
            uids = orphaned_uids

    async def _serve_version(self, request: kmock.Request) -> Any:
        """Discovery as kubectl needs it: core groupVersion "v1"; subresources without names."""
        result = await super()._serve_version(request)
        result["groupVersion"] = result["groupVersion"].lstrip("/")
        for entry in result["resources"]:
            if "/" in entry["name"]:
                entry.update(shortNames=[], categories=[], verbs=["get", "patch", "update"])
        return result

    async def _serve_list(self, request: kmock.Request) -> Any:
        result = await super()._serve_list(request)
        selector = request.params.get("labelSelector")
        if selector:
            result["items"] = [o for o in result["items"] if selector_matches(selector, _labels(o))]
        assert request.resource is not None
        res = request.resource
        result.update(apiVersion=f"{res.group}/{res.version}".lstrip("/"),
                      kind=f"{self.resources[res].kind}List",
                      metadata={"resourceVersion": str(self._resource_version)})
        return result

    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[Any]:
        selector = request.params.get("labelSelector")
        async for event in super()._serve_watch(request):
            if not selector or not isinstance(event, dict) or selector_matches(
                    selector, _labels(event.get("object") or {})):
                yield event
