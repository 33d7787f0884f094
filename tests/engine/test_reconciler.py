"""The reconciler in-process: what one reconcile reads and writes, on fakes of the API server and MCP."""

from __future__ import annotations

import copy
import json

import pytest

from tests.engine.fakes import NS, URL, World, tool
from toolcatalog.api import constants as c
from toolcatalog.api.errors import SyncError
from toolcatalog.engine.reconciler import TransientError
from toolcatalog.kube.errors import ApiError


def cached_names(world: World, name: str = "demo") -> list[str]:
    cm = world.kube.get("ConfigMap", f"toolserver-{name}")
    assert cm is not None
    return [entry["name"] for entry in json.loads(cm["data"]["tools.json"])["tools"]]


async def test_a_new_resource_is_synced_once_and_then_left_alone_until_due():
    world = World()
    world.apply("demo")
    delay = await world.reconcile("demo")
    status = world.status("demo")
    assert status["lastSync"]["trigger"] == "create" and status["toolCount"] == 2
    assert world.condition("demo", "Synced")["status"] == "True"
    assert cached_names(world) == ["a", "b"]
    assert [event["reason"] for event in world.kube.events] == ["Synced"]
    # The next sync is due a little before the cache expires (TTL 3600 s, jitter 0 here).
    assert delay == pytest.approx(3600)
    world.watch(c.KIND_TOOLSERVER, "demo")              # our own status write comes back as an event
    patches = world.status_patches()
    assert await world.reconcile("demo") == pytest.approx(3600)
    assert world.fetch.calls == 1 and world.status_patches() == patches     # nothing to do: nothing written


async def test_a_due_resync_is_a_schedule_sync_that_reads_no_configmap_it_wrote_itself():
    world = World()
    world.apply("demo", {"url": URL, "sync": {"ttlSeconds": 60}})
    await world.reconcile("demo")
    reads = world.kube.count("read_configmap")
    world.fetch.tools = [tool("a"), tool("c")]
    world.clock.advance(61)
    await world.reconcile("demo")
    status = world.status("demo")
    assert status["lastSync"]["trigger"] == "schedule"
    assert [t["name"] for t in status["tools"] if t["available"]] == ["a", "c"]
    assert world.kube.count("read_configmap") == reads        # remembered from our own write
    assert [e["reason"] for e in world.kube.events][-1] == "ToolsChanged"


async def test_a_spec_change_is_an_update_sync_with_the_new_generation():
    world = World()
    world.apply("demo")
    await world.reconcile("demo")
    world.apply("demo", {"url": URL, "toolSelector": {"include": ["a"]}})
    await world.reconcile("demo")
    status = world.status("demo")
    assert status["lastSync"]["trigger"] == "update" and status["observedGeneration"] == 2
    assert status["toolCount"] == 1


async def test_a_refresh_is_answered_once_and_a_second_one_too_soon_is_rate_limited():
    world = World()
    world.apply("demo", {"url": URL, "sync": {"minIntervalSeconds": 30}})
    await world.reconcile("demo")
    world.clock.advance(60)
    world.apply("demo", {"url": URL, "sync": {"minIntervalSeconds": 30}}, annotations={c.ANN_REFRESH: "r1"})
    await world.reconcile("demo")
    assert world.status("demo")["lastRefresh"]["token"] == "r1" and world.fetch.calls == 2
    assert world.status("demo")["lastSync"]["trigger"] == "refresh"
    world.clock.advance(5)
    world.apply("demo", {"url": URL, "sync": {"minIntervalSeconds": 30}}, annotations={c.ANN_REFRESH: "r2"})
    await world.reconcile("demo")
    refresh = world.status("demo")["lastRefresh"]
    assert (refresh["token"], refresh["result"]) == ("r2", "RateLimited") and world.fetch.calls == 2
    assert world.kube.events[-1]["reason"] == "RefreshRateLimited"
    world.apply("demo", {"url": URL, "sync": {"minIntervalSeconds": 30}},
                annotations={c.ANN_REFRESH: "r3", c.ANN_REFRESH_FORCE: "r3"})
    await world.reconcile("demo")
    assert world.status("demo")["lastRefresh"]["result"] == "Succeeded" and world.fetch.calls == 3


