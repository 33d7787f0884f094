"""Sharding on the real control plane: two operator processes, shard 0 and shard 1 of 2 (set through the
environment, TOOLCATALOG_SHARD and TOOLCATALOG_TOTAL_SHARDS), share the resources by a hash of their uid.
(test_autoshard.py: the same, as a StatefulSet's pods that take their shard from it.)

Every resource is synced by exactly one shard, the one its uid hashes to; each shard takes about half;
a shard ignores the others' resources entirely (no sync, no status write, and a Secret only they
reference wakes nothing); a ConnectorConfig still follows a ToolServer that belongs to the other shard.
"""

from __future__ import annotations

import re
import urllib.request
from typing import Any

import pytest

from tests.support.k8s import CC, SECRETS, TS, condition, connectorconfig, looked_at, secret, toolserver, wait_until
from toolcatalog.handlers.sharding import shard_of
from toolcatalog_dev.mcpserver import McpTestServer, free_port, make_tools

pytestmark = [pytest.mark.e2e, pytest.mark.cluster_only("sharding is measured and tested on the real control plane")]

TOOLSERVERS = 60
CONNECTORCONFIGS = 10
TOTAL = 2


def _synced(obj: dict[str, Any] | None) -> bool:
    return condition(obj, "Synced").get("status") == "True"


def _synced_names(log: str, kind: str, namespace: str) -> set[str]:
    """Resources this operator synced, from its DEBUG log ("Kind ns/name: sync (trigger)")."""
    return set(re.findall(rf"{kind} {re.escape(namespace)}/([a-z0-9-]+): sync \(", log))


