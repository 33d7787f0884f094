"""docs/reference/cache-schema.md and cache-document.schema.json: the document an agent mounts.

The JSON Schema is the one pydantic makes of CacheDocument (api/models.py), the model the operator
writes tools.json with; the descriptions are the docstrings under its fields.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from toolcatalog.api import constants as c
from toolcatalog.api.models import CacheDocument
from toolcatalog.reconcile.hashing import HASH_VERSION

from .markdown import banner, code, literal, prose, table

SCHEMA_FILE = "cache-document.schema.json"
SCHEMA_ID = "https://toolcatalog.dev/schemas/cache-document.schema.json"


def schema() -> dict[str, Any]:
    document = CacheDocument.model_json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **document}


def schema_text() -> str:
    return json.dumps(schema(), indent=2, ensure_ascii=False) + "\n"


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The node behind $ref and `X | None`, and whether null is allowed."""
    nullable = False
    if "anyOf" in node:
        branches = [b for b in node["anyOf"] if b.get("type") != "null"]
        nullable = len(branches) < len(node["anyOf"])
        if len(branches) == 1:
            node = {**{k: v for k, v in node.items() if k != "anyOf"}, **branches[0]}
    if "$ref" in node:
        target = defs[node["$ref"].split("/")[-1]]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node, nullable


def _type(node: dict[str, Any], defs: dict[str, Any]) -> str:
    node, nullable = _resolve(node, defs)
    kind = node.get("type", "any")
    if kind == "array":
        kind = "[]" + _type(node.get("items") or {}, defs)
    elif kind == "object" and "properties" not in node:
        kind = "object (as sent)"
    return kind + (" or null" if nullable else "")


def _rows(node: dict[str, Any], defs: dict[str, Any], path: str) -> Iterator[tuple[str, ...]]:
    node, _ = _resolve(node, defs)
    required = set(node.get("required", []))
    for name, sub in node.get("properties", {}).items():
        here = f"{path}.{name}" if path else name
        resolved, _ = _resolve(sub, defs)
        description = sub.get("description") or resolved.get("description") or ""
        values = ("one of " + ", ".join(literal(v) for v in resolved["enum"])) if "enum" in resolved else ""
        yield (code(here), _type(sub, defs) + (", required" if name in required else ""), values, prose(description))
        if "properties" in resolved:
            yield from _rows(resolved, defs, here)
        items = resolved.get("items")
        if isinstance(items, dict):
            inner, _ = _resolve(items, defs)
            if "properties" in inner:
                yield from _rows(inner, defs, here + "[]")


def render() -> str:
    document = schema()
    defs = document.get("$defs", {})
    return "\n".join([
        banner("operator/toolcatalog/api/models.py (CacheDocument and the docstrings under its fields)"),
        "# Cache document schema\n",
        f"The document the operator writes into each cache ConfigMap, as {code(c.CM_KEY_JSON)} (or gzip-compressed "
        f"as {code(c.CM_KEY_GZIP)} in `binaryData` when the JSON would exceed {c.GZIP_THRESHOLD_BYTES // 1024} KiB). "
        "Every field is always present (a null where there is no value), and the tools are sorted by name. "
        f"This release writes `hashVersion: {HASH_VERSION}`. "
        "[The cache ConfigMap](cache.md) says how it is named, labelled, mounted and read; "
        "[Tool approval and the hash](approval.md) what `schemaHash` covers.\n",
        "## Fields\n",
        table(("Field", "Type", "Values", "Description"), _rows(document, defs, "")),
        "## JSON Schema\n",
        f"Also as a file: [{SCHEMA_FILE}]({SCHEMA_FILE}) (JSON Schema 2020-12), to validate a document an agent "
        "reads, or to generate a client's types from.\n",
        "```json\n" + schema_text() + "```\n",
    ])
