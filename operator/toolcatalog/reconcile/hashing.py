"""What a tool's schemaHash covers, and how the hash is computed, by version. Pure.

Version 2 (this release): SHA-256 over the RFC 8785 (JSON Canonicalization Scheme) form of the
definition exactly as the server sent it: every field but `name` and `_meta`, fields whose value is
null left out (null and absent mean the same to a model). A changed title, description, schema,
annotation, icon, execution hint or any field the operator does not know changes it.

Version 1 (earlier releases): the canonical JSON (sorted keys) of title, description, inputSchema
(defaulted to {"type": "object"}), outputSchema and annotations only. It is kept to compare a cache
written by an earlier release with a fresh answer in the meaning that cache was written in, so an
upgrade neither flags unchanged tools nor hides a change.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

import rfc8785

from ..api.models import CachedTool

HASH_VERSION = 2
EXCLUDED_FIELDS = ("name", "_meta")
# Definition fields with a place of their own in a cached tool; any other field goes into `extra`.
KNOWN_FIELDS = {"title": "title", "description": "description", "inputSchema": "input_schema",
                "outputSchema": "output_schema", "annotations": "annotations", "icons": "icons",
                "execution": "execution"}
V1_FIELDS = ("title", "description", "inputSchema", "outputSchema", "annotations")


class UnhashableToolError(ValueError):
    """A definition JSON canonicalization cannot represent (a number beyond IEEE 754 doubles)."""


def canonical_json(value: Any) -> str:
    """One JSON spelling per value, so key order and whitespace never change a hash (content hashes)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_of(value: Any) -> str:
    """`sha256:<hex>` over the canonical JSON of `value`."""
    return "sha256:" + hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


def definition_of(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a tool the hash covers: all it was sent with, but its name, `_meta` and nulls."""
    return {key: value for key, value in raw.items() if key not in EXCLUDED_FIELDS and value is not None}


# RFC 8785 in pure Python costs ~40 µs a tool, every tool of every sync (20 ms for a 500-tool refresh);
# the same definitions come back sync after sync, and from every resource of one server. So each
# definition's hash is remembered under a digest of its `repr`: for the values a JSON parser makes (dicts,
# lists, str, int, float, bool, None) `repr` is a Python literal that reads back to the same value, so equal
# keys are equal definitions and a remembered hash is the hash. Key order shows in it: the same definition
# with its keys in another order is only a miss (hashed again), never a wrong hit. It costs half of the plain
# sorted-keys JSON the key used to be (about 4 µs a tool).
_V2_MEMO: dict[bytes, str] = {}
V2_MEMO_SIZE = 4096


def _memo_key(definition: Mapping[str, Any]) -> bytes:
    return hashlib.sha256(repr(definition).encode("utf-8", "surrogatepass")).digest()


def hash_v2(definition: Mapping[str, Any]) -> str:
    key = _memo_key(definition) if type(definition) is dict else None
    if key is not None and (known := _V2_MEMO.get(key)) is not None:
        return known
    try:
        canonical = rfc8785.dumps(dict(definition))
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as error:
        raise UnhashableToolError(str(error)) from None
    digest = "sha256:" + hashlib.sha256(canonical).hexdigest()
    if key is not None:
        if len(_V2_MEMO) >= V2_MEMO_SIZE:
            _V2_MEMO.pop(next(iter(_V2_MEMO)))      # the oldest first
        _V2_MEMO[key] = digest
    return digest


def hash_v1(definition: Mapping[str, Any]) -> str:
    covered = {field: definition.get(field) for field in V1_FIELDS}
    if covered["inputSchema"] is None:
        covered["inputSchema"] = {"type": "object"}
    return sha256_of(covered)


HASHES: dict[int, Callable[[Mapping[str, Any]], str]] = {1: hash_v1, 2: hash_v2}


def definition_hash(definition: Mapping[str, Any], version: int = HASH_VERSION) -> str:
    return HASHES[version](definition)


def stored_definition(tool: CachedTool) -> dict[str, Any]:
    """A cached tool's definition as the server sent it (null fields left out)."""
    fields = tool.model_dump(by_alias=True, mode="json", include={attr for attr in KNOWN_FIELDS.values()})
    definition = {key: value for key, value in fields.items() if value is not None}
    definition.update(tool.extra or {})
    return definition


def definition_fields(definition: Mapping[str, Any]) -> dict[str, Any]:
    """A definition as CachedTool fields: the known ones by name, the rest in `extra`."""
    fields: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in definition.items():
        if key in KNOWN_FIELDS:
            fields[KNOWN_FIELDS[key]] = value
        else:
            extra[key] = value
    fields["extra"] = extra or None
    return fields
