"""Two operator processes that both believe they own every resource (what a change of shard count, or a
second install by mistake, amounts to): no update is lost, none is reverted, no Event is posted twice.

Status writes carry the resourceVersion they were decided from, so the slower writer's write is refused
(409) and it looks again at the fresh object; the ConfigMap and the status keep describing one catalog.
The test drives refreshes, a server whose tools change, spec changes, a failing server and its recovery
through both processes at once, against a slow MCP server so that both are fetching at the same time,
and reads every status each object went through from a watch.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import urllib.request
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.support.k8s import CC, CM, TS, condition, connectorconfig, toolserver, wait_until
from toolcatalog.api import constants as c
from toolcatalog_dev.cluster import ApiError
from toolcatalog_dev.mcpserver import McpTestServer, free_port, make_tools

pytestmark = pytest.mark.e2e

TOOLSERVERS = 5
CONNECTORCONFIGS = 2
FAST = {"minIntervalSeconds": 0}


async def test_a_status_write_from_a_stale_resource_version_is_refused_by_the_api_server(api):
    """What the operator relies on: a merge patch of /status with metadata.resourceVersion is conditional."""
    created = await api.create(toolserver("fenced", "http://127.0.0.1:9/mcp"))
    stale = created["metadata"]["resourceVersion"]
    touched = await api.annotate(TS, api.ns, "fenced", {"example.com/touch": "1"})    # someone else's write
    path = api.path(TS, api.ns, "fenced", "status")
    body = {"metadata": {"resourceVersion": stale}, "status": {"phase": "Ready"}}
    with pytest.raises(ApiError) as refused:
        await api.request("PATCH", path, body, "application/merge-patch+json")
    assert refused.value.status == 409
    unchanged = await api.get(TS, api.ns, "fenced")
    assert unchanged is not None and unchanged.get("status") == touched.get("status")
    current = unchanged["metadata"]["resourceVersion"]
    assert current == touched["metadata"]["resourceVersion"]
    body["metadata"]["resourceVersion"] = current
    written = await api.request("PATCH", path, body, "application/merge-patch+json")
    assert written["status"]["phase"] == "Ready"


class StatusHistory:
    """Every status each object of a resource went through, in resourceVersion order, from a watch."""

    def __init__(self, api: Any, resource: str) -> None:
        self.api, self.resource = api, resource
        self.statuses: dict[str, list[dict[str, Any]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    def _record(self, obj: dict[str, Any]) -> None:
        if obj.get("status"):
            self.statuses.setdefault(obj["metadata"]["name"], []).append(obj["status"])

    async def _run(self) -> None:
        """List, then watch from the list's resourceVersion on (as an informer does): no status missed."""
        listed = await self.api.request("GET", self.api.path(self.resource, self.api.ns))
        for obj in listed["items"]:
            self._record(obj)
        version = listed["metadata"]["resourceVersion"]
        self._ready.set()
        while True:
            async for event in self.api.watch(self.resource, self.api.ns, version):
                version = event["object"]["metadata"].get("resourceVersion", version)
                if event["type"] in ("ADDED", "MODIFIED"):
                    self._record(event["object"])

    @contextlib.asynccontextmanager
    async def recording(self) -> AsyncIterator[StatusHistory]:
        self._task = asyncio.ensure_future(self._run())
        await asyncio.wait_for(self._ready.wait(), 10)
        try:
            yield self
        finally:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _never_goes_back(name: str, statuses: list[dict[str, Any]], tokens: list[str]) -> None:
    """Monotonic fields of successive statuses: nothing a later write recorded is ever undone."""
    def stamp(status: dict[str, Any], *path: str) -> str:
        value: Any = status
        for key in path:
            value = (value or {}).get(key)
        return str(value or "")

    for before, after in zip(statuses, statuses[1:], strict=False):
        where = f"{name}: {json.dumps(before)[:300]} -> {json.dumps(after)[:300]}"
        assert (after.get("observedGeneration") or 0) >= (before.get("observedGeneration") or 0), where
        assert stamp(after, "lastSync", "completedAt") >= stamp(before, "lastSync", "completedAt"), where
        assert stamp(after, "lastRefresh", "completedAt") >= stamp(before, "lastRefresh", "completedAt"), where
        token_before, token_after = stamp(before, "lastRefresh", "token"), stamp(after, "lastRefresh", "token")
        if token_before:
            assert tokens.index(token_after) >= tokens.index(token_before), where
        for cond in after.get("conditions") or []:
            earlier = condition({"status": before}, cond["type"])
            if earlier:
                assert cond["lastTransitionTime"] >= earlier["lastTransitionTime"], where
                assert (cond.get("observedGeneration") or 0) >= (earlier.get("observedGeneration") or 0), where