async def test_a_failed_sync_keeps_the_cache_and_the_tools_and_retries_with_backoff():
    world = World()
    world.apply("demo")
    await world.reconcile("demo")
    before = world.status("demo")
    cm_before = world.kube.get("ConfigMap", "toolserver-demo")
    world.fetch.error = SyncError(c.REASON_SERVER_UNAVAILABLE, "connection refused")
    world.clock.advance(3600)
    delay = await world.reconcile("demo")
    after = world.status("demo")
    assert after["tools"] == before["tools"] and after["cache"] == before["cache"]
    assert after["phase"] == "Stale" and world.condition("demo", "Synced")["reason"] == "ServerUnavailable"
    assert world.kube.get("ConfigMap", "toolserver-demo")["data"] == cm_before["data"]
    assert delay == pytest.approx(5)
    assert world.kube.events[-1]["reason"] == "SyncFailed"


async def test_an_api_server_failure_changes_nothing_and_is_left_to_the_queue():
    world = World()
    world.apply("demo")
    world.kube.fail["create_configmap"] = ApiError(503, "ServiceUnavailable", "ConfigMap: HTTP 503")
    with pytest.raises(TransientError):
        await world.reconcile("demo")
    assert world.status("demo") == {} and world.kube.events == []
    await world.reconcile("demo")                       # the queue's retry
    assert world.condition("demo", "Synced")["status"] == "True"


async def test_an_unchanged_resync_writes_only_status_and_puts_back_a_deleted_configmap():
    world = World()
    world.apply("demo", {"url": URL, "sync": {"ttlSeconds": 60}})
    await world.reconcile("demo")
    world.watch(c.KIND_TOOLSERVER, "demo")
    written = copy.deepcopy(world.kube.get("ConfigMap", "toolserver-demo"))
    world.clock.advance(61)
    await world.reconcile("demo")              # the same answer: status alone, the ConfigMap as it was
    world.watch(c.KIND_TOOLSERVER, "demo")
    assert world.kube.get("ConfigMap", "toolserver-demo") == written
    assert world.kube.count("patch_configmap") == 0 and world.kube.count("read_configmap") == 0
    assert world.status("demo")["cache"]["verifiedAt"] > world.status("demo")["cache"]["cachedAt"]
    del world.kube.objects[("ConfigMap", NS, "toolserver-demo")]     # someone deletes it
    world.clock.advance(61)
    await world.reconcile("demo")              # the same answer again, but the ConfigMap is gone: written anew
    again = world.kube.get("ConfigMap", "toolserver-demo")
    assert again is not None
    names = [[tool["name"] for tool in json.loads(cm["data"]["tools.json"])["tools"]] for cm in (again, written)]
    assert names[0] == names[1] == ["a", "b"]
    assert world.condition("demo", "Ready")["status"] == "True"


async def synced_once(*, report_interval: float) -> World:
    """A resource with a 60 s lifetime, synced once, 61 s later: due again."""
    world = World()
    world.reconciler.status_report_interval = report_interval
    world.apply("demo", {"url": URL, "sync": {"ttlSeconds": 60}})
    await world.reconcile("demo")
    world.watch(c.KIND_TOOLSERVER, "demo")
    world.clock.advance(61)
    return world


async def test_unchanged_resyncs_write_status_only_once_the_recorded_verification_is_older_than_the_interval():
    """The kubelet's node-status rule: only the times of a verification moved, so it is written every
    `status_report_interval` seconds, not every minute; anything else that moves is written at once."""
    world = await synced_once(report_interval=300)
    await world.reconcile("demo")           # the first resync: its trigger (schedule) is news, written
    world.watch(c.KIND_TOOLSERVER, "demo")
    patches, recorded = world.status_patches(), copy.deepcopy(world.status("demo"))
    assert recorded["lastSync"]["trigger"] == "schedule"
    for _ in range(3):                      # 61, 122, 183 s after the recorded verification
        world.clock.advance(61)
        assert await world.reconcile("demo") == pytest.approx(60)      # verified, due again in 60 s
        world.watch(c.KIND_TOOLSERVER, "demo")
    assert world.status_patches() == patches and world.status("demo") == recorded and world.fetch.calls == 5
    # Woken before it is due, it keeps the schedule it holds in memory (status says it is overdue).
    world.clock.advance(30)
    assert await world.reconcile("demo") == pytest.approx(30) and world.fetch.calls == 5
    world.clock.advance(31 + 61)            # 305 s after the recorded verification: written
    await world.reconcile("demo")
    world.watch(c.KIND_TOOLSERVER, "demo")
    assert world.status_patches() == patches + 1
    assert world.status("demo")["cache"]["verifiedAt"] > recorded["cache"]["verifiedAt"]
    assert world.status("demo")["cache"]["cachedAt"] == recorded["cache"]["cachedAt"]
    # A change of the catalog is written by the very next resync.
    world.fetch.tools = [tool("a")]
    world.clock.advance(61)
    await world.reconcile("demo")
    assert world.status_patches() == patches + 2 and world.status("demo")["toolCount"] == 1
    assert world.kube.count("patch_configmap") == 1


