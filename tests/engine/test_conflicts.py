"""Two writers of one resource (two shards owning it for a moment, or a user changing it mid-sync):
status writes carry the resourceVersion they were decided from, so none overwrites a newer state; the
loser's ConfigMap write is undone, it posts no Event, and it looks again at the fresh object.

"Another process" is a second Reconciler with its own object cache and memory on the same fake API
server; `FakeKube.before` runs its reconcile at the exact point of the first one's I/O where it matters.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.engine.fakes import NS, URL, FakeFetcher, Versions, World, tool
from toolcatalog.api import constants as c
from toolcatalog.api.errors import SyncError
from toolcatalog.engine.objects import ObjectCache
from toolcatalog.engine.reconciler import IN_FLIGHT_SECONDS, Outcome, Reconciler, TransientError
from toolcatalog.kube.errors import ApiError

TS = c.KIND_TOOLSERVER
KEY = (TS, NS, "demo")


class OtherProcess:
    """A second operator process on the same API server, with its own caches and its own MCP view."""

    def __init__(self, world: World, tools: list[dict[str, Any]]) -> None:
        self.world = world
        self.fetch = FakeFetcher(tools)
        self.reconciler = Reconciler(objects=ObjectCache(), kube=world.kube, fetch=self.fetch,
                                     versions=Versions(world.kube), clock=world.clock, jitter=lambda: 0.0)

    def watch(self) -> None:
        body = self.world.kube.get(TS, "demo")
        assert body is not None
        self.reconciler.objects.observe(TS, body)

    async def reconcile(self) -> float | None:
        return await self.reconciler.reconcile(KEY)


def cached_tools(world: World) -> list[str]:
    """The available tools in the cache ConfigMap (removed ones stay listed, unavailable, for a while)."""
    cm = world.kube.get("ConfigMap", "toolserver-demo")
    assert cm is not None
    return [entry["name"] for entry in json.loads(cm["data"]["tools.json"])["tools"] if entry["available"]]


def describes_one_catalog(world: World) -> bool:
    """status.cache records the catalog the ConfigMap holds."""
    cm = world.kube.get("ConfigMap", "toolserver-demo") or {}
    return world.status("demo")["cache"]["contentHash"] == cm["metadata"]["annotations"][c.ANN_CONTENT_HASH]


def reasons(world: World) -> list[str]:
    return [event["reason"] for event in world.kube.events]


async def synced_then_refreshed(tools_a: list[dict[str, Any]], tools_b: list[dict[str, Any]],
                                ) -> tuple[World, OtherProcess, list[Outcome]]:
    """Process A synced `demo` first, both watches have it, then both see the refresh annotation `r1`.
    A's server answers `tools_a` from now on, B's `tools_b` (to tell their catalogs apart)."""
    world = World([tool("a"), tool("b")])
    outcomes: list[Outcome] = []
    world.reconciler.observers.append(outcomes.append)
    world.apply("demo")
    await world.reconcile("demo")
    world.clock.advance(120)
    world.apply("demo", annotations={c.ANN_REFRESH: "r1"})
    other = OtherProcess(world, tools_b)
    other.watch()
    world.fetch.tools = tools_a
    return world, other, outcomes


async def test_a_refresh_answered_by_another_process_first_is_not_answered_again():
    world, other, _ = await synced_then_refreshed([tool("a"), tool("x")], [tool("a"), tool("y")])
    before = len(world.kube.events)
    world.kube.before["patch_configmap"] = other.reconcile         # B does it all while A is about to write
    with pytest.raises(TransientError):                            # A's ConfigMap write: 409, nothing written
        await world.reconcile("demo")
    assert world.status("demo")["lastRefresh"]["token"] == "r1" and cached_tools(world) == ["a", "y"]
    assert describes_one_catalog(world)
    b_events = reasons(world)[before:]
    assert "Refreshed" in b_events
    # A's watch has not delivered B's status yet: A must not merge with a catalog its status does not record.
    with pytest.raises(TransientError):
        await world.reconcile("demo")
    assert world.fetch.calls == 2                                  # the create, and the attempt that lost
    world.watch(TS, "demo")                                        # B's status write comes through
    patches = world.status_patches()
    assert await world.reconcile("demo") is not None               # nothing to do: the token is answered
    assert world.status_patches() == patches and world.fetch.calls == 2
    assert reasons(world)[before:] == b_events and cached_tools(world) == ["a", "y"]


async def test_a_status_write_that_loses_puts_the_configmap_back_and_posts_no_event():
    world, other, outcomes = await synced_then_refreshed([tool("a"), tool("x")], [tool("a"), tool("y")])
    original = world.kube.get("ConfigMap", "toolserver-demo")
    assert original is not None
    before = len(world.kube.events)
    # B read the ConfigMap and is fetching when A begins; B's server fails, so B writes status only.
    release = asyncio.Event()
    fetching = asyncio.Event()
    b_fetch = other.fetch.__call__

    async def failing_fetch(endpoint: Any, *, timeout: float, fresh: bool = False) -> Any:
        fetching.set()
        await release.wait()
        other.fetch.error = SyncError(c.REASON_SERVER_UNAVAILABLE, "connection refused")
        return await b_fetch(endpoint, timeout=timeout, fresh=fresh)

    other.reconciler.fetch = failing_fetch
    b_task = asyncio.ensure_future(other.reconcile())
    await fetching.wait()

    async def b_finishes() -> None:
        release.set()
        await b_task
    world.kube.before["patch_status"] = b_finishes
    assert await world.reconcile("demo") == 0.0                    # lost: look again at once
    status = world.status("demo")
    assert (status["lastRefresh"]["token"], status["lastRefresh"]["result"]) == ("r1", "Failed")
    cm = world.kube.get("ConfigMap", "toolserver-demo")
    assert cm is not None and cm["data"] == original["data"]       # A's write undone: B's status describes it
    assert describes_one_catalog(world) and cached_tools(world) == ["a", "b"]
    assert "Refreshed" not in reasons(world)[before:] and "ToolsChanged" not in reasons(world)[before:]
    b_events = reasons(world)[before:]
    assert b_events == ["SyncFailed"]
    assert outcomes[-1].conflicts == 1 and outcomes[-1].plan is None
    patches = world.status_patches()
    await world.reconcile("demo")                                  # from the fresh object: answered already
    assert world.status_patches() == patches and reasons(world)[before:] == b_events


async def test_a_sync_does_not_merge_with_a_catalog_another_process_is_still_writing():
    world, other, _ = await synced_then_refreshed([tool("a"), tool("x")], [tool("a"), tool("y")])
    before = len(world.kube.events)
    refused: list[BaseException] = []

    async def b_looks_now() -> None:            # between A's ConfigMap write and A's status write
        try:
            await other.reconcile()
        except TransientError as error:
            refused.append(error)
    world.kube.before["patch_status"] = b_looks_now
    await world.reconcile("demo")
    assert refused and "another sync of this ToolServer is writing" in str(refused[0].__cause__)
    assert other.fetch.calls == 0
    assert cached_tools(world) == ["a", "x"] and describes_one_catalog(world)
    assert reasons(world)[before:].count("Refreshed") == 1
    other.watch()
    await other.reconcile()                     # A's status came through: nothing left to do
    assert other.fetch.calls == 0 and reasons(world)[before:].count("Refreshed") == 1


async def test_a_configmap_left_by_an_interrupted_sync_is_adopted_once_it_is_no_longer_recent():
    world = World()
    world.apply("demo")
    await world.reconcile("demo")
    world.clock.advance(3600)
    world.fetch.tools = [tool("a"), tool("c")]
    world.kube.fail["patch_status"] = ApiError(503, "ServiceUnavailable", "status: HTTP 503")
    with pytest.raises(TransientError):         # the ConfigMap is written, the status is not
        await world.reconcile("demo")
    assert cached_tools(world) == ["a", "c"] and not describes_one_catalog(world)
    restarted = OtherProcess(world, [tool("a"), tool("c")])     # and the process is gone
    restarted.watch()
    with pytest.raises(TransientError):
        await restarted.reconcile()
    world.clock.advance(IN_FLIGHT_SECONDS + 1)
    await restarted.reconcile()
    assert describes_one_catalog(world) and world.status("demo")["lastSync"]["result"] == "Succeeded"


async def test_a_label_changed_meanwhile_is_the_same_status_write_made_again_on_the_fresh_object():
    # (kubectl label, or an annotation: the status is still the one the reconcile read)
    world = World()
    outcomes: list[Outcome] = []
    world.reconciler.observers.append(outcomes.append)
    world.apply("demo")

    async def labelled() -> None:
        body = world.kube.get(TS, "demo")
        assert body is not None
        body["metadata"]["labels"] = {"team": "a"}
        world.kube.put(TS, "demo", body)
    world.kube.before["patch_status"] = labelled
    await world.reconcile("demo")
    assert world.condition("demo", "Synced")["status"] == "True" and world.status_patches() == 2
    assert reasons(world) == ["Synced"] and world.fetch.calls == 1 and describes_one_catalog(world)
    assert world.kube.get(TS, "demo")["metadata"]["labels"] == {"team": "a"}
    assert outcomes[-1].conflicts == 1 and outcomes[-1].wrote_status


async def test_a_spec_changed_meanwhile_still_records_what_was_synced_and_the_new_generation_follows():
    world = World()
    world.apply("demo")
    await world.reconcile("demo")
    world.clock.advance(3600)
    world.fetch.tools = [tool("a"), tool("c")]

    async def edited() -> None:
        world.apply("demo", {"url": URL, "toolSelector": {"include": ["a"]}})
    world.kube.before["patch_status"] = edited
    await world.reconcile("demo")               # its status is still the one read: the same write, made again
    status = world.status("demo")
    assert (status["lastSync"]["trigger"], status["observedGeneration"], status["toolCount"]) == ("schedule", 1, 2)
    assert reasons(world) == ["Synced", "ToolsChanged"] and describes_one_catalog(world)
    world.watch(TS, "demo")
    await world.reconcile("demo")
    status = world.status("demo")
    assert (status["lastSync"]["trigger"], status["observedGeneration"], status["toolCount"]) == ("update", 2, 1)
    assert describes_one_catalog(world)


async def test_an_object_rewritten_in_a_loop_backs_off_with_nothing_written():
    world = World()
    world.apply("demo")

    async def relabelled() -> None:
        body = world.kube.get(TS, "demo")
        assert body is not None
        body["metadata"]["labels"] = {"n": str(world.kube.count("patch_status"))}
        world.kube.put(TS, "demo", body)
        world.kube.before["patch_status"] = relabelled
    world.kube.before["patch_status"] = relabelled
    with pytest.raises(TransientError, match="keeps changing"):
        await world.reconcile("demo")
    world.kube.before.clear()
    assert world.status("demo") == {} and world.kube.events == []
    cm = world.kube.get("ConfigMap", "toolserver-demo")
    assert cm is not None and not cm.get("data") and not cm.get("binaryData")   # created, then emptied
