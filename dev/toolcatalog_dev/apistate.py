"""The state side of the emulated API server: what a write does to an object, and how objects are read.

``ApiState`` keeps nothing of its own but a resourceVersion counter, the CRD schemas and a bounded
log of watch events: the objects live in kmock's ``emulator.objects``. It is used from two sides
(see apiserver.py for the whole picture):

- the front server asks it to turn a client's write into the object the server would store
  (``prepare_create``, ``prepare_update``), and tells it what changed (``publish``);
- inside kmock, ``ApiState.serve`` is installed as a reaction (``emulator ** SERVING_PRIORITY <<
  state.serve``): it answers reads (get, list, watch, discovery) and writes (the stored object)
  from ``emulator.objects`` and this event log, for every request no user reaction answered first.

Only public kmock API is used: ``kmock.KubernetesEmulator``, its ``objects`` and ``resources``
views, ``kmock.Request`` fields, ``kmock.resource``/``ResourceInfo``/``KubernetesError``, the
``**`` and ``<<`` DSL operators.
"""
from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import copy
import dataclasses
import datetime
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import jsonpatch
import kmock

from .apitable import Columns, TableReaction

NAMESPACES = kmock.resource("v1/namespaces")
SECRETS = kmock.resource("v1/secrets")
CRDS = kmock.resource("apiextensions.k8s.io/v1/customresourcedefinitions")

# Below every reaction a test adds (priority 0) and above kmock's own fallbacks (-inf). Its view is
# the whole emulator, not a filter: matching a request costs kmock an identity scan of its request
# log (microseconds), where each of kmock's filtered fallbacks re-evaluates its criteria on every
# request logged so far (~12 of them: ~150 ms per request after 1000 requests).
SERVING_PRIORITY = -1e9
HISTORY_SIZE = 10_000  # watch events kept for watches that resume from a resourceVersion

_LABEL_TERM = re.compile(
    r"\s*(?P<neg>!)?(?P<key>[\w./-]+)\s*"
    r"(?:(?P<op>==|=|!=)\s*(?P<value>[\w.-]*)|\s(?P<setop>in|notin)\s*\((?P<values>[^)]*)\))?\s*(?:,|$)")
_FIELD_TERM = re.compile(r"\s*(?P<path>[\w.-]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^,]*?)\s*")
_STATUS_VERBS = ["get", "patch", "update"]


def error(status: int, reason: str, message: str) -> kmock.KubernetesError:
    return kmock.KubernetesError(status=status, reason=reason, message=message)


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------------- helpers


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


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: null deletes a key, objects merge, anything else replaces.
    Neither argument is changed; the result may share values with both."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def merge_diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any] | None:
    """The RFC 7386 merge patch that turns ``old`` into ``new``, as kmock applies merge patches;
    None when there is none (a value becomes null, or changes between object and non-object)."""
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(old.get(key), dict):
            sub = merge_diff(old[key], value)
            if sub is None:
                return None
            if sub:
                patch[key] = sub
        elif key not in old or old[key] != value:
            if value is None or (key in old and isinstance(value, dict) != isinstance(old[key], dict)):
                return None
            patch[key] = value
    return patch


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Kubernetes label selector semantics, equality- and set-based."""
    for term in _LABEL_TERM.finditer(selector.strip()):
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


def parse_field_selector(selector: str) -> list[tuple[list[str], bool, str]]:
    """``a.b=x,c!=y`` as [(path, equal, value)]; 400 when it does not parse."""
    terms = []
    for text in selector.split(","):
        if not text.strip():
            continue
        term = _FIELD_TERM.fullmatch(text)
        if term is None:
            raise error(400, "BadRequest", f"invalid field selector: {text!r}")
        terms.append((term["path"].split("."), term["op"] != "!=", term["value"]))
    return terms


def field_value(obj: Any, path: list[str]) -> str:
    for part in path:
        obj = obj.get(part) if isinstance(obj, dict) else None
    if isinstance(obj, bool):
        return "true" if obj else "false"
    return "" if obj is None else str(obj)


def labels_of(obj: dict[str, Any]) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def spec_part(obj: dict[str, Any]) -> dict[str, Any]:
    """What counts for metadata.generation: everything but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def by_name(item: tuple[tuple[Any, ...], Any]) -> tuple[str, str]:
    """Sort (key, object) pairs as a real server lists them: by namespace, then name."""
    return item[0][1] or "", item[0][2] or ""