def _tool_gauges(port: int, namespace: str) -> set[tuple[str, str]]:
    """(kind, name) of every resource this shard reports toolcatalog_tools for: the ones it synced."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    found = set()
    for match in re.finditer(r'^toolcatalog_tools\{([^}]*)\}', text, re.MULTILINE):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match[1]))
        if labels.get("namespace") == namespace:
            found.add((labels["kind"], labels["name"]))
    return found


async def test_two_shards_split_the_resources_and_ignore_each_others(api, start_operator, capsys):
    ports = [free_port() for _ in range(TOTAL)]
    shards = [start_operator(extra_env={"TOOLCATALOG_SHARD": str(index), "TOOLCATALOG_TOTAL_SHARDS": str(TOTAL)},
                             args=["--metrics-port", str(port), "--metrics-address", "127.0.0.1"])
              for index, port in enumerate(ports)]
    with McpTestServer(tools=make_tools(3)) as open_server, \
            McpTestServer(tokens={"token-1": make_tools(2), "token-2": make_tools(4)}) as guarded:
        await api.create(secret("guarded", {"token": "token-1"}))
        await api.create(toolserver("ts-guarded", guarded.url,
                                    auth={"bearerToken": {"secretKeyRef": {"name": "guarded", "key": "token"}}}))
        for index in range(TOOLSERVERS):
            await api.create(toolserver(f"ts-{index:02d}", open_server.url))
        for index in range(CONNECTORCONFIGS):
            await api.create(connectorconfig(f"cc-{index:02d}", toolServerRef={"name": f"ts-{index:02d}"}))

        async def all_synced() -> list[dict[str, Any]] | None:
            objects = await api.list(TS, api.ns) + await api.list(CC, api.ns)
            return objects if len(objects) == TOOLSERVERS + 1 + CONNECTORCONFIGS and all(map(_synced, objects)) \
                else None
        objects = await wait_until(all_synced, timeout=120, what="every resource synced by one shard or the other")

        owner = {(obj["kind"], obj["metadata"]["name"]): shard_of(obj["metadata"]["uid"], TOTAL) for obj in objects}
        logs = [shard.log() for shard in shards]
        synced_by = [{(kind, name) for kind in ("ToolServer", "ConnectorConfig")
                      for name in _synced_names(log, kind, api.ns)} for log in logs]
        expected = [{key for key, shard in owner.items() if shard == index} for index in range(TOTAL)]
        for index in range(TOTAL):
            assert synced_by[index] == expected[index], f"shard {index} synced what is not its own, or missed some"
        # A sync writes its status before it sets its metrics: the gauges may be a moment behind.
        await wait_until(lambda: [_tool_gauges(port, api.ns) for port in ports] == expected, timeout=10,
                         what="each shard's toolcatalog_tools gauges naming exactly its own resources")
        assert not synced_by[0] & synced_by[1]
        assert synced_by[0] | synced_by[1] == set(owner)
        shares = [len(names) for names in synced_by]
        assert all(0.25 * len(owner) <= share <= 0.75 * len(owner) for share in shares), shares
        with capsys.disabled():
            print(f"\nsharding: {len(owner)} resources, shard 0 took {shares[0]}, shard 1 took {shares[1]}")

        # A rotated Secret wakes only the shard whose resource references it.
        guarded_shard = owner[("ToolServer", "ts-guarded")]
        await api.patch(SECRETS, api.ns, "guarded", {"stringData": {"token": "token-2"}})
        await wait_until(lambda: _rotated(api), timeout=60, what="ts-guarded resynced after the rotation",
                         operator=shards[guarded_shard])
        other = 1 - guarded_shard
        # The other shard has had every chance to react: it looked at one of its own resources three more
        # times since the rotation. (kopf logs every event it dispatches, ours or not: look for the
        # operator's own lines.)
        its_own = next(name for (kind, name), shard in sorted(owner.items()) if kind == "ToolServer" and shard == other)
        await looked_at(api, shards[other], TS, its_own)
        assert f"ToolServer {api.ns}/ts-guarded:" not in shards[other].log(), \
            "the other shard looked at a resource it does not own"

        # A ConnectorConfig follows its ToolServer, whichever shard the ToolServer belongs to: take a pair that
        # crosses shards, creating more ConnectorConfigs of ts-00 until one does (never skipped by chance).
        pair = next(((f"cc-{index:02d}", f"ts-{index:02d}") for index in range(CONNECTORCONFIGS)
                     if owner[("ConnectorConfig", f"cc-{index:02d}")] != owner[("ToolServer", f"ts-{index:02d}")]),
                    None)
        extra = 0
        while pair is None:
            name = f"cc-cross-{extra}"
            created = await api.create(connectorconfig(name, toolServerRef={"name": "ts-00"}))
            owner[("ConnectorConfig", name)] = shard_of(created["metadata"]["uid"], TOTAL)
            if owner[("ConnectorConfig", name)] != owner[("ToolServer", "ts-00")]:
                pair = (name, "ts-00")
                await wait_until(lambda name=name: _synced_cc(api, name), timeout=60, what=f"{name} synced",
                                 operator=shards[owner[("ConnectorConfig", name)]])
            extra += 1
        name, ts_name = pair
        await api.patch(TS, api.ns, ts_name, {"spec": {"headers": {"X-Shard-Test": "1"}}})

        async def followed() -> bool:
            last = ((await api.get(CC, api.ns, name)) or {}).get("status", {}).get("lastSync") or {}
            return last.get("trigger") == "update"
        await wait_until(followed, timeout=60, what=f"{name} resynced after its ToolServer of the other shard "
                                                    "changed", operator=shards[owner[("ConnectorConfig", name)]])
        for index, shard in enumerate(shards):
            assert shard.exited() is None, f"shard {index} exited"


async def _synced_cc(api: Any, name: str) -> bool:
    return _synced(await api.get(CC, api.ns, name))


async def _rotated(api: Any) -> bool:
    obj = await api.get(TS, api.ns, "ts-guarded") or {}
    status = obj.get("status") or {}
    return (status.get("lastSync") or {}).get("trigger") == "secret" and status.get("toolCount") == 4
