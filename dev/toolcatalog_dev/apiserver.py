"""A Kubernetes API server for tests, built on kmock's emulator with public APIs only: ``ApiServer``.

kmock's ``KubernetesEmulator`` keeps objects in memory and serves list, watch, get, POST, PATCH and
DELETE, but it stores a write as the client sent it, before any reaction runs. So ``ApiServer``
puts a small front server (public aiohttp) before it::

    client ──HTTP──► front (ApiServer.url) ──HTTP, loopback──► kmock.Server(emulator)
                        │ rewrites writes,                         │ request log, reactions
                        │ then publishes watch events              │ (``emulator[...] << ...``),
                        │                                          │ objects; ApiState.serve
                        └──── ApiState (apistate.py) ◄─────────────┘ answers reads and writes,
                                                                     TableReaction (apitable.py) Tables

The front turns each write into the object a real server would store and forwards it so that kmock
stores exactly that (a create as the whole object, a patch as the minimal patch from the stored
object to the new one); after kmock answered, it publishes the watch event.
Everything else goes to kmock unchanged. Inside kmock, ``ApiState.serve`` is one reaction with a
priority between the reactions a test adds and kmock's own fallbacks: it answers from
``emulator.objects``. Tests keep using the emulator as kmock documents it: ``api.emulator[...] <<
418`` intercepts requests, ``list(api.emulator)`` is the request log, ``api.emulator.objects`` the
objects.

Emulated, for the requests arriving over HTTP (from kopf, the ``kubernetes`` client, kubectl or
ApiEmulator's helpers):

- create: ``name`` from ``generateName`` (kopf posts Events so), ``uid``, ``creationTimestamp``,
  ``resourceVersion``, ``generation: 1`` on custom resources and CRDs, ``apiVersion``/``kind`` if
  missing, the URL's namespace (400 if the body names another one); ``status`` is dropped when the
  kind has the status subresource. Secrets: ``stringData`` becomes base64 ``data``. An existing
  name is 409 (kmock's). A CRD created over HTTP is served from then on, with Established status.
- patch: ``resourceVersion`` changes when the object does; ``generation`` grows when anything but
  metadata and status changes (custom resources); uid, name, namespace, creationTimestamp,
  deletionTimestamp stay. A merge patch with a stale ``metadata.resourceVersion`` gets 409, a failed
  JSON-patch ``test`` 422 (what kopf expects). Content types: json-patch needs a list, merge-patch
  an object (RFC 7386), strategic-merge-patch is 415 on custom resources (built-in kinds take it,
  with merge-patch semantics), apply-patch and others 415.
- status subresource: a write to ``/status`` changes only ``status``; a write to the object never
  changes ``status``; other subresources are 404.
- custom resources are pruned and defaulted by their CRD schema (crds/*.yaml), as a real server
  does: a status field the CRD lacks is silently dropped. Nothing is validated: no types, enums,
  patterns or CEL rules (the operator validates specs itself).
- delete: without finalizers the object goes (DELETED event with a new resourceVersion); with
  finalizers it gets ``deletionTimestamp`` and a new resourceVersion (MODIFIED), and goes when a
  patch removes the last finalizer.
- watch: ADDED for the current objects when no ``resourceVersion`` is given (or "0"); from a
  ``resourceVersion``, the changes after it (the last 10000 events are kept, older is ``ERROR``
  410 Expired); ``sendInitialEvents=true`` ends the initial ADDED events with a BOOKMARK;
  ``timeoutSeconds``; with a selector, an object that starts or stops matching is ADDED or
  DELETED, as on a real server.
- metadata only: ``Accept: application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1`` on a
  list, ``as=PartialObjectMetadata`` on a get or a watch answer with the objects' ``metadata`` alone
  (kind ``PartialObjectMetadata[List]``, apiVersion ``meta.k8s.io/v1``), as a real server does; the
  wrong one of the two is 406.
- tables: ``as=Table`` on a get, a list or a watch of a custom resource answers the Table a real
  server builds from the CRD's printer columns (apitable.py, a reaction just above ``ApiState.serve``):
  ``kubectl get [-w]`` prints the same columns as on a real cluster. Built-in kinds serve objects.
- ``labelSelector`` (equality and set-based) and ``fieldSelector`` (``=``, ``==``, ``!=`` on any
  dotted field path, e.g. ``metadata.name``, ``type``) on list and watch; lists are sorted by
  namespace and name and carry ``kind: <Kind>List``, ``apiVersion`` and the current
  ``metadata.resourceVersion``; discovery (``/api``, ``/apis``, ``/api/v1``, ``/apis/<g>[/<v>]``)
  as kubectl and kopf read it, subresources included.
- resources not declared in ``emulator.resources`` are kmock's: their requests pass unchanged.
- namespaces: kmock 0.8 cannot parse ``/api/v1/namespaces[/<name>]``, so the front serves these
  requests itself from the same state (create, get, list, watch, patch, delete). They are the one
  thing not in kmock's request log and not reachable by reactions.

Not emulated: PUT (kmock answers 404), deletecollection, server-side apply, strategic-merge list
merging, bodies other than JSON (415: kubectl's typed generators such as ``kubectl create namespace
NAME`` send protobuf; ``kubectl apply/create -f``, ``patch``, ``label``, ``annotate`` send JSON),
OpenAPI documents (kubectl needs ``--validate=false``), ``limit``/``continue`` (every list is one
page), periodic BOOKMARK events, Tables of built-in kinds (kubectl shows NAME and AGE), RBAC,
authentication, admission and validation, delete preconditions and propagation, garbage collection
(deleting an owner leaves its dependents; deleting a namespace leaves its objects), namespace existence
(objects may be created in a namespace that does not exist), CRD deletion (its resources stay served),
``dryRun``. The tests of what these do run on the real control plane (``--backend=cluster``).

Caveats of the design:

- A write a test's reaction answers is still stored (kmock stores every write it receives), and
  watches see it. A write the front refuses (400, 404 on a subresource, 409, 415, 422) never
  reaches kmock, so it is not in the request log.
- kmock's request log shows the normalised write (the created object, the minimal patch from the
  stored object, or a JSON patch when a merge patch cannot express it), with the client's headers.
- Writes are serialised (from reading the stored object to publishing the event): a reaction must
  not write through ``url`` while it answers a write, it would wait for itself.
- Objects changed directly in ``emulator.objects`` produce no watch events, and kmock's own client
  (``emulator.get(...)``, ``emulator.url``) goes to kmock, not through the front: use ``url``.

Speed: kmock matches each request against each reaction by scanning its whole request log, so a
request costs O(requests so far) per filtered reaction it is checked against: with kmock's dozen
own fallbacks, ~120 ms per request after 1000 requests (1 ms at first). ``ApiState.serve`` answers
before those fallbacks through an unfiltered view, whose scan is one identity check per logged
request: ~1.2 ms per request after 1000 requests, ~1.5 ms after 5000 (a loopback hop included).
Each filtered reaction a test adds costs one such scan again: ~10 ms per request after 1000.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Coroutine, Mapping
from typing import Any

import aiohttp
import aiohttp.web
import jsonpatch
import kmock
import multidict
import yarl

from .apistate import (
    CRDS,
    NAMESPACES,
    ApiState,
    Target,
    error,
    merge_diff,
    metadata_only,
    parse_path,
    partial_events,
    partial_list,
    partial_metadata,
)

logger = logging.getLogger(__name__)

_DROPPED_REQUEST_HEADERS = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                            "trailer", "transfer-encoding", "upgrade", "host", "content-length",
                            "accept-encoding", "expect"}
_DROPPED_RESPONSE_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length",
                             "content-encoding", "date", "server"}
_JSON_TYPES = {"", "application/json", "*/*"}
_PATCH_TYPES = {"application/json-patch+json", "application/merge-patch+json", "application/strategic-merge-patch+json"}


def _status_response(exc: kmock.KubernetesError) -> aiohttp.web.Response:
    return aiohttp.web.json_response({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "code": exc.status,
        "reason": exc.reason or "", "message": exc.message or "", "details": exc.details or {},
    }, status=exc.status)


def _parse_body(method: str, content_type: str, body: bytes) -> Any:
    """The JSON body of a write; 415 for what is not emulated (protobuf, CBOR, YAML, apply patches)."""
    media_type = content_type.split(";")[0].strip().lower()
    if method == "DELETE" and media_type not in _JSON_TYPES:
        return None  # DeleteOptions in another encoding: ignored
    if media_type not in (_PATCH_TYPES if method == "PATCH" else _JSON_TYPES):
        raise error(415, "UnsupportedMediaType", f"the body's content type {media_type!r} is not supported"
                                                 " (or not emulated): send JSON")
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except ValueError:
        raise error(400, "BadRequest", "the request body is not valid JSON") from None


def _has_null(value: Any) -> bool:
    if isinstance(value, dict):
        return any(v is None or _has_null(v) for v in value.values())
    if isinstance(value, list):
        return any(v is None or _has_null(v) for v in value)
    return False


def stored_patch(old: dict[str, Any], new: dict[str, Any], as_json_patch: bool) -> Any:
    """The patch kmock applies to ``old`` to store exactly ``new``: a merge patch (kmock merges
    dicts, None deletes) unless asked for or inexpressible so, then a JSON patch."""
    diff = None if as_json_patch or _has_null(new) else merge_diff(old, new)
    return jsonpatch.make_patch(old, new).patch if diff is None else diff


def _is_watch(query: Mapping[str, str]) -> bool:
    return query.get("watch") in ("true", "1")


def _shielded(write: Coroutine[Any, Any, aiohttp.web.StreamResponse]) -> Awaitable[aiohttp.web.StreamResponse]:
    """A write that finishes even if its client goes away; its failure then is only logged (at shutdown,
    kmock may be gone first), never left as an exception nobody retrieved."""
    task = asyncio.ensure_future(write)

    def retrieved(done: asyncio.Future[aiohttp.web.StreamResponse]) -> None:
        if not done.cancelled() and done.exception() is not None:
            logger.debug("a write finished after its client left: %r", done.exception())

    task.add_done_callback(retrieved)
    return asyncio.shield(task)


class ApiServer:
    """kmock's emulator behind a front server that acts like a Kubernetes API server (module
    docstring). An async context manager; ``url`` is the front's, on 127.0.0.1."""

    def __init__(self, emulator: kmock.KubernetesEmulator | None = None, host: str = "127.0.0.1") -> None:
        self.emulator = emulator if emulator is not None else kmock.KubernetesEmulator()
        self.state = ApiState(self.emulator)
        self.state.install()
        self.host = host
        self.url = ""
        self.backend: kmock.Server | None = None       # kmock's own server, which the front forwards to
        self.session: aiohttp.ClientSession | None = None
        self.write_lock = asyncio.Lock()  # one write at a time: from reading the object to its event
        self.exit_stack: contextlib.AsyncExitStack | None = None

    async def __aenter__(self) -> ApiServer:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self.emulator)
            self.backend = await stack.enter_async_context(kmock.Server(self.emulator))
            self.session = await stack.enter_async_context(aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=None),
                auto_decompress=False))
            runner = aiohttp.web.ServerRunner(aiohttp.web.Server(self.handle, handler_cancellation=True),
                                              shutdown_timeout=1.0)
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            await aiohttp.web.TCPSite(runner, self.host, 0).start()
            host, port = runner.addresses[0][:2]
            self.url = f"http://{host}:{port}"
            stack.callback(self.state.close)  # on exit, first: end the watch streams
            self.exit_stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        stack, self.exit_stack = self.exit_stack, None
        self.url, self.backend, self.session = "", None, None
        if stack is not None:
            await stack.aclose()

    # ---------------------------------------------------------------- routing

    async def handle(self, request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        try:
            body = await request.read()
            target = parse_path(request.path)
            if target is not None and self.state.info(target.resource) is not None:
                if target.resource == NAMESPACES:
                    return await self.serve_namespaces(request, target, body)
                if self.is_write(request.method, target):
                    # Shielded: a client that goes away must not leave a write without its event.
                    return await _shielded(self.write(request, target, body))
            return await self.forward(request.method, request.raw_path, request.headers, body, request)
        except kmock.KubernetesError as exc:
            return _status_response(exc)
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception as exc:
            logger.exception("the emulated API server failed on %s %s", request.method, request.raw_path)
            return _status_response(error(500, "InternalError", repr(exc)))

    @staticmethod
    def is_write(method: str, target: Target) -> bool:
        if method == "POST":
            return target.name is None
        if method == "PATCH":
            return target.name is not None
        return method == "DELETE" and target.name is not None and target.subresource is None

    async def forward(self, method: str, path: str, headers: Mapping[str, str], body: bytes,
                      downstream: aiohttp.web.BaseRequest | None = None) -> aiohttp.web.StreamResponse:
        """Send the request on to kmock; its answer back, streamed if it is a stream (a watch)."""
        assert self.backend is not None and self.session is not None, "ApiServer is not entered"
        url = yarl.URL(str(self.backend.url).rstrip("/") + path, encoded=True)
        sent = {k: v for k, v in headers.items() if k.lower() not in _DROPPED_REQUEST_HEADERS}
        async with self.session.request(method, url, data=body or None, headers=sent,
                                        allow_redirects=False) as upstream:
            kept = multidict.CIMultiDict((k, v) for k, v in upstream.headers.items()
                                         if k.lower() not in _DROPPED_RESPONSE_HEADERS)
            if downstream is None or upstream.content_length is not None:
                return aiohttp.web.Response(status=upstream.status, reason=upstream.reason,
                                            body=await upstream.read(), headers=kept)
            response = aiohttp.web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=kept)
            if _is_watch(downstream.query):
                response.content_type = "application/json"
            await response.prepare(downstream)
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            except (ConnectionError, aiohttp.ClientError):
                pass  # either side went away: the stream is over
            return response

    # ---------------------------------------------------------------- writes

    async def write(self, request: aiohttp.web.BaseRequest, target: Target, body: bytes) -> aiohttp.web.StreamResponse:
        data = _parse_body(request.method, request.headers.get("Content-Type", ""), body)
        async with self.write_lock:
            if request.method == "POST":
                obj = self.state.prepare_create(target, data)
                key = (target.resource, obj["metadata"].get("namespace"), obj["metadata"]["name"])
                before, data = self.state.current(key), obj
                body = json.dumps(obj).encode()
            else:
                key = self.state.key(target)
                before = self.state.current(key)
                if before is not None and request.method == "PATCH":
                    new = self.state.prepare_update(target, before, data, request.headers.get("Content-Type", ""))
                    data = stored_patch(before, new, as_json_patch=isinstance(data, list))
                    body = json.dumps(data).encode()
                elif before is not None and request.method == "DELETE":
                    self.mark_if_finalized(key, before)
            response: aiohttp.web.StreamResponse
            try:
                if key[0] == NAMESPACES:
                    response = self.apply_locally(request.method, key, before, data)
                else:
                    response = await self.forward(request.method, request.raw_path, request.headers, body)
                    if request.method == "POST" and response.status == 200:
                        response.set_status(201)
            finally:  # whatever happened, watches learn what is stored now
                self.settle(key, before)
        return response

    def mark_if_finalized(self, key: tuple[Any, ...], current: dict[str, Any]) -> None:
        """An object with finalizers is marked here, before kmock sees the DELETE: kmock then
        leaves an object already marked alone (it would mark it without a new resourceVersion)."""
        meta = current["metadata"]
        if meta.get("finalizers") and not meta.get("deletionTimestamp"):
            self.emulator.objects[key].patch(self.state.deletion_mark())

    def apply_locally(self, method: str, key: tuple[Any, ...], before: dict[str, Any] | None,
                      data: Any) -> aiohttp.web.Response:
        """A write to a namespace, stored as kmock stores the writes it receives."""
        objects = self.emulator.objects
        name = f'{key[0].plural} "{key[2]}"'
        if method == "POST":
            if before is not None:
                raise error(409, "AlreadyExists", f"{name} already exists")
            if key in objects:
                objects[key].create(data)
            else:
                objects[key] = data
            return aiohttp.web.json_response(objects[key].raw, status=201)
        if before is None:
            raise error(404, "NotFound", f"{name} not found")
        stored = objects[key]
        if method == "PATCH":
            stored.patch(data)
        if method == "DELETE" and not stored.get("metadata", {}).get("finalizers"):
            stored.delete()
        if not stored.deleted and stored["metadata"].get("deletionTimestamp") and not stored["metadata"].get(
                "finalizers"):
            stored.delete()
        return aiohttp.web.json_response(stored.last.raw)

    def settle(self, key: tuple[Any, ...], before: dict[str, Any] | None) -> None:
        """After a write: publish what it changed to watches. Whatever answered the request (kmock's
        reaction or a test's), kmock stored it."""
        resource, objects = key[0], self.emulator.objects
        stored = objects[key] if key in objects else None
        if stored is not None and not stored.deleted:
            after = stored.raw
            if before is None:
                self.state.publish(resource, "ADDED", after)
                if resource == CRDS:
                    self.state.declare_crd(after)
            elif after != before:
                self.state.publish(resource, "MODIFIED", after, before)
            return
        if before is None:
            return
        last = stored.last.raw if stored is not None else before
        if last != before:  # e.g. a patch removed the last finalizer: changed, then gone
            self.state.publish(resource, "MODIFIED", last, before)
        self.state.publish(resource, "DELETED", last)

    # ---------------------------------------------------------------- namespaces

    async def serve_namespaces(self, request: aiohttp.web.BaseRequest, target: Target,
                               body: bytes) -> aiohttp.web.StreamResponse:
        """What kmock 0.8 cannot parse, served here from the same state (module docstring)."""
        if target.subresource is not None:
            raise error(404, "NotFound", f"namespaces/{target.subresource} is not emulated")
        if request.method == "GET" and _is_watch(request.query):
            events = self.state.watch(target, request.query)
            return await self.stream(request, partial_events(events) if metadata_only(request.headers, False)
                                     else events)
        if request.method == "GET" and target.name is None:
            listing = self.state.list_objects(target, request.query)
            return aiohttp.web.json_response(partial_list(listing) if metadata_only(request.headers, True)
                                             else listing)
        if request.method == "GET":
            obj = self.state.get_object(target)
            return aiohttp.web.json_response(partial_metadata(obj) if metadata_only(request.headers, False) else obj)
        if self.is_write(request.method, target):
            return await _shielded(self.write(request, target, body))
        raise error(405, "MethodNotAllowed", f"{request.method} on namespaces is not emulated")

    @staticmethod
    async def stream(request: aiohttp.web.BaseRequest,
                     events: AsyncIterator[bytes | dict[str, Any]]) -> aiohttp.web.StreamResponse:
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        async with contextlib.aclosing(events) as items:  # type: ignore[type-var]
            try:
                async for item in items:
                    if not response.prepared:
                        await response.prepare(request)
                    if item:
                        await response.write(item if isinstance(item, bytes) else json.dumps(item).encode() + b"\n")
                if not response.prepared:
                    await response.prepare(request)
                await response.write_eof()
            except ConnectionError:
                pass
        return response