def metadata_only(headers: Any, listing: bool) -> bool:
    """Whether a read asks for metadata only, as a real server reads the Accept header: the first media
    type it can serve wins; ``as=PartialObjectMetadataList;g=meta.k8s.io;v=v1`` fits a list,
    ``as=PartialObjectMetadata`` one object or a watch. Other ``as=`` forms (a Table) are skipped, and
    then the objects are served; 406 if only PartialObjectMetadata of the wrong form was asked for."""
    accept = next((str(value) for key, value in dict(headers or {}).items() if key.lower() == "accept"), "")
    wanted = "PartialObjectMetadataList" if listing else "PartialObjectMetadata"
    partial = False
    for media in accept.split(","):
        kind, *parameters = (part.strip() for part in media.split(";"))
        options = dict(part.split("=", 1) for part in parameters if "=" in part)
        if "as" not in options:
            if kind in ("application/json", "*/*", "application/*", ""):
                return False
            continue
        if options["as"].startswith("PartialObjectMetadata"):
            partial = True
            if options["as"] == wanted and options.get("g") == "meta.k8s.io" and options.get("v") in ("v1", "v1beta1"):
                return True
    if partial:
        raise error(406, "NotAcceptable", f"you requested PartialObjectMetadata{'' if listing else 'List'}, but "
                                          f"the requested object is {'a list' if listing else 'not a list'}")
    return False


def partial_metadata(obj: dict[str, Any]) -> dict[str, Any]:
    """An object as PartialObjectMetadata: its metadata and nothing else."""
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata") or {}}


def partial_list(listing: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
            "metadata": listing.get("metadata") or {},
            "items": [partial_metadata(item) for item in listing.get("items") or []]}


async def partial_events(events: AsyncIterator[bytes | dict[str, Any]]) -> AsyncIterator[bytes | dict[str, Any]]:
    """A watch stream with each event's object as PartialObjectMetadata (errors stay Status objects)."""
    async with contextlib.aclosing(events) as items:  # type: ignore[type-var]
        async for item in items:
            if isinstance(item, dict) and item.get("type") != "ERROR":
                item = {**item, "object": partial_metadata(item.get("object") or {})}
            yield item


def api_version(resource: kmock.resource) -> str:
    return f"{resource.group}/{resource.version}" if resource.group else str(resource.version)


@dataclasses.dataclass(frozen=True)
class Target:
    """What a request path names: a resource, maybe in a namespace, maybe one object of it."""

    resource: kmock.resource
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None


def parse_path(path: str) -> Target | None:
    """``/api/v1/...`` or ``/apis/<group>/<version>/...`` with a resource in it, else None.

    Unlike kmock 0.8's parser, ``/api/v1/namespaces`` and ``/api/v1/namespaces/<name>`` are the
    namespaces resource, not a namespace prefix."""
    parts = path.strip("/").split("/")
    if parts[0] == "api" and len(parts) >= 3:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[0] == "apis" and len(parts) >= 4:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
        namespace, rest = rest[1], rest[2:]
    name = rest[1] if len(rest) > 1 else None
    return Target(kmock.resource(group, version, rest[0]), namespace, name, "/".join(rest[2:]) or None)


@dataclasses.dataclass(frozen=True)
class Selection:
    """Which objects a list or watch wants: namespace, name, labelSelector, fieldSelector."""

    namespace: str | None = None
    name: str | None = None
    labels: str = ""
    fields: tuple[tuple[tuple[str, ...], bool, str], ...] = ()

    @classmethod
    def of(cls, target: Target, params: Any) -> Selection:
        fields = parse_field_selector(params.get("fieldSelector") or "")
        return cls(target.namespace, target.name, params.get("labelSelector") or "",
                   tuple((tuple(path), equal, value) for path, equal, value in fields))

    def __call__(self, obj: dict[str, Any] | None) -> bool:
        if obj is None:
            return False
        meta = obj.get("metadata") or {}
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        if self.name is not None and meta.get("name") != self.name:
            return False
        if self.labels and not selector_matches(self.labels, labels_of(obj)):
            return False
        return all((field_value(obj, list(path)) == value) == equal for path, equal, value in self.fields)


