"""The plugin's API server I/O: the kubeconfig, one client, reads and writes, errors users can act on.

Also what several commands share: reading a resource's cache document, and listing ToolServers
and ConnectorConfigs in one namespace or in all of them as far as RBAC lets the user (a
cluster-wide list first; when that is forbidden, the namespaces one by one, skipping those the
user cannot read). Many reads (the namespaces one by one, the cache of each resource) are sent
READ_CONCURRENCY at a time, and their answers are taken in order, as a loop would take them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import kubernetes
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from urllib3.exceptions import HTTPError, MaxRetryError

from ..api import constants as c
from ..api.models import CacheDocument
from ..reconcile.cachedoc import CacheParseError, configmap_name, parse_cache
from .fleet import Found, found_in, skip_notes
from .format import (
    EXIT_FAILED,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    PluginError,
    ResourceRef,
    find_condition,
)

MERGE_PATCH = "application/merge-patch+json"
REQUEST_TIMEOUT_SECONDS = 30.0
KINDS = (c.KIND_TOOLSERVER, c.KIND_CONNECTORCONFIG)
READ_CONCURRENCY = 8    # reads in flight at once across namespaces and caches: quick, and gentle on the server

_Arg = TypeVar("_Arg")
_Answer = TypeVar("_Answer")


@dataclass
class Cluster:
    """An API client for one kubeconfig context, plus the namespace commands default to."""

    api_client: Any
    namespace: str

    def close(self) -> None:
        self.api_client.close()

    def _custom(self) -> Any:
        return kubernetes.client.CustomObjectsApi(self.api_client)

    def get(self, ref: ResourceRef, namespace: str | None = None) -> dict[str, Any]:
        namespace = namespace or self.namespace
        with _api_errors(ref, namespace):
            obj = self._custom().get_namespaced_custom_object(
                c.GROUP, c.VERSION, namespace, ref.plural, ref.name,
                _request_timeout=REQUEST_TIMEOUT_SECONDS)
            return dict(obj)

    def patch(self, ref: ResourceRef, body: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        """Merge-patch; returns the object as the API server stored it."""
        namespace = namespace or self.namespace
        with _api_errors(ref, namespace):
            obj = self._custom().patch_namespaced_custom_object(
                c.GROUP, c.VERSION, namespace, ref.plural, ref.name, body,
                _content_type=MERGE_PATCH, _request_timeout=REQUEST_TIMEOUT_SECONDS)
            return dict(obj)

    def read_configmap(self, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """The ConfigMap as the API server's JSON (camelCase `binaryData`), or None if absent.

        Raw JSON rather than the client's V1ConfigMap: no snake_case round trip, and no
        second-long first import of the client's model classes.
        """
        namespace = namespace or self.namespace
        try:
            with _api_errors(f"configmap/{name}", namespace):
                response = kubernetes.client.CoreV1Api(self.api_client).read_namespaced_config_map(
                    name, namespace, _preload_content=False,
                    _request_timeout=REQUEST_TIMEOUT_SECONDS)
                return dict(json.loads(response.data))  # type: ignore[arg-type]
        except NotFoundError:
            return None

    def list_objects(self, kind: str, namespace: str | None) -> list[dict[str, Any]]:
        """Every object of a kind in a namespace, or in all of them (namespace None)."""
        plural = c.PLURAL[kind]
        with _api_errors(plural, namespace or "(all namespaces)"):
            if namespace is None:
                response = self._custom().list_cluster_custom_object(
                    c.GROUP, c.VERSION, plural, _preload_content=False,
                    _request_timeout=REQUEST_TIMEOUT_SECONDS)
            else:
                response = self._custom().list_namespaced_custom_object(
                    c.GROUP, c.VERSION, namespace, plural, _preload_content=False,
                    _request_timeout=REQUEST_TIMEOUT_SECONDS)
            return list(json.loads(response.data).get("items") or [])

    def list_namespaces(self) -> list[str]:
        with _api_errors("namespaces", "(cluster)"):
            response: Any = kubernetes.client.CoreV1Api(self.api_client).list_namespace(
                _preload_content=False, _request_timeout=REQUEST_TIMEOUT_SECONDS)
            items = json.loads(response.data).get("items") or []
            return sorted(item["metadata"]["name"] for item in items)


@contextmanager
def _api_errors(what: object, namespace: str) -> Iterator[None]:
    """Turn the client's exceptions into a message a user can act on."""
    try:
        yield
    except ApiException as error:
        if error.status == 404:
            raise NotFoundError(f"{what} not found in namespace {namespace!r}") from None
        detail = _api_message(error)
        message = (f"{what} in namespace {namespace!r}: the API server answered"
                   f" {error.status} {error.reason}{': ' + detail if detail else ''}")
        if error.status == 403:
            raise ForbiddenError(message) from None
        if error.status == 409:
            raise ConflictError(message) from None
        raise PluginError(message) from None
    except HTTPError as error:
        cause = error.reason if isinstance(error, MaxRetryError) else error
        raise PluginError(f"cannot reach the Kubernetes API server: {cause}") from None