async def test_a_failing_resync_is_written_at_once_whatever_the_report_interval():
    world = await synced_once(report_interval=300)
    world.fetch.error = SyncError(c.REASON_SERVER_UNAVAILABLE, "connection refused")
    await world.reconcile("demo")
    assert world.condition("demo", "Synced")["reason"] == c.REASON_SERVER_UNAVAILABLE
    assert world.condition("demo", "Ready")["status"] == "True"       # the previous cache is served
    assert cached_names(world) == ["a", "b"]


async def test_a_configmap_changed_by_someone_else_is_read_afresh_and_never_overwritten_blindly():
    world = World()
    world.apply("demo", {"url": URL, "sync": {"ttlSeconds": 60}})
    await world.reconcile("demo")
    cm = world.kube.get("ConfigMap", "toolserver-demo")
    cm["metadata"]["labels"]["touched"] = "yes"
    world.kube.put("ConfigMap", "toolserver-demo", cm)         # a new resourceVersion
    world.clock.advance(61)
    await world.reconcile("demo")               # its version moved: read afresh; the catalog is the same, no write
    assert world.kube.count("read_configmap") == 1 and world.kube.count("patch_configmap") == 0
    world.fetch.tools = [tool("a"), tool("c")]
    world.clock.advance(61)

    async def someone_writes() -> None:         # between the sync's read and its write
        world.kube.put("ConfigMap", "toolserver-demo", world.kube.get("ConfigMap", "toolserver-demo") or {})
    world.kube.before["patch_configmap"] = someone_writes
    with pytest.raises(TransientError):
        await world.reconcile("demo")                          # the conditional patch conflicts
    await world.reconcile("demo")                              # the retry reads it first
    assert world.condition("demo", "Synced")["status"] == "True"
    cm = world.kube.get("ConfigMap", "toolserver-demo")
    assert cm["metadata"]["labels"]["touched"] == "yes"
    document = json.loads(cm["data"]["tools.json"])
    assert [entry["name"] for entry in document["tools"] if entry["available"]] == ["a", "c"]


async def test_a_new_resource_creates_its_configmap_without_reading_it_unless_the_watch_knows_one():
    world = World()
    world.apply("demo")
    await world.reconcile("demo")
    assert world.kube.count("read_configmap") == 0 and world.kube.count("create_configmap") == 1
    # Someone else's ConfigMap the watch has not delivered yet: the create conflicts and nothing is written;
    # the retry reads it and finds it is not ours, so it is never overwritten.
    world.apply("late")
    world.kube.put("ConfigMap", "toolserver-late", {"data": {"theirs": "yes"}})
    world.reconciler.versions.unseen.add("toolserver-late")
    with pytest.raises(TransientError):
        await world.reconcile("late")
    assert world.status("late") == {}
    world.reconciler.versions.unseen.clear()
    await world.reconcile("late")
    assert world.kube.count("read_configmap") == 1
    assert world.status("late")["lastSync"]["error"]["reason"] == "CacheConflict"
    assert world.kube.get("ConfigMap", "toolserver-late")["data"] == {"theirs": "yes"}


async def test_after_a_restart_the_configmap_status_records_is_read_not_created_again():
    world = World()
    world.apply("demo", {"url": URL, "sync": {"ttlSeconds": 60}})
    await world.reconcile("demo")
    world.reconciler._catalogs.clear()                  # a new operator process remembers nothing
    world.reconciler.versions.unseen.add("toolserver-demo")     # and its watch skips its own ConfigMaps
    world.clock.advance(61)
    await world.reconcile("demo")
    assert world.kube.count("read_configmap") == 1 and world.kube.count("create_configmap") == 1
    assert world.status("demo")["lastSync"]["trigger"] == "schedule"
    assert world.condition("demo", "Synced")["status"] == "True"


