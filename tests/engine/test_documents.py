"""The parsed documents of recent cache writes (engine/documents.py): a merge that starts from one gives
exactly what parsing the ConfigMap gives, and a document is never taken for a version it was not written as."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.engine.fakes import URL, World, tool
from toolcatalog.api import constants as c
from toolcatalog.api.models import CacheDocument
from toolcatalog.engine import reconciler as reconciler_module
from toolcatalog.engine.documents import RecentDocuments
from toolcatalog.kube.errors import ApiError

SPEC = {"url": URL, "approval": {"policy": "NewAndChanged"}, "sync": {"minIntervalSeconds": 0}}


def doc(name: str = "a") -> CacheDocument:
    return CacheDocument.model_validate({
        "source": {"kind": "ToolServer", "namespace": "ns", "name": name, "url": URL}, "server": {},
        "cachedAt": "2026-11-21T12:00:00Z", "hashVersion": 2, "approval": {"policy": "None"}, "tools": []})


def test_a_document_is_found_only_for_the_write_it_came_from():
    held = RecentDocuments(min_bytes=0)
    held.remember("u1", "toolserver-a", "10", 100, doc())
    assert held.get("u1", "toolserver-a", "10") == doc()
    assert held.get("u1", "toolserver-a", "11") is None        # written again since (by anyone)
    assert held.get("u1", "other", "10") is None
    assert held.get("u2", "toolserver-a", "10") is None
    held.remember("u1", "toolserver-a", None, 100, doc())       # a version unknown: nothing held
    assert held.get("u1", "toolserver-a", None) is None and len(held) == 0


def test_only_large_documents_are_held_and_the_oldest_go_first():
    held = RecentDocuments(min_bytes=50, max_bytes=250)
    held.remember("small", "cm", "1", 49, doc())
    assert len(held) == 0
    for index in range(3):
        held.remember(f"u{index}", "cm", "1", 100, doc())
    assert held.get("u0", "cm", "1") is None and held.get("u2", "cm", "1") is not None and len(held) == 2
    held.remember("huge", "cm", "1", 251, doc())
    assert held.get("huge", "cm", "1") is None
    held.forget("u2")
    held.forget("u1")
    assert len(held) == 0


def _world(documents: RecentDocuments) -> World:
    world = World(tools=[tool("a"), tool("b")])
    world.reconciler._documents = documents
    return world


async def _run(world: World) -> list[Any]:
    """Syncs that change the catalog, one whose status write is refused (the cache is put back), and an edit of
    the ConfigMap between syncs; what the API server holds after each step."""
    seen: list[Any] = []

    async def refresh(token: str) -> None:
        world.clock.advance(120)
        world.apply("demo", SPEC, annotations={c.ANN_REFRESH: token})
        await world.reconcile("demo")
        world.watch(c.KIND_TOOLSERVER, "demo")
        cm = world.kube.get("ConfigMap", "toolserver-demo") or {}
        seen.append(copy.deepcopy((cm.get("data"), cm["metadata"].get("annotations"), world.status("demo"),
                                   world.kube.events)))

    world.apply("demo", SPEC)
    await world.reconcile("demo")
    world.watch(c.KIND_TOOLSERVER, "demo")
    world.fetch.tools = [tool("a", "changed"), tool("c")]
    await refresh("r1")
    world.fetch.tools = [tool("a"), tool("c"), tool("d")]
    world.kube.fail["patch_status"] = ApiError(422, "Invalid", "status: HTTP 422 Invalid")
    await refresh("r2")                 # recorded as failed; the cache put back as r1 left it
    world.fetch.tools = [tool("a", "changed"), tool("c")]
    await refresh("r3")                 # r1's catalog: unchanged, nothing written
    world.fetch.tools = [tool("a"), tool("c"), tool("e")]
    await refresh("r4")                 # merged into r1's catalog, never into the one r2 wrote and took back
    cm = world.kube.objects[("ConfigMap", "team-a", "toolserver-demo")]
    cm["data"][c.CM_KEY_JSON] = cm["data"][c.CM_KEY_JSON].replace('"does things"', '"edited by hand"')
    cm["metadata"]["resourceVersion"] = world.kube._rv()
    world.fetch.tools = [tool("a"), tool("d")]
    with pytest.raises(reconciler_module.TransientError):      # the edit is met (a conflict), then read afresh
        await refresh("r5")
    await refresh("r6")
    return seen


async def test_merging_into_a_held_document_gives_what_parsing_the_configmap_gives(monkeypatch):
    parsed: list[int] = []
    real = reconciler_module.parse_document
    monkeypatch.setattr(reconciler_module, "parse_document", lambda text: parsed.append(1) or real(text))
    expected = await _run(_world(RecentDocuments(max_bytes=0)))     # holds nothing: every merge parses
    parses_without = len(parsed)
    parsed.clear()
    assert await _run(_world(RecentDocuments(min_bytes=0))) == expected
    assert len(parsed) < parses_without
