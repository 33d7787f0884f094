"""The cache ConfigMap (docs/reference/cache.md): its name, its tools.json document,
gzip above 512 KiB, the manifest and merge-patch that write it, and parsing it back. No I/O.

The ConfigMap holds the catalog and when it was written, nothing that moves on every resync: it is
written only when the catalog changes (docs/reference/freshness.md).
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import json
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pydantic

from ..api import constants
from ..api.models import CacheDocument, CachedTool, ServerInfo
from .hashing import sha256_of

HASH_SUFFIX_HEX = 10
LABEL_VALUE_MAX = 63
# Refuse to inflate a stored gzip past this (a tampered ConfigMap must not exhaust memory).
MAX_DECOMPRESSED_BYTES = 64 * 1024 * 1024


def _short_hash(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:HASH_SUFFIX_HEX]


def _shorten(value: str, limit: int, trailing: str) -> str:
    """Cut `value` to `limit` chars, ending in a hash of the whole so distinct values differ."""
    if len(value) <= limit:
        return value
    head = value[: limit - HASH_SUFFIX_HEX - 1].rstrip(trailing)
    return f"{head}-{_short_hash(value)}"


def configmap_name(kind: str, name: str, override: str | None = None) -> str:
    """`spec.cache.configMapName`, else `toolserver-<name>` / `connectorconfig-<name>`.

    Deterministic so a pod spec can mount it before it exists; a default longer than a
    DNS subdomain allows (253) is cut and suffixed with a hash of the full name.
    """
    if override:
        return override
    try:
        prefix = constants.CONFIGMAP_PREFIX[kind]
    except KeyError:
        raise ValueError(f"unknown kind {kind!r}") from None
    return _shorten(f"{prefix}-{name}", constants.MAX_NAME_LENGTH, trailing="-.")


def label_value(value: str) -> str:
    """`value` as a label value: itself when it fits 63 chars, else cut plus a hash.

    Kinds and object names only hold label-safe characters, so only the length needs fixing.
    """
    return _shorten(value, LABEL_VALUE_MAX, trailing="-_.")


def _server_identity(server: ServerInfo) -> dict[str, Any]:
    return {"name": server.name, "version": server.version,
            "protocolVersion": server.protocol_version}


def _sorted_documents(tools: Sequence[CachedTool]) -> list[dict[str, Any]]:
    # `CachedTool.document()` but in pydantic's python mode: every field of a cached tool is a JSON value
    # already (str, bool, dicts and lists as parsed), so it is the same entry, without a JSON-mode pass over
    # each schema (a quarter less of the render's dump).
    return [tool.model_dump(by_alias=True) for tool in sorted(tools, key=lambda tool: tool.name)]


def content_hash(server: ServerInfo, tools: Sequence[CachedTool]) -> str:
    """Hash of the catalog itself, not of cachedAt: an unchanged resync keeps it."""
    return _content_hash(server, _sorted_documents(tools))


def _content_hash(server: ServerInfo, documents: list[dict[str, Any]]) -> str:
    return sha256_of({"server": _server_identity(server), "tools": documents})


@dataclass(frozen=True)
class RenderedCache:
    data: dict[str, str] | None  # {"tools.json": text}, or None when gzipped
    binary_data: dict[str, str] | None  # {"tools.json.gz": base64}, or None (never both)
    content_hash: str
    size_bytes: int  # UTF-8 JSON size
    stored_bytes: int  # bytes the API server counts against its limit (gzip: decoded bytes)

    @property
    def compressed(self) -> bool:
        return self.binary_data is not None


class CacheTooLargeError(ValueError):
    """Even gzip-compressed, the catalog does not fit in one ConfigMap."""

    def __init__(self, size_bytes: int, stored_bytes: int, limit_bytes: int) -> None:
        self.size_bytes = size_bytes
        self.stored_bytes = stored_bytes
        self.limit_bytes = limit_bytes
        super().__init__(
            f"the tool catalog is {size_bytes} bytes of JSON, {stored_bytes} bytes gzip-compressed,"
            f" over the {limit_bytes}-byte ConfigMap limit; narrow spec.toolSelector"
            f" (include/exclude) so fewer tools are cached")


def document_json(doc: CacheDocument) -> str:
    """tools.json text: the key order of docs/reference/cache.md, tools sorted by name, every field (nulls too).

    Compact rather than indented: agents parse it, `jq .` pretty-prints it for people, and
    indentation of deep JSON schemas would roughly double the size and reach the 512 KiB
    gzip switch and the 1 MiB ConfigMap limit far sooner.
    """
    return _document_json(doc, _sorted_documents(doc.tools))


def _document_json(doc: CacheDocument, documents: list[dict[str, Any]]) -> str:
    document: dict[str, Any] = {
        "source": doc.source.model_dump(by_alias=True, mode="json"),
        "server": doc.server.model_dump(by_alias=True, mode="json"),
        "cachedAt": doc.cached_at,
        "hashVersion": doc.hash_version,
        "approval": doc.approval.model_dump(by_alias=True, mode="json"),
        "fetchedWith": doc.fetched_with.dump() if doc.fetched_with is not None else None,
        "tools": documents,
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


def render_cache(doc: CacheDocument) -> RenderedCache:
    """The ConfigMap content for `doc`: plain JSON up to 512 KiB, deterministic gzip above."""
    documents = _sorted_documents(doc.tools)
    raw = _document_json(doc, documents).encode("utf-8")
    if len(raw) > MAX_DECOMPRESSED_BYTES:       # the operator must always be able to read its cache back
        raise CacheTooLargeError(len(raw), len(raw), MAX_DECOMPRESSED_BYTES)
    digest = _content_hash(doc.server, documents)
    if len(raw) <= constants.GZIP_THRESHOLD_BYTES:
        return RenderedCache(data={constants.CM_KEY_JSON: raw.decode("utf-8")}, binary_data=None,
                             content_hash=digest, size_bytes=len(raw), stored_bytes=len(raw))
    packed = gzip.compress(raw, compresslevel=9, mtime=0)
    if len(packed) > constants.CONFIGMAP_MAX_BYTES:
        raise CacheTooLargeError(len(raw), len(packed), constants.CONFIGMAP_MAX_BYTES)
    return RenderedCache(
        data=None, binary_data={constants.CM_KEY_GZIP: base64.b64encode(packed).decode("ascii")},
        content_hash=digest, size_bytes=len(raw), stored_bytes=len(packed))


def configmap_metadata(*, kind: str, name: str, owner_uid: str, cached_at: str,
                       content_hash: str) -> dict[str, Any]:
    """The labels, annotations and owner reference the operator gives a cache ConfigMap."""
    return {
        "labels": {
            constants.LABEL_MANAGED_BY: constants.MANAGED_BY,
            constants.LABEL_KIND: label_value(kind),
            constants.LABEL_NAME: label_value(name),
        },
        "annotations": {
            constants.ANN_CACHED_AT: cached_at,
            constants.ANN_CONTENT_HASH: content_hash,
        },
        "ownerReferences": [{
            "apiVersion": constants.API_VERSION,
            "kind": kind,
            "name": name,
            "uid": owner_uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }],
    }


def build_configmap(*, kind: str, name: str, namespace: str, owner_uid: str, configmap_name: str,
                    rendered: RenderedCache, cached_at: str) -> dict[str, Any]:
    """The full v1 ConfigMap, owned by the resource (controller) so deleting it deletes the cache.

    Good for a create; `configmap_patch` turns it into the merge-patch body for an update. It carries no
    expiry: it is written only when the catalog changes (docs/reference/freshness.md).
    """
    manifest: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": configmap_name, "namespace": namespace,
                     **configmap_metadata(kind=kind, name=name, owner_uid=owner_uid, cached_at=cached_at,
                                          content_hash=rendered.content_hash)},
    }
    if rendered.data is not None:
        manifest["data"] = dict(rendered.data)
    else:
        manifest["binaryData"] = dict(rendered.binary_data or {})
    return manifest


def configmap_patch(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Merge-patch body replacing the cache content of an existing ConfigMap.

    The form not in use is set to None so a switch between plain and gzip removes the old
    one (never both). Labels and annotations merge key by key (other keys stay);
    ownerReferences, a list, is replaced whole.
    """
    metadata = manifest["metadata"]
    return {
        "metadata": {
            "labels": dict(metadata["labels"]),
            # Earlier releases also wrote an expiry, which made every resync a rewrite: it goes.
            "annotations": {constants.ANN_EXPIRES_AT: None, **metadata["annotations"]},
            "ownerReferences": [dict(ref) for ref in metadata["ownerReferences"]],
        },
        "data": dict(manifest["data"]) if manifest.get("data") is not None else None,
        "binaryData": (dict(manifest["binaryData"])
                       if manifest.get("binaryData") is not None else None),
    }