def _api_message(error: Any) -> str:
    try:
        return str(json.loads(error.body).get("message") or "")
    except (TypeError, ValueError, AttributeError):
        return ""


def connect(*, kubeconfig: str | None = None, context: str | None = None,
            namespace: str | None = None) -> Cluster:
    """Load the kubeconfig as kubectl does: --kubeconfig, else $KUBECONFIG, else ~/.kube/config.

    The namespace is -n, else the context's namespace, else `default`.
    """
    config_file = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    configuration = kubernetes.client.Configuration()
    # One connection per read in flight: a smaller pool would open and drop connections (and warn).
    configuration.connection_pool_maxsize = max(configuration.connection_pool_maxsize or 0, READ_CONCURRENCY)
    try:
        contexts, current = kubernetes.config.list_kube_config_contexts(config_file=config_file)
        api_client = kubernetes.config.new_client_from_config(
            config_file=config_file, context=context, persist_config=False, client_configuration=configuration)
    except (ConfigException, OSError) as error:
        raise PluginError(f"cannot load kubeconfig {config_file!r}: {error}") from None
    chosen = next((ctx for ctx in contexts or [] if ctx.get("name") == context), None) \
        if context else current
    context_namespace = ((chosen or {}).get("context") or {}).get("namespace")
    return Cluster(api_client=api_client, namespace=namespace or context_namespace or "default")


# ---------------------------------------------------------------------------- many reads


def read_each(read: Callable[[_Arg], _Answer], args: Sequence[_Arg], *,
              limit: int = READ_CONCURRENCY) -> Generator[tuple[_Arg, _Answer | PluginError], None, None]:
    """`read(arg)` for every arg, at most `limit` at a time; the answers in the order of `args`.

    A PluginError (forbidden, not found, an API error) comes in place of its answer, so that the
    caller handles each in order, exactly as a loop over `args` would; anything else is raised.
    When the caller stops early (it raised), the reads not yet started are cancelled. Use it in
    `contextlib.closing` so that happens at once.
    """
    def answer(arg: _Arg) -> _Answer | PluginError:
        try:
            return read(arg)
        except PluginError as error:
            return error

    if len(args) <= 1 or limit <= 1:
        for arg in args:
            yield arg, answer(arg)
        return
    executor = ThreadPoolExecutor(max_workers=min(limit, len(args)), thread_name_prefix="toolcatalog-read")
    try:
        futures = [executor.submit(answer, arg) for arg in args]
        for arg, future in zip(args, futures, strict=True):
            yield arg, future.result()
    finally:
        executor.shutdown(wait=False, cancel_futures=True)


# ---------------------------------------------------------------------------- caches


def cache_name(ref: ResourceRef, obj: dict[str, Any]) -> str:
    """The cache ConfigMap's name: as status reports it, else as the spec and kind determine it."""
    reported = ((obj.get("status") or {}).get("cache") or {}).get("configMap")
    override = ((obj.get("spec") or {}).get("cache") or {}).get("configMapName")
    return str(reported or configmap_name(ref.kind, ref.name, override))


