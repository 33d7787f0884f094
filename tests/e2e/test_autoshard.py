"""Autosharding on the real control plane: operator processes run as the pods of the sharded overlay's
StatefulSet (`--pod`, from the environment as the downward API sets it) take their shard from its
replicas, with only the RBAC the overlay ships, and follow a `kubectl scale`: up from 2 to 3 shards,
then down to 2, each resource synced by exactly the shard its uid hashes to under the count of the
moment, and a pod scaled away taking nothing.

No StatefulSet controller runs here, so the StatefulSet makes no pods: the test starts the processes
its pods would run, and stops the one a scale-down would delete.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.k8s import TS, toolserver, wait_until
from toolcatalog.handlers.sharding import shard_of
from toolcatalog_dev.deploy import OPERATOR_NAMESPACE, render
from toolcatalog_dev.mcpserver import McpTestServer, make_tools
from toolcatalog_dev.operatorproc import OperatorProcess

pytestmark = [pytest.mark.e2e, pytest.mark.cluster_only("the StatefulSet is the real apps/v1 API's, followed "
                                                        "with the RBAC the sharded overlay ships")]

SHARDED = Path(__file__).resolve().parents[2] / "deploy" / "overlays" / "sharded"
STATEFULSETS = "apps/v1/statefulsets"
TOOLSERVERS = 24


@pytest.fixture
async def statefulset(api: Any) -> Any:
    """The overlay's StatefulSet and its Role and RoleBinding, in the operator's namespace, as it renders them."""
    plane = api.control_plane
    objects = render(str(plane.binary("kubectl")), SHARDED)
    shipped = [obj for obj in objects if obj["kind"] in ("Role", "RoleBinding", "StatefulSet")]
    assert sorted(obj["kind"] for obj in shipped) == ["Role", "RoleBinding", "StatefulSet"]
    plane.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(shipped, sort_keys=False))
    (workload,) = [obj for obj in shipped if obj["kind"] == "StatefulSet"]
    try:
        yield workload["metadata"]["name"]
    finally:
        plane.kubectl("delete", "-f", "-", "--ignore-not-found", input=yaml.safe_dump_all(shipped, sort_keys=False))


def _synced(log: str, namespace: str) -> set[str]:
    """ToolServers this operator decided to sync in `log` ("ToolServer ns/name: sync (trigger)")."""
    return set(re.findall(rf"ToolServer {re.escape(namespace)}/([a-z0-9-]+): sync \(", log))


async def test_shards_follow_the_statefulsets_replicas_up_and_down(api, statefulset, start_operator, capsys):
    def pod(index: int) -> OperatorProcess:
        return start_operator(extra_env={"TOOLCATALOG_POD": f"{statefulset}-{index}",
                                         "TOOLCATALOG_POD_NAMESPACE": OPERATOR_NAMESPACE})

    async def shard_of_count(process: OperatorProcess, index: int, total: int, since: int = 0) -> None:
        line = f"pod {statefulset}-{index} is shard {index} of {total}"
        await wait_until(lambda: line in process.log()[since:], timeout=60, what=line, operator=process)

    async def scale(replicas: int) -> None:
        await api.patch(STATEFULSETS, OPERATOR_NAMESPACE, statefulset, {"spec": {"replicas": replicas}})

    async def refreshed_by_owner(token: str, processes: list[OperatorProcess], total: int) -> None:
        """Refresh everything; each resource is synced by its shard of `total`, and by no other."""
        since = [len(process.log()) for process in processes]
        for name in uids:
            await api.annotate(TS, api.ns, name, {"toolcatalog.dev/refresh": token})

        async def answered() -> bool:
            objects = await api.list(TS, api.ns)
            return all(((obj.get("status") or {}).get("lastRefresh") or {}).get("token") == token for obj in objects)
        await wait_until(answered, timeout=90, what=f"refresh {token} answered everywhere", operator=processes[0])
        for index, process in enumerate(processes):
            mine = {name for name, uid in uids.items() if shard_of(uid, total) == index}
            assert _synced(process.log()[since[index]:], api.ns) == mine, f"shard {index} of {total}"

    shards = [pod(0), pod(1)]
    await shard_of_count(shards[0], 0, 2)
    await shard_of_count(shards[1], 1, 2)
    with McpTestServer(tools=make_tools(2)) as server:
        for index in range(TOOLSERVERS):
            await api.create(toolserver(f"ts-{index:02d}", server.url, sync={"minIntervalSeconds": 0}))

        async def all_synced() -> list[dict[str, Any]] | None:
            objects = await api.list(TS, api.ns)
            ready = [obj for obj in objects if (obj.get("status") or {}).get("lastSync")]
            return objects if len(ready) == TOOLSERVERS else None
        objects = await wait_until(all_synced, timeout=90, what="every ToolServer synced", operator=shards[0])
        uids = {obj["metadata"]["name"]: obj["metadata"]["uid"] for obj in objects}
        for index, process in enumerate(shards):
            assert _synced(process.log(), api.ns) == {name for name, uid in uids.items() if shard_of(uid, 2) == index}

        # kubectl scale --replicas 3: both running pods start again as shard i of 3; the new pod starts as 2.
        marks = [len(process.log()) for process in shards]
        began = time.monotonic()
        await scale(3)
        shards.append(pod(2))
        for index, process in enumerate(shards):
            await shard_of_count(process, index, 3, since=marks[index] if index < 2 else 0)
        up = time.monotonic() - began
        await refreshed_by_owner("r1", shards, 3)

        # Down to 2: pod 2 is being scaled away (it takes nothing until the StatefulSet deletes it).
        marks = [len(process.log()) for process in shards]
        began = time.monotonic()
        await scale(2)
        for index in range(2):
            await shard_of_count(shards[index], index, 2, since=marks[index])
        down = time.monotonic() - began
        await wait_until(lambda: "this pod is being scaled away" in shards[2].log()[marks[2]:], timeout=60,
                         what="pod 2 steps aside", operator=shards[2])
        assert shards[2].stop() == 0
        await refreshed_by_owner("r2", shards[:2], 2)
        # Every refresh asked the server itself (the first syncs of resources created together may share
        # one answer: --fetch-share-window).
        assert server.list_calls >= TOOLSERVERS * 2
    for index, process in enumerate(shards[:2]):
        assert process.exited() is None, f"pod {index} exited"
    for process in shards:      # the watch of the StatefulSet worked with the shipped Role, never a re-read
        assert "Traceback" not in process.log() and "following StatefulSet" not in process.log()
    assert shards[0].stop() == 0                # SIGTERM still ends a pod that started again, gracefully
    with capsys.disabled():
        print(f"\nautoshard: {TOOLSERVERS} ToolServers; from the scale to every pod running as its new shard: "
              f"2 -> 3 in {up:.1f} s (a new process included), 3 -> 2 in {down:.1f} s")
