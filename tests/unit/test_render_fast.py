"""The cache document is rendered byte for byte as the JSON of each tool's `document()` (its JSON-mode dump),
whatever the definitions hold: the render's faster dump changes no byte, and the content hash neither."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from toolcatalog.api import constants as c
from toolcatalog.api.models import CacheDocument, CachedTool, CacheSource, ServerInfo
from toolcatalog.reconcile.cachedoc import render_cache
from toolcatalog.reconcile.hashing import definition_fields, definition_hash, definition_of, sha256_of

texts = st.text(alphabet="ab0 \u00e9\"\\\u2028\U0001f600\x00", max_size=4)
leaves = (st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | texts
          | st.floats(allow_nan=False, allow_infinity=False, width=64))
values = st.recursive(leaves, lambda children: st.lists(children, max_size=3)
                      | st.dictionaries(texts, children, max_size=3), max_leaves=6)
objects = st.dictionaries(texts, values, max_size=3)
definitions = st.fixed_dictionaries({"inputSchema": objects}, optional={
    "title": texts, "description": texts, "outputSchema": objects, "annotations": objects, "icons": st.lists(values),
    "execution": objects, "x-vendor": values})


def cached(name: str, definition: dict[str, Any], approved: bool) -> CachedTool:
    fields = definition_fields(definition_of(definition))
    digest = definition_hash(definition_of(definition))
    return CachedTool.model_validate({"name": name, **fields, "schemaHash": digest, "firstSeen": "2026-11-21T12:00:00Z",
                                      "approved": approved, "approvedDefinition": definition if not approved else None})


@given(st.lists(definitions, max_size=4), st.booleans())
def test_the_rendered_document_is_the_json_of_each_tools_document(chosen: list[dict[str, Any]], approved: bool) -> None:
    tools = [cached(f"t{index}", definition, approved) for index, definition in enumerate(chosen)]
    document = CacheDocument(source=CacheSource(kind="ToolServer", namespace="ns", name="srv", url="http://s/mcp"),
                             server=ServerInfo(name="s"), cached_at="2026-11-21T12:00:00Z", hash_version=2,
                             approval={"policy": "None"}, tools=tools)
    rendered = render_cache(document)
    entries = [tool.document() for tool in tools]
    assert rendered.data is not None
    text = rendered.data[c.CM_KEY_JSON]
    assert text.endswith(',"tools":' + json.dumps(entries, ensure_ascii=False, separators=(",", ":")) + "}")
    identity = {"name": "s", "version": None, "protocolVersion": None}
    assert rendered.content_hash == sha256_of({"server": identity, "tools": entries})