def read_cache(cluster: Cluster, ref: ResourceRef, obj: dict[str, Any], namespace: str
               ) -> tuple[str, CacheDocument]:
    """The resource's cache ConfigMap name and document; exit 1 when there is none (yet)."""
    name = cache_name(ref, obj)
    configmap = cluster.read_configmap(name, namespace)
    if configmap is None:
        synced = find_condition(obj, c.COND_SYNCED)
        why = (f"; Synced: {synced.status} {synced.reason}"
               f"{': ' + synced.message if synced.message else ''}" if synced
               else "; the operator has not reported a sync yet")
        raise PluginError(f"{ref} has no tool cache yet (ConfigMap {name} not found in"
                          f" namespace {namespace!r}){why}", EXIT_FAILED)
    return name, parse_document(name, configmap)


def parse_document(name: str, configmap: dict[str, Any]) -> CacheDocument:
    try:
        return parse_cache(configmap)
    except CacheParseError as error:
        raise PluginError(f"ConfigMap {name}: {error}", EXIT_FAILED) from None


# ---------------------------------------------------------------------------- listing


@dataclass
class Listing:
    """What the user could list, and where RBAC said no."""

    found: list[Found] = field(default_factory=list)
    forbidden: dict[str, list[str]] = field(default_factory=dict)   # namespace -> plurals
    notes: list[str] = field(default_factory=list)

    def all_notes(self) -> list[str]:
        return self.notes + skip_notes(self.forbidden, [c.PLURAL[kind] for kind in KINDS])


def list_resources(cluster: Cluster, *, all_namespaces: bool, namespace: str | None = None) -> Listing:
    """ToolServers and ConnectorConfigs in `namespace` (default: the context's), or in every namespace.

    A namespace the user may not read is skipped with a note, never an error for the whole
    listing; it is an error (exit 4) only when nothing at all could be listed. The lists go
    READ_CONCURRENCY at a time; their answers are taken in order, so the notes, and the error
    when one is raised, are those of listing one after another.
    """
    listing = Listing()
    listed_any = False
    one_by_one: list[str] = list(KINDS)           # kinds to list namespace by namespace
    scopes = [namespace or cluster.namespace]
    if all_namespaces:
        one_by_one = []
        with closing(read_each(lambda kind: found_in(kind, cluster.list_objects(kind, None)), KINDS)) as wide:
            for kind, found in wide:
                if isinstance(found, ForbiddenError):
                    one_by_one.append(kind)
                elif isinstance(found, PluginError):
                    raise found
                else:
                    listing.found += found
                    listed_any = True
        if one_by_one:
            try:
                scopes = cluster.list_namespaces()
            except ForbiddenError:
                plurals = " and ".join(c.PLURAL[kind] for kind in one_by_one)
                if not listed_any:
                    raise ForbiddenError(
                        f"cannot list {plurals} in all namespaces, nor the namespaces to try them one by one:"
                        " RBAC forbids both. Use -n NAMESPACE for a namespace you can read") from None
                listing.notes.append(f"note: skipped {plurals}: RBAC forbids listing them in all namespaces, and"
                                     " listing the namespaces; use -n NAMESPACE for one you can read")
                scopes = []

    def list_one(kind_and_scope: tuple[str, str]) -> list[Found]:
        kind, scope = kind_and_scope
        return found_in(kind, cluster.list_objects(kind, scope))

    reads = [(kind, scope) for kind in one_by_one for scope in scopes]
    with closing(read_each(list_one, reads)) as each:
        for (kind, scope), in_scope in each:
            if isinstance(in_scope, ForbiddenError):
                listing.forbidden.setdefault(scope, []).append(c.PLURAL[kind])
            elif isinstance(in_scope, PluginError):
                raise in_scope
            else:
                listing.found += in_scope
                listed_any = True
    if not listed_any:
        where = "in any namespace" if all_namespaces else f"in namespace {namespace or cluster.namespace!r}"
        raise ForbiddenError(f"cannot list toolservers or connectorconfigs {where}: RBAC forbids it"
                             f" (check with: kubectl auth can-i list toolservers{' -A' if all_namespaces else ''})")
    listing.found.sort(key=lambda found: found.sort_key)
    return listing