async def test_a_foreign_configmap_is_a_conflict_but_a_previous_incarnations_is_adopted():
    world = World()
    world.kube.put("ConfigMap", "toolserver-demo", {"data": {"mine": "yes"}})
    world.apply("demo")
    await world.reconcile("demo")
    assert world.condition("demo", "Synced")["reason"] == "CacheConflict"
    assert world.condition("demo", "Stalled")["status"] == "True"
    owner = {"apiVersion": c.API_VERSION, "kind": "ToolServer", "name": "again", "uid": "old-uid",
             "controller": True}
    world.kube.put("ConfigMap", "toolserver-again", {"metadata": {"ownerReferences": [owner]},
                                                     "data": {"tools.json": "{}"}})
    world.apply("again")
    await world.reconcile("again")
    assert world.condition("again", "Synced")["status"] == "True"
    refs = world.kube.get("ConfigMap", "toolserver-again")["metadata"]["ownerReferences"]
    assert [ref["uid"] for ref in refs] == [world.kube.get("ToolServer", "again")["metadata"]["uid"]]


async def test_a_rotated_secret_resyncs_with_trigger_secret_and_references_record_versions_only():
    world = World()
    world.kube.secret("creds", {"token": "s3cret-token-1"})
    world.apply("demo", {"url": URL, "auth": {"bearerToken": {"secretKeyRef": {"name": "creds", "key": "token"}}}})
    await world.reconcile("demo")
    references = world.status("demo")["references"]
    assert references == [{"kind": "Secret", "name": "creds",
                           "resourceVersion": world.kube.secret_version(NS, "creds")}]
    assert world.fetch.endpoints[-1].headers["Authorization"] == "Bearer s3cret-token-1"
    world.watch(c.KIND_TOOLSERVER, "demo")
    assert await world.reconcile("demo") and world.fetch.calls == 1         # unchanged: nothing to do
    world.kube.secret("creds", {"token": "s3cret-token-2"})
    await world.reconcile("demo")
    assert world.status("demo")["lastSync"]["trigger"] == "secret"
    assert world.fetch.endpoints[-1].headers["Authorization"] == "Bearer s3cret-token-2"
    assert "s3cret" not in json.dumps([world.status("demo"), world.kube.events])


async def test_a_missing_secret_or_ca_configmap_waits_for_it_and_syncs_when_it_appears():
    world = World()
    spec = {"url": URL, "tls": {"caBundle": {"configMapKeyRef": {"name": "ca", "key": "ca.crt"}}}}
    world.apply("demo", spec)
    await world.reconcile("demo")
    assert world.condition("demo", "Synced")["reason"] == "ConfigMapNotFound"
    assert world.status("demo")["references"] == [{"kind": "ConfigMap", "name": "ca"}]
    world.watch(c.KIND_TOOLSERVER, "demo")
    assert world.fetch.calls == 0 and await world.reconcile("demo") == pytest.approx(240, rel=0.3)
    world.kube.put("ConfigMap", "ca", {"data": {"ca.crt": "-----BEGIN CERTIFICATE-----"}})
    await world.reconcile("demo")
    assert world.status("demo")["lastSync"]["trigger"] == "update" and world.fetch.calls == 1


async def test_a_connectorconfig_follows_its_toolserver_and_inherits_its_auth():
    world = World()
    world.kube.secret("shared", {"token": "shared-token"})
    world.apply("srv", {"url": URL, "auth": {"bearerToken": {"secretKeyRef": {"name": "shared", "key": "token"}}}})
    world.apply("alice", {"toolServerRef": {"name": "srv"}}, kind=c.KIND_CONNECTORCONFIG)
    await world.reconcile("alice", c.KIND_CONNECTORCONFIG)
    assert world.fetch.endpoints[-1].headers["Authorization"] == "Bearer shared-token"
    kinds = {ref["kind"] for ref in world.status("alice", c.KIND_CONNECTORCONFIG)["references"]}
    assert kinds == {"ToolServer", "Secret"}
    world.watch(c.KIND_CONNECTORCONFIG, "alice")
    world.apply("srv", {"url": "http://other.test/mcp"})              # its spec changes
    await world.reconcile("alice", c.KIND_CONNECTORCONFIG)
    assert world.status("alice", c.KIND_CONNECTORCONFIG)["lastSync"]["trigger"] == "update"
    assert world.fetch.endpoints[-1].url == "http://other.test/mcp"