def _status_conflicts(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(float(value) for value in re.findall(r"^toolcatalog_status_conflicts_total\{[^}]*\} (\S+)$", text,
                                                  re.MULTILINE))


async def test_two_processes_owning_the_same_resources_lose_no_update_and_post_each_event_once(
        api, start_operator, capsys):
    ports = [free_port(), free_port()]
    operators = [start_operator(args=["--metrics-port", str(port), "--metrics-address", "127.0.0.1"])
                 for port in ports]
    names = {TS: [f"ts-{index}" for index in range(TOOLSERVERS)],
             CC: [f"cc-{index}" for index in range(CONNECTORCONFIGS)]}
    everything = [(resource, name) for resource, listed in names.items() for name in listed]
    tokens: list[str] = []
    histories = {resource: StatusHistory(api, resource) for resource in names}

    async def all_match(what: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 90) -> None:
        async def check() -> bool:
            for resource, name in everything:
                obj = await api.get(resource, api.ns, name)
                if obj is None or not predicate(obj):
                    return False
            return True
        await wait_until(check, timeout=timeout, what=what, operator=operators[0])

    async def refresh_everything(token: str) -> None:
        tokens.append(token)
        await asyncio.gather(*(api.annotate(resource, api.ns, name, {c.ANN_REFRESH: token})
                               for resource, name in everything))

    def answered(token: str, result: str) -> Callable[[dict[str, Any]], bool]:
        def check(obj: dict[str, Any]) -> bool:
            last = (obj.get("status") or {}).get("lastRefresh") or {}
            return last.get("token") == token and last.get("result") == result
        return check

    # Slow answers: both processes are fetching the same catalog at the same time, every round.
    with McpTestServer(tools=make_tools(3), delay=0.3) as server:
        async with histories[TS].recording(), histories[CC].recording():
            for name in names[TS]:
                await api.create(toolserver(name, server.url, sync=FAST))
            for index, name in enumerate(names[CC]):
                await api.create(connectorconfig(name, toolServerRef={"name": names[TS][index]}, sync=FAST))
            await all_match("every resource synced once", lambda o: condition(o, "Synced").get("status") == "True")

            await refresh_everything("r1")
            await all_match("r1 answered everywhere", answered("r1", "Succeeded"))

            server.tools = make_tools(4)                                    # the server changes
            await refresh_everything("r2")
            await all_match("r2 answered with 4 tools", lambda o: answered("r2", "Succeeded")(o)
                            and o["status"]["toolCount"] == 4)

            for resource, name in everything:                               # a spec change
                await api.patch_spec(resource, api.ns, name, {"sync": {**FAST, "timeoutSeconds": 25}})
            await all_match("generation 2 synced", lambda o: o["status"].get("observedGeneration") == 2
                            and condition(o, "Synced").get("status") == "True")

            server.mode = "http500"                                         # the server fails
            await refresh_everything("r3")
            await all_match("r3 answered as failed", answered("r3", "Failed"))

            server.mode = "ok"                                              # and recovers
            await refresh_everything("r4")
            await all_match("r4 answered, synced again", lambda o: answered("r4", "Succeeded")(o)
                            and condition(o, "Ready").get("status") == "True"
                            and condition(o, "Synced").get("status") == "True")
            fetches = server.list_calls
            await asyncio.sleep(0)
        histories_seen = {name: statuses for history in histories.values()
                          for name, statuses in history.statuses.items()}

    for resource, name in everything:
        obj = await api.get(resource, api.ns, name)
        assert obj is not None
        status = obj["status"]
        assert status["observedGeneration"] == obj["metadata"]["generation"] == 2
        assert condition(obj, "Refreshed").get("status") == "True" and status["lastRefresh"]["token"] == "r4"
        # The ConfigMap and the status describe one catalog.
        cm = await api.get(CM, api.ns, status["cache"]["configMap"])
        assert cm is not None and cm["metadata"]["annotations"][c.ANN_CONTENT_HASH] == status["cache"]["contentHash"]
        # Nothing a write recorded was ever undone by the other process's older outcome.
        _never_goes_back(name, histories_seen[name], tokens)
        for token in tokens:
            assert any((s.get("lastRefresh") or {}).get("token") == token for s in histories_seen[name]), \
                f"{name}: refresh {token} never answered"
        # One outcome, one Event, whichever process recorded it.
        events = [event for event in await api.events(api.ns, name)
                  if event.get("source", {}).get("component") == c.MANAGED_BY]
        by_reason: dict[str, list[str]] = {}
        for event in events:
            by_reason.setdefault(event["reason"], []).append(event["message"])
        for token in tokens:
            refreshed = [m for m in by_reason.get(c.EVENT_REFRESHED, []) if f"'{token}'" in m]
            assert len(refreshed) == (0 if token == "r3" else 1), f"{name}: {token}: {refreshed}"
        for reason in (c.EVENT_SYNCED, c.EVENT_SYNC_FAILED, c.EVENT_RECOVERED):
            assert len(by_reason.get(reason, [])) == 1, f"{name}: {reason}: {by_reason.get(reason)}"
        assert len(by_reason.get(c.EVENT_TOOLS_CHANGED, [])) == 1, f"{name}: {by_reason}"

    # Both processes took every resource for theirs: each decided to sync some of them itself.
    decided = [len(re.findall(rf"(?:ToolServer|ConnectorConfig) {re.escape(api.ns)}/[a-z0-9-]+: sync \(",
                              operator.log())) for operator in operators]
    assert all(decided), decided
    conflicts = [_status_conflicts(port) for port in ports]
    for index, operator in enumerate(operators):
        assert operator.exited() is None, f"operator {index} exited"
    syncs = sum(len(statuses) for statuses in histories_seen.values())
    with capsys.disabled():
        print(f"\ntwo writers: {len(everything)} resources, {len(tokens)} refreshes each, {fetches} fetches, "
              f"{syncs} statuses written; syncs decided by each process {decided}, "
              f"status conflicts {[int(n) for n in conflicts]}")
