"""Property: a resync that finds the catalog unchanged writes nothing but a small status patch, and yet a
change of any one character of any definition is seen, written to the cache and narrows the allowlists.

Through the real source reconciler, the in-memory catalogs and the allowlist reconciler
(tests/engine/allowlist_world.py). The fake fetcher's digest covers the answer's JSON text, as the real
fetch's covers the bytes received (tests/e2e/test_fetch.py checks that on real servers).

A ToolServer under approval policy All with every tool approved, and a ToolAllowlist over it. Then: an
unchanged resync (no ConfigMap write, the answer recognised without a merge, every tool still allowed);
then one mutation of one tool (one character of a string, a number, a boolean, or a nested key) and a
resync: the cache is rewritten with the mutated definition and its hash, and before any target is
written, the webhook's answer has withdrawn the tool (its new definition is not approved).
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tests.engine.allowlist_world import AllowlistWorld
from tests.engine.fakes import NS
from toolcatalog.api import constants as c
from toolcatalog.reconcile.cachedoc import parse_cache
from toolcatalog.reconcile.hashing import definition_hash, definition_of

DEFINITIONS: list[dict[str, Any]] = [
    {"name": "search_issues", "title": "Search issues", "description": "Finds issues by a query.",
     "inputSchema": {"type": "object", "properties": {"q": {"type": "string", "maxLength": 200},
                                                      "limit": {"type": "integer", "minimum": 1}},
                     "required": ["q"]},
     "annotations": {"readOnlyHint": True, "openWorldHint": False}},
    {"name": "create_issue", "description": "Creates an issue.\nReturns its number.",
     "inputSchema": {"type": "object", "properties": {"title": {"type": "string"}}},
     "outputSchema": {"type": "object", "properties": {"number": {"type": "integer"}}},
     "x-vendor": {"tier": 2, "beta": False, "owner": "team-ä"}},
    {"name": "close", "description": "", "inputSchema": {"type": "object"}},
]


def leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], str]]:
    """Every place one edit can go: (path, "value") for a string, number or boolean, (path, "key") for the key
    of a nested object (not a definition's own fields: renaming `inputSchema` makes another kind of change)."""
    found: list[tuple[tuple[Any, ...], str]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if len(path) >= 2:
                found.append((path + (key,), "key"))
            found.extend(leaves(item, path + (key,)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(leaves(item, path + (index,)))
    else:
        found.append((path, "value"))
    return found


def edited_text(data: st.DataObject, text: str) -> str:
    """`text` with one character replaced by another, or one inserted."""
    position = data.draw(st.integers(0, len(text)), label="position")
    new = data.draw(st.characters(codec="utf-8", exclude_characters=text[position:position + 1]), label="char")
    if position == len(text) or data.draw(st.booleans(), label="insert"):
        return text[:position] + new + text[position:]
    return text[:position] + new + text[position + 1:]


def mutate(data: st.DataObject, definitions: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """One edit of one tool; which one."""
    mutated = copy.deepcopy(definitions)
    index = data.draw(st.integers(0, len(mutated) - 1), label="tool")
    path, what = data.draw(st.sampled_from(leaves(mutated[index])), label="where")
    parent: Any = mutated[index]
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if what == "key":
        renamed = edited_text(data, last)
        assume(renamed not in parent)
        parent[renamed] = parent.pop(last)
    elif isinstance(parent[last], bool):
        parent[last] = not parent[last]
    elif isinstance(parent[last], int):
        parent[last] += data.draw(st.sampled_from([-1, 1]), label="step")
    else:
        parent[last] = edited_text(data, parent[last])
    name = mutated[index]["name"]
    assume(name and [tool["name"] for tool in mutated].count(name) == 1)
    return mutated, index


class Scenario:
    def __init__(self) -> None:
        self.world = AllowlistWorld([])
        self.token = 0

    def spec(self, definitions: list[dict[str, Any]]) -> dict[str, Any]:
        approved = [{"name": tool["name"], "approvedHash": definition_hash(definition_of(tool))}
                    for tool in definitions]
        return {"url": "http://github-mcp.test/mcp", "approval": {"policy": "All"}, "tools": approved}

    async def resync(self) -> None:
        """The TTL comes due (a refresh annotation stands for it: the same sync, at once)."""
        self.token += 1
        self.world.clock.advance(120)
        self.world.apply("github", self.spec(DEFINITIONS), annotations={c.ANN_REFRESH: str(self.token)})
        await self.world.reconcile("github")
        self.world.watch(c.KIND_TOOLSERVER, "github")

    def cache(self) -> tuple[str, dict[str, Any]]:
        configmap = self.world.kube.get("ConfigMap", "toolserver-github")
        assert configmap is not None
        return configmap["metadata"]["resourceVersion"], configmap

    def allowed(self) -> dict[str, str]:
        return dict(self.world.allowlists.allowed(NS, "gateway", "github") or {})


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_an_unchanged_resync_writes_no_cache_and_any_one_character_changed_is_seen(data: st.DataObject) -> None:
    async def run() -> None:
        scenario = Scenario()
        world = scenario.world
        world.fetch.tools = copy.deepcopy(DEFINITIONS)
        world.apply("github", scenario.spec(DEFINITIONS))
        world.allow("gateway", {"sources": [{"toolServerRef": {"name": "github"}}],
                                "targets": [{"configMap": {"name": "allowed"}}]})
        await scenario.resync()
        await world.reconcile_allowlist("gateway")
        everything = {tool["name"]: definition_hash(definition_of(tool)) for tool in DEFINITIONS}
        assert scenario.allowed() == everything

        # Unchanged: nothing parsed or merged, no ConfigMap write, every tool still allowed.
        version, _ = scenario.cache()
        writes, verified = world.kube.count("patch_configmap"), world.reconciler.verified_syncs
        await scenario.resync()
        assert scenario.cache()[0] == version and world.kube.count("patch_configmap") == writes
        assert world.reconciler.verified_syncs == verified + 1
        assert world.condition("github", "Ready")["status"] == "True"
        assert scenario.allowed() == everything

        # One character (or number, or boolean, or nested key) of one tool.
        mutated, index = mutate(data, DEFINITIONS)
        before, name = DEFINITIONS[index]["name"], mutated[index]["name"]
        assert mutated != DEFINITIONS
        world.fetch.tools = mutated
        await scenario.resync()
        assert world.reconciler.verified_syncs == verified + 1          # not taken for the same answer
        new_version, configmap = scenario.cache()
        assert new_version != version                                   # the cache is rewritten...
        cached = {tool.name: tool for tool in parse_cache(configmap).tools if tool.available}
        assert cached[name].schema_hash == definition_hash(definition_of(mutated[index]))  # ...the new definition
        assert cached[name].approved is False
        # The allowlists withdrew it before any target was written; the others stay.
        expected = {tool: digest for tool, digest in everything.items() if tool != before}
        assert scenario.allowed() == expected
        await world.reconcile_allowlist("gateway")
        assert world.documented("allowed")["github"] == expected
    asyncio.run(run())