_CACHE_ANNOTATIONS = (constants.ANN_CACHED_AT, constants.ANN_EXPIRES_AT, constants.ANN_CONTENT_HASH)


def restore_patch(previous: Mapping[str, Any], written: Mapping[str, Any]) -> dict[str, Any]:
    """Merge-patch body putting back the cache content `previous` (a ConfigMap as read, or a manifest we
    wrote) over `written`: its data, binaryData and our annotations, with the labels and owner of `written`.
    Used when the status write after a cache write is refused, so that both keep describing one catalog."""
    patch = configmap_patch(written)
    before = (previous.get("metadata") or {}).get("annotations") or {}
    patch["metadata"]["annotations"] = {key: before.get(key) for key in _CACHE_ANNOTATIONS}
    patch["data"] = dict(previous["data"]) if previous.get("data") else None
    patch["binaryData"] = dict(previous["binaryData"]) if previous.get("binaryData") else None
    return patch


def metadata_current(configmap: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Whether a ConfigMap as read already has the labels, cache annotations and owner reference of `wanted`
    (`configmap_metadata`), and no annotation an earlier release wrote that this one does not: then a catalog
    that did not change needs no write at all."""
    meta = configmap.get("metadata") or {}
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    return (all(labels.get(key) == value for key, value in wanted["labels"].items())
            and all(annotations.get(key) == value for key, value in wanted["annotations"].items())
            and constants.ANN_EXPIRES_AT not in annotations
            and meta.get("ownerReferences") == wanted["ownerReferences"])


def is_owned_by(configmap: Mapping[str, Any], owner_uid: str) -> bool:
    """True when the ConfigMap has a controller ownerReference to that uid (ours to overwrite)."""
    references = (configmap.get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("uid") == owner_uid and ref.get("controller") is True
               for ref in references if isinstance(ref, Mapping))


class CacheParseError(ValueError):
    """The ConfigMap does not hold a readable tools.json document."""


def _gunzip(packed: bytes) -> bytes:
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        raw = inflater.decompress(packed, MAX_DECOMPRESSED_BYTES + 1)
    except zlib.error as error:
        raise CacheParseError(f"{constants.CM_KEY_GZIP} is not valid gzip: {error}") from None
    if len(raw) > MAX_DECOMPRESSED_BYTES:
        raise CacheParseError(
            f"{constants.CM_KEY_GZIP} inflates past {MAX_DECOMPRESSED_BYTES} bytes; refusing it")
    if not inflater.eof:
        raise CacheParseError(f"{constants.CM_KEY_GZIP} is truncated")
    return raw


def _document_text(configmap: Mapping[str, Any]) -> str:
    data = configmap.get("data") or {}
    binary = configmap.get("binaryData") or {}
    has_json, has_gzip = constants.CM_KEY_JSON in data, constants.CM_KEY_GZIP in binary
    if has_json and has_gzip:
        raise CacheParseError(
            f"both data[{constants.CM_KEY_JSON!r}] and binaryData[{constants.CM_KEY_GZIP!r}]"
            " are set; expected exactly one")
    if has_json:
        text = data[constants.CM_KEY_JSON]
        if not isinstance(text, str):
            raise CacheParseError(f"data[{constants.CM_KEY_JSON!r}] is not a string")
        return text
    if has_gzip:
        try:
            packed = base64.b64decode(binary[constants.CM_KEY_GZIP], validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise CacheParseError(
                f"binaryData[{constants.CM_KEY_GZIP!r}] is not valid base64") from None
        try:
            return _gunzip(packed).decode("utf-8")
        except UnicodeDecodeError:
            raise CacheParseError(f"{constants.CM_KEY_GZIP} does not hold UTF-8 text") from None
    raise CacheParseError(
        f"neither data[{constants.CM_KEY_JSON!r}] nor binaryData[{constants.CM_KEY_GZIP!r}] is set")


def parse_cache(configmap: Mapping[str, Any]) -> CacheDocument:
    """Read the tools.json document back from a ConfigMap (plain or gzip form)."""
    return parse_document(_document_text(configmap))


def parse_document(text: str | bytes) -> CacheDocument:
    """A tools.json document from its text. pydantic reads the JSON itself (about a third less work than
    `json.loads` and validating the objects it makes, for the same document); a text it refuses is read the
    slow way again, for the error's message."""
    try:
        return CacheDocument.model_validate_json(text)
    except pydantic.ValidationError:
        pass
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as error:
        raise CacheParseError(f"tools.json is not valid JSON: {error.msg} at line {error.lineno}"
                              f" column {error.colno}") from None
    try:
        return CacheDocument.model_validate(parsed)
    except pydantic.ValidationError as error:
        problems = sorted({".".join(str(p) for p in e["loc"]) or "(document)"
                           for e in error.errors()})
        shown = ", ".join(problems[:5]) + (f" and {len(problems) - 5} more"
                                           if len(problems) > 5 else "")
        raise CacheParseError(f"tools.json does not match the cache document: {shown}") from None