async def test_list_changed_and_resume_only_for_servers_that_notify():
    world = World(list_changed=True)
    key = world.apply("demo")
    await world.reconcile("demo")
    assert key in world.listeners.listening
    world.watch(c.KIND_TOOLSERVER, "demo")
    world.reconciler.list_changed(key)
    await world.reconcile("demo")
    assert world.status("demo")["lastSync"]["trigger"] == "list-changed"
    # A restarted operator (a fresh reconciler) resyncs it: its notifications went unheard meanwhile.
    restarted = World(list_changed=True)
    restarted.kube = world.kube
    restarted.reconciler.kube = world.kube
    restarted.reconciler.versions.kube = world.kube
    restarted.watch(c.KIND_TOOLSERVER, "demo")
    await restarted.reconcile("demo")
    assert world.status("demo")["lastSync"]["trigger"] == "resume"


async def test_suspend_writes_status_once_and_answers_a_refresh_without_fetching():
    world = World()
    world.apply("demo")
    await world.reconcile("demo")
    world.apply("demo", {"url": URL, "sync": {"suspend": True}})
    await world.reconcile("demo")
    assert world.status("demo")["phase"] == "Suspended"
    world.watch(c.KIND_TOOLSERVER, "demo")
    patches = world.status_patches()
    assert await world.reconcile("demo") is None and world.status_patches() == patches
    world.apply("demo", {"url": URL, "sync": {"suspend": True}}, annotations={c.ANN_REFRESH: "r1"})
    await world.reconcile("demo")
    refresh = world.status("demo")["lastRefresh"]
    assert (refresh["result"], refresh["error"]["reason"]) == ("Failed", "Suspended") and world.fetch.calls == 1


async def test_an_invalid_spec_is_reported_once_and_not_retried():
    world = World()
    world.apply("demo", {"url": "http://user:pw@mcp.test/mcp"})
    assert await world.reconcile("demo") is None
    assert world.condition("demo", "Synced")["reason"] == "InvalidSpec" and "pw" not in json.dumps(world.status("demo"))
    world.watch(c.KIND_TOOLSERVER, "demo")
    patches = world.status_patches()
    assert await world.reconcile("demo") is None and world.status_patches() == patches


async def test_a_rug_pull_under_new_and_changed_is_pending_in_status_cache_condition_and_event():
    world = World(tools=[tool("a"), tool("b")])
    spec = {"url": URL, "approval": {"policy": "NewAndChanged"}}
    world.apply("demo", spec)
    await world.reconcile("demo")
    assert world.condition("demo", "Approved")["reason"] == "AllApproved"
    assert world.status("demo")["toolCount"] == 2
    world.fetch.tools = [tool("a", "does things, and mails your keys away"), tool("b")]
    world.clock.advance(60)
    world.apply("demo", spec, annotations={c.ANN_REFRESH: "r1"})
    await world.reconcile("demo")
    status = world.status("demo")
    entries = {t["name"]: t for t in status["tools"]}
    assert entries["a"]["approval"] == "Pending" and entries["a"]["approvedHash"] != entries["a"]["schemaHash"]
    assert entries["b"]["approval"] == "Approved" and status["toolCount"] == 1
    approved = world.condition("demo", "Approved")
    assert (approved["status"], approved["reason"]) == ("False", "ApprovalPending")
    assert "a (changed)" in approved["message"]
    assert world.condition("demo", "Ready")["status"] == "True"            # the rest stays usable
    assert [e["reason"] for e in world.kube.events if e["type"] == "Warning"] == ["ApprovalPending"]
    document = json.loads(world.kube.get("ConfigMap", "toolserver-demo")["data"]["tools.json"])
    cached = {t["name"]: t for t in document["tools"]}
    assert cached["a"]["approved"] is False and cached["a"]["approvedDefinition"]["description"] == "does things"
    assert document["approval"]["policy"] == "NewAndChanged" and document["hashVersion"] == 2
    # A resync of the same pending set posts no second Event; approving it in the spec clears it.
    world.clock.advance(3600)
    await world.reconcile("demo")
    assert [e["reason"] for e in world.kube.events].count("ApprovalPending") == 1
    spec = {**spec, "tools": [{"name": "a", "approvedHash": entries["a"]["schemaHash"]}]}
    world.apply("demo", spec)
    await world.reconcile("demo")
    assert world.condition("demo", "Approved")["reason"] == "AllApproved" and world.status("demo")["toolCount"] == 2