@dataclasses.dataclass(frozen=True)
class Event:
    rv: int
    resource: kmock.resource
    type: str  # ADDED, MODIFIED, DELETED
    obj: dict[str, Any]
    old: dict[str, Any] | None = None  # the object before a MODIFIED, for selectors

    def seen_through(self, selection: Selection) -> dict[str, Any] | None:
        """The event as a watch with this selection sees it (k8s semantics: an object that starts
        or stops matching a selector is ADDED or DELETED for that watch), or None."""
        now_in, was_in = selection(self.obj), selection(self.old)
        kind = self.type
        if kind == "MODIFIED" and now_in != was_in:
            kind = "ADDED" if now_in else "DELETED"
        return {"type": kind, "object": self.obj} if now_in or was_in else None


# ------------------------------------------------------------------------------------------ state


class ApiState:
    """Server-side semantics over kmock's object store; see the module docstring."""

    def __init__(self, emulator: kmock.KubernetesEmulator, history_size: int = HISTORY_SIZE) -> None:
        self.emulator = emulator
        self.schemas: dict[kmock.resource, dict[str, Any]] = {}  # CRD openAPIV3Schema per resource
        self.columns: dict[kmock.resource, Columns] = {}  # CRD printer columns per resource (apitable.py)
        self.last_rv = 1000        # the last resourceVersion handed out
        self.published_rv = 1000   # the last one a watch event carried: what lists report
        self.history: collections.deque[Event] = collections.deque(maxlen=history_size)
        self.history_floor = 1000  # watches from an older resourceVersion get 410 Gone
        self.latest: dict[tuple[Any, ...], dict[str, Any]] = {}  # the last event's object per object
        self.watchers: dict[kmock.resource, set[asyncio.Queue[Event | None]]] = collections.defaultdict(set)
        self.closed = False

    # -------------------------------------------------------------- resources

    def declare(self, resource: kmock.resource, info: kmock.ResourceInfo,
                schema: dict[str, Any] | None = None) -> None:
        self.emulator.resources[resource] = info
        if schema is not None:
            self.schemas[resource] = schema

    def declare_crd(self, crd: dict[str, Any]) -> None:
        """Serve the resources of a CustomResourceDefinition, with its schema and subresources."""
        spec, names = crd["spec"], crd["spec"]["names"]
        for version in spec.get("versions") or []:
            if not version.get("served", True):
                continue
            resource = kmock.resource(spec["group"], version["name"], names["plural"])
            self.declare(
                resource,
                kmock.ResourceInfo(kind=names["kind"], singular=names.get("singular") or names["kind"].lower(),
                                   namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                                   verbs={"get", "list", "watch", "create", "patch", "update", "delete",
                                          "deletecollection"},
                                   shortnames=names.get("shortNames") or [],
                                   categories=names.get("categories") or [],
                                   subresources=set(version.get("subresources") or {})),
                (version.get("schema") or {}).get("openAPIV3Schema") or {"x-kubernetes-preserve-unknown-fields": True})
            self.columns[resource] = Columns(version.get("additionalPrinterColumns"))

    def info(self, resource: kmock.resource) -> kmock.ResourceInfo | None:
        # Check first: kmock's resources view creates an empty entry on reading an unknown key.
        return self.emulator.resources[resource] if resource in self.emulator.resources else None

    def has_status_subresource(self, resource: kmock.resource) -> bool:
        info = self.info(resource)
        return info is not None and "status" in info.subresources

    def namespaced(self, resource: kmock.resource) -> bool:
        info = self.info(resource)
        return bool(info is not None and info.namespaced)

    def key(self, target: Target, name: str | None = None) -> tuple[kmock.resource, str | None, str]:
        namespace = target.namespace if self.namespaced(target.resource) else None
        return target.resource, namespace, str(name or target.name)

    def path(self, resource: kmock.resource, namespace: str | None, name: str | None = None) -> str:
        version = str(resource.version)
        parts = ["/api", version] if not resource.group else ["/apis", resource.group, version]
        if namespace is not None and self.namespaced(resource):
            parts += ["namespaces", namespace]
        return "/".join([*parts, str(resource.plural), *([name] if name else [])])

    # -------------------------------------------------------------- objects

    def current(self, key: tuple[kmock.resource, str | None, str]) -> dict[str, Any] | None:
        """A copy of the stored object, or None."""
        if key not in self.emulator.objects or self.emulator.objects[key].deleted:
            return None
        return copy.deepcopy(self.emulator.objects[key].raw)

    def objects_of(self, resource: kmock.resource) -> Iterator[tuple[tuple[Any, ...], dict[str, Any]]]:
        for key, obj in list(self.emulator.objects.items()):
            if key[0] == resource and not obj.deleted:
                yield key, obj.raw

    def next_rv(self) -> int:
        self.last_rv += 1
        return self.last_rv

    # -------------------------------------------------------------- writes

    def prepare_create(self, target: Target, obj: Any) -> dict[str, Any]:
        """The object a POST of ``obj`` stores: server-assigned metadata, pruned and defaulted."""
        if not isinstance(obj, dict):
            raise error(400, "BadRequest", "the body must be an object")
        obj = copy.deepcopy(obj)
        resource = target.resource
        info = self.info(resource)
        obj.setdefault("apiVersion", api_version(resource))
        if info is not None and info.kind:
            obj.setdefault("kind", info.kind)
        meta = obj.get("metadata")
        meta = obj["metadata"] = dict(meta) if isinstance(meta, dict) else {}
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        if not meta.get("name"):
            raise error(422, "Invalid", "metadata.name: Required value: name or generateName is required")
        if self.namespaced(resource):
            if target.namespace and meta.get("namespace") not in (None, "", target.namespace):
                raise error(400, "BadRequest", "the namespace of the provided object does not match"
                                               " the namespace sent on the request")
            meta["namespace"] = target.namespace or meta.get("namespace") or "default"
        else:
            meta.pop("namespace", None)
        for field in ("deletionTimestamp", "deletionGracePeriodSeconds", "managedFields"):
            meta.pop(field, None)
        meta.update(uid=str(uuid.uuid4()), resourceVersion=str(self.next_rv()), creationTimestamp=now())
        if resource in self.schemas or resource == CRDS:
            meta["generation"] = 1
        if self.has_status_subresource(resource) or resource == CRDS:
            obj.pop("status", None)
        obj = self.normalise(resource, obj)
        if resource == CRDS:
            obj["status"] = {"acceptedNames": copy.deepcopy((obj.get("spec") or {}).get("names") or {}),
                             "storedVersions": [v["name"] for v in (obj.get("spec") or {}).get("versions") or []
                                                if v.get("storage")],
                             "conditions": [{"type": t, "status": "True", "lastTransitionTime": now(),
                                             "reason": r, "message": ""}
                                            for t, r in (("NamesAccepted", "NoConflicts"),
                                                         ("Established", "InitialNamesAccepted"))]}
        return obj

    def prepare_update(self, target: Target, current: dict[str, Any], body: Any,
                       content_type: str) -> dict[str, Any]:
        """The object a PATCH of ``body`` to the ``current`` object leaves stored."""
        resource = target.resource
        if target.subresource is not None and (target.subresource not in (self.info(resource) or
                                                                          kmock.ResourceInfo()).subresources):
            raise error(404, "NotFound", f"{resource.plural}/{target.subresource}: no such subresource")
        new = self.apply_patch(resource, current, body, content_type)
        if self.has_status_subresource(resource):
            to_status = target.subresource == "status"
            status_from = new if to_status else current
            new = {k: copy.deepcopy(v) for k, v in (current if to_status else new).items() if k != "status"}
            if "status" in status_from:
                new["status"] = status_from["status"]
        meta = new.get("metadata")
        meta = new["metadata"] = dict(meta) if isinstance(meta, dict) else {}
        for field in ("uid", "name", "namespace", "creationTimestamp", "generation", "resourceVersion",
                      "deletionTimestamp", "deletionGracePeriodSeconds"):
            if field in current["metadata"]:
                meta[field] = current["metadata"][field]
            else:
                meta.pop(field, None)
        new = self.normalise(resource, new)
        if (resource in self.schemas or resource == CRDS) and spec_part(new) != spec_part(current):
            new["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1
        if new != current:
            new["metadata"]["resourceVersion"] = str(self.next_rv())
        return new

    def apply_patch(self, resource: kmock.resource, current: dict[str, Any], body: Any,
                    content_type: str) -> dict[str, Any]:
        content_type = content_type.split(";")[0].strip().lower()
        if content_type == "application/json-patch+json":
            if not isinstance(body, list):
                raise error(400, "BadRequest", "a JSON patch must be a list of operations")
            try:
                patched: dict[str, Any] = jsonpatch.apply_patch(current, body, in_place=False)
                return patched
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
                raise error(422, "Invalid", str(exc)) from exc
        if content_type == "application/strategic-merge-patch+json" and (resource in self.schemas
                                                                         or resource == CRDS):
            raise error(415, "UnsupportedMediaType", "strategic merge patch is not supported for custom"
                                                     " resources: use application/merge-patch+json")
        if content_type not in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            raise error(415, "UnsupportedMediaType", f"the patch content type {content_type!r} is not"
                                                     " supported (or not emulated)")
        if not isinstance(body, dict):
            raise error(400, "BadRequest", "a merge patch must be an object")
        sent_version = (body.get("metadata") or {}).get("resourceVersion")
        if sent_version and sent_version != current["metadata"].get("resourceVersion"):
            raise error(409, "Conflict", "the object has been modified; please apply your changes"
                                         " to the latest version and try again")
        merged: dict[str, Any] = merge_patch(current, body)
        return merged

    def normalise(self, resource: kmock.resource, obj: dict[str, Any]) -> dict[str, Any]:
        """Prune and default custom resources, encode Secrets' stringData; metadata stays first."""
        obj = dict(obj)
        if resource == SECRETS and "stringData" in obj:
            data = dict(obj.get("data") or {})
            for key, text in (obj.pop("stringData") or {}).items():
                data[key] = base64.b64encode(str(text).encode()).decode()
            obj["data"] = data
        schema = self.schemas.get(resource)
        if schema is not None:
            pruned = prune_and_default({k: v for k, v in obj.items() if k != "metadata"}, schema)
            obj = {"metadata": obj.get("metadata", {}), **pruned}
        head: dict[str, Any] = {k: obj[k] for k in ("apiVersion", "kind", "metadata") if k in obj}
        return {**head, **obj}

    def deletion_mark(self) -> dict[str, Any]:
        """The merge patch that marks an object with finalizers as being deleted."""
        return {"metadata": {"deletionTimestamp": now(), "deletionGracePeriodSeconds": 0,
                             "resourceVersion": str(self.next_rv())}}

    # -------------------------------------------------------------- watch events

    def publish(self, resource: kmock.resource, kind: str, obj: dict[str, Any],
                old: dict[str, Any] | None = None) -> None:
        """Record a change for watches. DELETED events get a resourceVersion of their own.

        Events hold the objects as kmock stored them, not copies: kmock never changes a stored
        version in place (a patch makes a new one) and keeps every version anyway."""
        meta = dict(obj.get("metadata") or {})
        key = (resource, meta.get("namespace"), meta.get("name"))
        previous = self.latest.get(key)
        if old is not None and previous is not None and previous == old:
            old = previous  # the same state: keep one of them
        if kind == "DELETED":
            meta["resourceVersion"] = str(self.next_rv())
            obj = {**obj, "metadata": meta}
            self.latest.pop(key, None)
        else:
            self.latest[key] = obj
        try:
            rv = int(meta.get("resourceVersion") or 0)
        except ValueError:
            rv = 0
        rv = max(rv, self.published_rv)
        self.published_rv = rv
        if len(self.history) == self.history.maxlen:
            self.history_floor = self.history[0].rv
        event = Event(rv, resource, kind, obj, old)
        self.history.append(event)
        for queue in self.watchers.get(resource, ()):
            queue.put_nowait(event)

    def close(self) -> None:
        """End every watch stream (at shutdown)."""
        self.closed = True
        for queues in self.watchers.values():
            for queue in queues:
                queue.put_nowait(None)

    def watch(self, target: Target, params: Any) -> AsyncIterator[bytes | dict[str, Any]]:
        """A watch stream: initial events as the parameters ask, then changes as they happen.

        ``resourceVersion`` unset or "0": ADDED for every current object first. Another
        ``resourceVersion``: the changes after it (410 Gone when they are no longer kept).
        ``sendInitialEvents=true``: ADDED for every current object, then a BOOKMARK annotated
        ``k8s.io/initial-events-end``. ``timeoutSeconds`` ends the stream. No periodic bookmarks.
        """
        selection = Selection.of(target, params)  # raises 400 now, before the stream starts
        try:
            timeout = float(params["timeoutSeconds"]) if params.get("timeoutSeconds") else None
        except ValueError:
            raise error(400, "BadRequest", "timeoutSeconds must be a number") from None
        return self.stream(target.resource, selection, params.get("resourceVersion") or "",
                           params.get("sendInitialEvents") == "true", timeout)

    async def stream(self, resource: kmock.resource, selection: Selection, since: str,
                     initial_events: bool, timeout: float | None) -> AsyncIterator[bytes | dict[str, Any]]:
        # Subscribe and take the initial events in one go, with no await between them.
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self.watchers[resource].add(queue)
        try:
            initial: list[dict[str, Any]] = []
            if initial_events or since in ("", "0"):
                initial = [{"type": "ADDED", "object": raw}
                           for _, raw in sorted(self.objects_of(resource), key=by_name)
                           if selection(raw)]
                if initial_events:
                    info = self.info(resource) or kmock.ResourceInfo()
                    initial.append({"type": "BOOKMARK", "object": {
                        "kind": info.kind, "apiVersion": api_version(resource),
                        "metadata": {"resourceVersion": str(self.published_rv),
                                     "annotations": {"k8s.io/initial-events-end": "true"}}}})
            elif not since.isdigit() or int(since) < self.history_floor:
                initial = [{"type": "ERROR", "object": {
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "code": 410,
                    "reason": "Expired", "message": f"too old resource version: {since}"}}]
            else:
                initial = [seen for event in list(self.history)
                           if event.rv > int(since) and event.resource == resource
                           if (seen := event.seen_through(selection)) is not None]
            yield b""  # the headers go now, even if nothing happens for a while
            for item in initial:
                yield item
                if item["type"] == "ERROR":
                    return
            deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
            while not self.closed:
                left = None if deadline is None else deadline - asyncio.get_running_loop().time()
                if left is not None and left <= 0:
                    return
                try:
                    event = await asyncio.wait_for(queue.get(), left)
                except TimeoutError:
                    return
                if event is None:
                    return
                if (seen := event.seen_through(selection)) is not None:
                    yield seen
        finally:
            self.watchers[resource].discard(queue)

    # -------------------------------------------------------------- reads

    def get_object(self, target: Target) -> dict[str, Any]:
        key = self.key(target)
        if key not in self.emulator.objects or self.emulator.objects[key].deleted:
            raise error(404, "NotFound", f'{target.resource.plural} "{target.name}" not found')
        return self.emulator.objects[key].raw

    def list_objects(self, target: Target, params: Any) -> dict[str, Any]:
        selection = Selection.of(target, params)
        items = [raw for _, raw in sorted(self.objects_of(target.resource), key=by_name)
                 if selection(raw)]
        info = self.info(target.resource) or kmock.ResourceInfo()
        kind = info.kind or str(target.resource.plural).capitalize()
        return {"apiVersion": api_version(target.resource), "kind": f"{kind}List",
                "metadata": {"resourceVersion": str(self.published_rv)}, "items": items}

    def api_versions(self) -> dict[str, Any]:
        return {"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]}

    def group_versions(self) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for resource in self.emulator.resources:
            if resource.group and resource.version not in groups.setdefault(resource.group, []):
                groups[resource.group].append(str(resource.version))
        return groups

    def api_group(self, group: str) -> dict[str, Any]:
        versions = self.group_versions().get(group)
        if not versions:
            raise error(404, "NotFound", f"the server could not find the requested resource: group {group}")
        listed = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": listed,
                "preferredVersion": listed[0]}

    def api_groups(self) -> dict[str, Any]:
        groups = [self.api_group(group) for group in sorted(self.group_versions())]
        for group in groups:
            del group["kind"], group["apiVersion"]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def api_resources(self, group: str, version: str) -> dict[str, Any]:
        """Discovery of one group version as kubectl and kopf read it: subresources included."""
        entries: list[dict[str, Any]] = []
        for resource in self.emulator.resources:
            if resource.group != group or resource.version != version:
                continue
            info = self.emulator.resources[resource]
            kind = info.kind or str(resource.plural).capitalize()
            entries.append({"name": resource.plural, "singularName": info.singular or kind.lower(),
                            "namespaced": bool(info.namespaced), "kind": kind, "verbs": sorted(info.verbs),
                            "shortNames": sorted(info.shortnames), "categories": sorted(info.categories)})
            entries.extend({"name": f"{resource.plural}/{sub}", "singularName": "", "namespaced": bool(info.namespaced),
                            "kind": kind, "verbs": _STATUS_VERBS} for sub in sorted(info.subresources))
        if not entries and group:
            raise error(404, "NotFound", f"the server could not find the requested resource: {group}/{version}")
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": f"{group}/{version}" if group else version, "resources": entries}

    # -------------------------------------------------------------- the kmock reaction

    def install(self) -> None:
        """Serve every request that no reaction added by a test answers first."""
        (self.emulator ** SERVING_PRIORITY) << self.serve
        (self.emulator ** (SERVING_PRIORITY + 1)) << TableReaction(self.columns, self.read, self.watch_request)

    def read(self, request: kmock.Request) -> dict[str, Any]:
        """What a get or a list request names, as objects (the list with its resourceVersion)."""
        assert request.resource is not None, "TableReaction reads declared resources only"
        target = Target(request.resource, request.namespace, request.name, request.subresource)
        if request.action == kmock.action.LIST:
            return self.list_objects(target, request.params)
        return self.get_object(target)

    def watch_request(self, request: kmock.Request) -> AsyncIterator[bytes | dict[str, Any]]:
        assert request.resource is not None, "TableReaction reads declared resources only"
        return self.watch(Target(request.resource, request.namespace, request.name), request.params)

    def serve(self, request: kmock.Request) -> Any:
        """kmock reaction: the answer to a request, from ``emulator.objects`` and the event log.

        Raises NotImplementedError (kmock then tries its next reaction: its own fallbacks) for
        what this does not serve: undeclared resources, unknown paths, PUT, deletecollection.
        """
        resource, path = request.resource, request.url.path.rstrip("/")
        if request.method == kmock.method.GET and request.action != kmock.action.WATCH:
            if path == "/api":
                return self.api_versions()
            if path == "/apis":
                return self.api_groups()
            if resource is not None and resource.plural is None and resource.group is not None:
                if resource.version is None:
                    return self.api_group(resource.group)
                return self.api_resources(resource.group, resource.version)
        if resource is None or resource.plural is None or self.info(resource) is None:
            raise NotImplementedError
        target = Target(resource, request.namespace, request.name, request.subresource)
        match request.action:
            case kmock.action.LIST:
                listing = self.list_objects(target, request.params)
                return partial_list(listing) if metadata_only(request.headers, listing=True) else listing
            case kmock.action.WATCH:
                events = self.watch(target, request.params)
                return partial_events(events) if metadata_only(request.headers, listing=False) else events
            case kmock.action.FETCH:
                obj = self.get_object(target)
                return partial_metadata(obj) if metadata_only(request.headers, listing=False) else obj
            case kmock.action.CREATE:
                meta = (request.data.get("metadata") or {}) if isinstance(request.data, dict) else {}
                return self.emulator.objects[resource, request.namespace or meta.get("namespace"),
                                             str(meta.get("name"))].last.raw
            case kmock.action.UPDATE | kmock.action.DELETE:
                return self.emulator.objects[self.key(target)].last.raw  # the last state, even if just deleted
        raise NotImplementedError