async def test_a_servers_ttl_shortens_the_cache_but_never_below_the_floor_and_fetched_with_is_recorded():
    world = World()
    world.fetch.server_hints = {"ttl_ms": 120_000, "cache_scope": "private"}
    world.kube.secret("creds", {"token": "t0ken-value"})
    world.apply("demo", {"url": URL, "auth": {"bearerToken": {"secretKeyRef": {"name": "creds", "key": "token"}}}})
    delay = await world.reconcile("demo")
    status = world.status("demo")
    assert (status["server"]["ttlMs"], status["server"]["cacheScope"]) == (120_000, "private")
    assert delay == pytest.approx(120)                  # 2 minutes, not the spec's hour
    assert status["fetchedWith"] == {"source": "ToolServer", "secretKeyRef": {"name": "creds", "key": "token"}}
    document = json.loads(world.kube.get("ConfigMap", "toolserver-demo")["data"]["tools.json"])
    assert document["server"]["cacheScope"] == "private" and document["fetchedWith"]["source"] == "ToolServer"
    world.fetch.server_hints = {"ttl_ms": 5, "cache_scope": "public"}           # a server asking to be polled
    world.clock.advance(200)
    assert await world.reconcile("demo") == pytest.approx(60)                 # the floor: 60 s


@pytest.mark.parametrize("status_code", [413, 422])
async def test_a_refused_status_write_puts_the_previous_cache_back_and_fails_for_good(status_code):
    world = World()
    world.apply("demo", {"url": URL, "sync": {"ttlSeconds": 60}})
    await world.reconcile("demo")
    cm_before = world.kube.get("ConfigMap", "toolserver-demo")
    tools_before = world.status("demo")["tools"]
    world.fetch.tools = [tool("a"), tool("b"), tool("c")]
    world.kube.fail["patch_status"] = ApiError(status_code, "Refused", f"status: HTTP {status_code}")
    world.clock.advance(61)
    delay = await world.reconcile("demo")
    cm_after = world.kube.get("ConfigMap", "toolserver-demo")
    assert cm_after["data"] == cm_before["data"] and cm_after.get("binaryData") == cm_before.get("binaryData")
    assert cm_after["metadata"]["annotations"] == cm_before["metadata"]["annotations"]
    status = world.status("demo")
    assert status["tools"] == tools_before and status["lastSync"]["result"] == "Failed"
    reason = "CacheTooLarge" if status_code == 413 else "WriteRejected"
    assert world.condition("demo", "Synced")["reason"] == reason
    assert world.condition("demo", "Stalled")["status"] == "True"
    assert delay is not None and delay >= 600          # not retried in a loop
    assert world.kube.events[-1]["reason"] == "SyncFailed"


async def test_a_refused_first_status_write_leaves_no_catalog_in_the_configmap_it_created():
    world = World()
    world.apply("demo")
    world.kube.fail["patch_status"] = ApiError(413, "RequestEntityTooLarge", "status: HTTP 413")
    await world.reconcile("demo")
    cm = world.kube.get("ConfigMap", "toolserver-demo")
    assert cm is not None and not cm.get("data") and not cm.get("binaryData")
    assert not any(key.startswith("toolcatalog.dev/") for key in cm["metadata"].get("annotations") or {})
    status = world.status("demo")
    assert "tools" not in status and world.condition("demo", "Synced")["reason"] == "CacheTooLarge"
    world.clock.advance(1800)
    await world.reconcile("demo")                       # the slow retry, now accepted: the cache is filled
    assert world.condition("demo", "Synced")["status"] == "True"
    assert cached_names(world) == ["a", "b"]
