"""The Kubernetes API emulator behaves the way the operator will use it, and like a real server
where the operator depends on it: kopf runs against it, the kubernetes client reads and writes
ConfigMaps and Secrets through a kubeconfig, the server fills and bumps metadata, watches resume
from a resourceVersion, deletion honours finalizers, and requests stay fast
however long kmock's request log grows."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import kubernetes
import pytest

from toolcatalog.api import constants as c
from toolcatalog_dev.emulator import ApiEmulator, ApiError

pytestmark = [pytest.mark.e2e, pytest.mark.emulator_only("tests the emulator itself")]

TS = f"{c.API_VERSION}/{c.PLURAL[c.KIND_TOOLSERVER]}"
CC = f"{c.API_VERSION}/{c.PLURAL[c.KIND_CONNECTORCONFIG]}"
URL = "http://127.0.0.1:8765/mcp"


def toolserver(name: str = "demo", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": c.API_VERSION, "kind": c.KIND_TOOLSERVER,
            "metadata": {"name": name, "namespace": "default"}, "spec": {"url": URL, **spec}}


def configmap(name: str, namespace: str = "default", **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "data": {},
            "metadata": {"name": name, "namespace": namespace, **meta}}


class Watch:
    """One watch request's stream of events, read as they come."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self, count: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while len(events) < count:
                line = await self.response.content.readline()
                assert line, f"the stream ended after {events}"
                if line.strip():
                    events.append(json.loads(line))
        return events

    async def rest(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Every event until the server ends the stream."""
        async with asyncio.timeout(timeout):
            return [json.loads(line) async for line in self.response.content if line.strip()]


@contextlib.asynccontextmanager
async def watching(api: ApiEmulator, path: str, **params: str) -> AsyncIterator[Watch]:
    """A watch that is established (the server holds its place in the event stream) when entered."""
    async with aiohttp.ClientSession(api.url) as session, \
            session.get(path, params={"watch": "true", **params}) as response:
        assert response.status == 200, await response.text()
        yield Watch(response)


@pytest.fixture
async def api() -> AsyncIterator[ApiEmulator]:
    async with ApiEmulator() as emulator:
        yield emulator


@pytest.fixture
def core_v1(api: ApiEmulator, tmp_path: Path) -> Iterator[kubernetes.client.CoreV1Api]:
    """The kubernetes client configured only by a kubeconfig pointing at the emulator."""
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
    client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
    with client:
        yield kubernetes.client.CoreV1Api(client)


# ------------------------------------------------------------------- server-side metadata


async def test_create_fills_metadata_defaults_and_prunes(api: ApiEmulator) -> None:
    created = await api.create(toolserver(notInTheSchema=True))
    meta = created["metadata"]
    assert meta["uid"] and meta["resourceVersion"] and meta["creationTimestamp"].endswith("Z")
    assert meta["generation"] == 1
    assert created["spec"]["transport"] == c.TRANSPORT_STREAMABLE_HTTP
    assert created["spec"]["sync"] == {"ttlSeconds": 3600, "timeoutSeconds": 30,
                                       "minIntervalSeconds": 10, "suspend": False}
    assert "notInTheSchema" not in created["spec"]
    assert api.get(TS, "default", "demo") == created


async def test_generation_grows_only_with_the_spec(api: ApiEmulator) -> None:
    created = await api.create(toolserver())
    versions = [created["metadata"]["resourceVersion"]]

    annotated = await api.annotate(TS, "default", "demo", {c.ANN_REFRESH: "1"})
    versions.append(annotated["metadata"]["resourceVersion"])
    assert annotated["metadata"]["generation"] == 1

    status = await api.patch_status(TS, "default", "demo", {"phase": "Ready", "observedGeneration": 1})
    versions.append(status["metadata"]["resourceVersion"])
    assert status["metadata"]["generation"] == 1

    changed = await api.patch_spec(TS, "default", "demo", {"sync": {"ttlSeconds": 60}})
    versions.append(changed["metadata"]["resourceVersion"])
    assert changed["metadata"]["generation"] == 2
    assert changed["spec"]["sync"]["ttlSeconds"] == 60 and changed["spec"]["sync"]["timeoutSeconds"] == 30
    assert len(set(versions)) == len(versions)
    assert changed["metadata"]["uid"] == created["metadata"]["uid"]


async def test_status_subresource_is_isolated(api: ApiEmulator) -> None:
    created = await api.create({**toolserver(), "status": {"phase": "Ready"}})
    assert created["status"]["phase"] == "Ready"  # written by create() through /status

    # A write to the object ignores status; a write to /status ignores everything else.
    await api.patch(TS, "default", "demo", {"status": {"phase": "Failed"}})
    await api.patch(TS, "default", "demo", {"spec": {"url": "http://127.0.0.1:1/mcp"},
                                            "status": {"phase": "Stale", "kopf": {"x": 1}}},
                    subresource="status")
    stored = api.get(TS, "default", "demo")
    assert stored is not None
    assert stored["status"]["phase"] == "Stale" and "kopf" not in stored["status"]
    assert stored["spec"]["url"] == URL and stored["metadata"]["generation"] == 1


async def test_stale_writes_are_refused(api: ApiEmulator) -> None:
    created = await api.create(toolserver())
    await api.annotate(TS, "default", "demo", {"a.example/b": "c"})
    stale = created["metadata"]["resourceVersion"]
    with pytest.raises(ApiError) as conflict:
        await api.patch(TS, "default", "demo", {"metadata": {"resourceVersion": stale}, "spec": {"tools": []}})
    assert conflict.value.status == 409
    json_patch = [{"op": "test", "path": "/metadata/resourceVersion", "value": stale},
                  {"op": "add", "path": "/metadata/finalizers", "value": ["x"]}]
    with pytest.raises(ApiError) as unprocessable:
        await api.request("PATCH", api.path(TS, "default", "demo"), json_patch, "application/json-patch+json")
    assert unprocessable.value.status == 422
    # Refused by the front, they never reached kmock: its log has the annotation only.
    assert [r.name for r in api.emulator if r.method == "PATCH"] == ["demo"]


async def test_connectorconfig_without_transport_gets_no_default(api: ApiEmulator) -> None:
    created = await api.create({"apiVersion": c.API_VERSION, "kind": c.KIND_CONNECTORCONFIG,
                                "metadata": {"name": "alice", "namespace": "default"},
                                "spec": {"toolServerRef": {"name": "demo"}}})
    assert "transport" not in created["spec"] and created["spec"]["sync"]["ttlSeconds"] == 3600


async def test_crds_are_read_from_toolcatalog_crds_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo_crds = Path(__file__).resolve().parents[2] / "crds"
    (tmp_path / "toolservers.yaml").write_text((repo_crds / "toolservers.yaml").read_text())
    monkeypatch.setenv("TOOLCATALOG_CRDS_DIR", str(tmp_path))
    async with ApiEmulator() as api:
        crds = api.list("apiextensions.k8s.io/v1/customresourcedefinitions")
        assert [crd["metadata"]["name"] for crd in crds] == ["toolservers.toolcatalog.dev"]
        with pytest.raises(ApiError) as undeclared:
            await api.request("GET", f"/apis/{CC}")
        assert undeclared.value.status == 404


async def test_kmock_reactions_still_intercept_requests(api: ApiEmulator) -> None:
    """Fault injection with kmock reactions: they answer before the emulator's own serving, sliced
    ones too (answer only the first request). A write a reaction answers is still stored, as kmock
    stores every write, and watches see it."""
    async def status(path: str) -> int:
        try:
            await api.request("GET", path)
        except ApiError as error:
            return error.status
        return 200

    await api.create(toolserver())
    configmap, demo = api.path("v1/configmaps", "default", "cm"), api.path(TS, "default", "demo")
    api.emulator["get", configmap] << 418
    assert [await status(configmap), await status(configmap), await status(demo)] == [418, 418, 200]
    await api.create(toolserver("other"))
    other = api.path(TS, "default", "other")
    api.emulator["get", other][:1] << 503  # the first GET of it ever: none so far
    assert [await status(other), await status(other), await status(configmap)] == [503, 200, 418]

    api.emulator["patch", demo] << 500
    async with watching(api, api.path(TS, "default"), fieldSelector="metadata.name=demo") as watch:
        await watch.next()  # ADDED, the current state
        with pytest.raises(ApiError) as failed:
            await api.annotate(TS, "default", "demo", {"a.example/b": "c"})
        assert failed.value.status == 500
        [modified] = await watch.next()
    assert modified["type"] == "MODIFIED" and modified["object"]["metadata"]["annotations"] == {"a.example/b": "c"}
    assert (api.get(TS, "default", "demo") or {})["metadata"]["annotations"] == {"a.example/b": "c"}


# ------------------------------------------------------------------- watch, delete, namespaces


async def test_watch_resumes_from_a_resource_version_and_follows_selectors(api: ApiEmulator) -> None:
    configmaps = api.path("v1/configmaps", "default")
    since = (await api.request("GET", configmaps))["metadata"]["resourceVersion"]
    await api.create(configmap("a", labels={"app": "x"}))
    await api.create(configmap("b", labels={"app": "y"}))
    async with watching(api, configmaps, resourceVersion=since, labelSelector="app=x") as watch:
        [added] = await watch.next()  # from the event log: created after `since`; b is not selected
        await api.patch("v1/configmaps", "default", "a", {"metadata": {"labels": {"app": "y"}}})
        await api.patch("v1/configmaps", "default", "a", {"metadata": {"labels": {"app": "x"}}})
        await api.delete("v1/configmaps", "default", "a")
        events = [added, *await watch.next(3)]
    # Leaving and re-entering the selection is DELETED and ADDED for this watch, as on a real server.
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "a"), ("DELETED", "a"), ("ADDED", "a"), ("DELETED", "a")]
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions) and len(set(versions)) == 4 and versions[0] > int(since)

    async with watching(api, configmaps) as watch:  # no resourceVersion: the current objects first
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in await watch.next()] == [("ADDED", "b")]
    async with watching(api, configmaps, sendInitialEvents="true", resourceVersionMatch="NotOlderThan") as watch:
        added, bookmark = await watch.next(2)
    assert added["type"] == "ADDED" and bookmark["type"] == "BOOKMARK"
    assert bookmark["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    async with watching(api, configmaps, resourceVersion="1") as watch:
        assert [(e["type"], e["object"]["code"]) for e in await watch.rest()] == [("ERROR", 410)]
    began = time.monotonic()
    async with watching(api, configmaps, resourceVersion=since, timeoutSeconds="1") as watch:
        replayed = await watch.rest()  # everything since, unselected, then the end after 1 s
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in replayed] == [
        ("ADDED", "a"), ("ADDED", "b"), ("MODIFIED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]
    assert time.monotonic() - began < 4


async def test_finalizers_hold_deletion(api: ApiEmulator) -> None:
    """No garbage collector here (tests/e2e/test_cluster.py has the real one): dependents stay."""
    owner = await api.create({**toolserver(), "metadata": {**toolserver()["metadata"], "finalizers": ["x.example/y"]}})
    ref = {"apiVersion": c.API_VERSION, "kind": c.KIND_TOOLSERVER, "name": "demo", "uid": owner["metadata"]["uid"]}
    await api.create(configmap("child", ownerReferences=[ref]))

    marked = await api.delete(TS, "default", "demo")
    assert marked["metadata"]["deletionTimestamp"].endswith("Z")
    assert int(marked["metadata"]["resourceVersion"]) > int(owner["metadata"]["resourceVersion"])
    assert api.get(TS, "default", "demo") == marked

    await api.patch(TS, "default", "demo", {"metadata": {"finalizers": None}})
    assert api.get(TS, "default", "demo") is None
    assert api.get("v1/configmaps", "default", "child") is not None


async def test_namespaces_are_served(api: ApiEmulator, core_v1: kubernetes.client.CoreV1Api) -> None:
    """kmock 0.8 cannot parse these paths: the front serves them from the same objects."""
    async with watching(api, "/api/v1/namespaces") as watch:
        [default] = await watch.next()
        namespace = kubernetes.client.V1Namespace(metadata=kubernetes.client.V1ObjectMeta(name="team-a"))
        created = await asyncio.to_thread(core_v1.create_namespace, namespace)
        [added] = await watch.next()
    assert default["object"]["metadata"]["name"] == "default" and added["type"] == "ADDED"
    assert created.metadata.uid and created.metadata.resource_version
    read = await asyncio.to_thread(core_v1.read_namespace, "team-a")
    listed = await asyncio.to_thread(core_v1.list_namespace)
    assert read.metadata.uid == created.metadata.uid
    assert [ns.metadata.name for ns in listed.items] == ["default", "team-a"]
    patched = await asyncio.to_thread(core_v1.patch_namespace, "team-a", {"metadata": {"labels": {"team": "a"}}})
    assert patched.metadata.labels == {"team": "a"} and api.get("v1/namespaces", None, "team-a") is not None

    await asyncio.to_thread(core_v1.delete_namespace, "team-a")
    with pytest.raises(kubernetes.client.ApiException) as gone:
        await asyncio.to_thread(core_v1.read_namespace, "team-a")
    assert gone.value.status == 404


async def test_discovery_and_crds_created_at_run_time(api: ApiEmulator) -> None:
    core = await api.request("GET", "/api/v1")
    assert core["groupVersion"] == "v1" and "configmaps" in [r["name"] for r in core["resources"]]
    ours = await api.request("GET", f"/apis/{c.API_VERSION}")
    status = next(r for r in ours["resources"] if r["name"] == "toolservers/status")
    assert status["kind"] == c.KIND_TOOLSERVER and status["verbs"] == ["get", "patch", "update"]
    assert c.GROUP in [g["name"] for g in (await api.request("GET", "/apis"))["groups"]]

    widgets = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
               "metadata": {"name": "widgets.example.com"},
               "spec": {"group": "example.com", "scope": "Namespaced",
                        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                        "versions": [{"name": "v1", "served": True, "storage": True,
                                      "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                                          "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}}}]}}
    crd = await api.create(widgets)
    assert {cond["type"] for cond in crd["status"]["conditions"]} == {"NamesAccepted", "Established"}
    widget = await api.create({"apiVersion": "example.com/v1", "kind": "Widget",
                               "metadata": {"name": "w", "namespace": "default"}, "spec": {"size": 1, "colour": "red"}})
    assert widget["spec"] == {"size": 1} and widget["metadata"]["generation"] == 1


async def test_requests_stay_fast_as_the_request_log_grows(api: ApiEmulator) -> None:
    """kmock matches every request against every reaction by scanning its whole request log: with
    its own filtered fallbacks, ~120 ms per request after 1000 requests. The emulator answers
    before those, so a request costs about the same after 1000 requests as after none."""
    await api.create(toolserver())
    demo = api.path(TS, "default", "demo")

    async def median_ms(count: int) -> float:
        times = []
        for _ in range(count):
            began = time.perf_counter()
            await api.request("GET", demo)
            times.append((time.perf_counter() - began) * 1000)
        return statistics.median(times)

    first = await median_ms(30)
    for _ in range(1000):
        await api.request("GET", demo)
    later = await median_ms(30)
    assert len(list(api.emulator)) > 1000
    assert later < max(4 * first, 15.0), f"{first:.2f} ms per request at first, {later:.2f} ms after 1000"


# ------------------------------------------------------------------- the kubernetes client


async def test_kubernetes_client_configmaps_and_secrets(api: ApiEmulator, core_v1: kubernetes.client.CoreV1Api) -> None:
    """The client is blocking: it runs in a thread while the emulator serves on this loop."""
    labels = {c.LABEL_MANAGED_BY: c.MANAGED_BY, c.LABEL_NAME: "demo"}
    body = kubernetes.client.V1ConfigMap(
        metadata=kubernetes.client.V1ObjectMeta(name="toolserver-demo", labels=labels),
        data={c.CM_KEY_JSON: '{"tools": []}'})
    created = await asyncio.to_thread(core_v1.create_namespaced_config_map, "default", body)
    assert created.metadata.uid and created.metadata.resource_version

    patched = await asyncio.to_thread(
        core_v1.patch_namespaced_config_map, "toolserver-demo", "default",
        {"data": {c.CM_KEY_JSON: '{"tools": [1]}'}, "metadata": {"annotations": {c.ANN_CACHED_AT: "now"}}},
        _content_type="application/merge-patch+json")
    assert patched.metadata.resource_version != created.metadata.resource_version
    read = await asyncio.to_thread(core_v1.read_namespaced_config_map, "toolserver-demo", "default")
    assert read.data == {c.CM_KEY_JSON: '{"tools": [1]}'} and read.metadata.annotations[c.ANN_CACHED_AT] == "now"

    selected = await asyncio.to_thread(core_v1.list_namespaced_config_map, "default",
                                       label_selector=f"{c.LABEL_MANAGED_BY}={c.MANAGED_BY},{c.LABEL_NAME}")
    other = await asyncio.to_thread(core_v1.list_namespaced_config_map, "default",
                                    label_selector=f"{c.LABEL_NAME} notin (demo)")
    assert [cm.metadata.name for cm in selected.items] == ["toolserver-demo"] and other.items == []

    await api.create({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                      "metadata": {"name": "alice-demo", "namespace": "default"},
                      "stringData": {"token": "placeholder-token"}})
    secret = await asyncio.to_thread(core_v1.read_namespaced_secret, "alice-demo", "default")
    assert base64.b64decode(secret.data["token"]) == b"placeholder-token"
    with pytest.raises(kubernetes.client.ApiException) as missing:
        await asyncio.to_thread(core_v1.read_namespaced_secret, "nobody", "default")
    assert missing.value.status == 404

    namespaces = await asyncio.to_thread(core_v1.list_namespace)
    assert "default" in [ns.metadata.name for ns in namespaces.items]

    await api.create({"apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
                      "metadata": {"name": "sh.helm.release.v1.x.v1", "namespace": "default"}})
    not_helm = await asyncio.to_thread(core_v1.list_namespaced_secret, "default",
                                       field_selector="type!=helm.sh/release.v1")
    assert [s.metadata.name for s in not_helm.items] == ["alice-demo"]


async def test_custom_objects_take_merge_patches_only(api: ApiEmulator, tmp_path: Path) -> None:
    """As on a real server: strategic merge is for built-in kinds; a refresh annotation goes through."""
    await api.create(toolserver())
    client = kubernetes.config.new_client_from_config(config_file=str(api.write_kubeconfig(tmp_path / "kc")))
    with client:
        custom = kubernetes.client.CustomObjectsApi(client)
        args = (c.GROUP, c.VERSION, "default", c.PLURAL[c.KIND_TOOLSERVER], "demo",
                {"metadata": {"annotations": {c.ANN_REFRESH: "now"}}})
        with pytest.raises(kubernetes.client.ApiException) as refused:
            await asyncio.to_thread(custom.patch_namespaced_custom_object, *args,
                                    _content_type="application/strategic-merge-patch+json")
        assert refused.value.status == 415
        patched = await asyncio.to_thread(custom.patch_namespaced_custom_object, *args)
    stored = api.get(TS, "default", "demo")
    assert stored is not None and stored["metadata"]["annotations"][c.ANN_REFRESH] == "now"
    assert patched["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]
    # kmock's log has the patch that went through, with the client's headers; not the refused one.
    [logged] = [r for r in api.emulator if r.method == "PATCH"]
    assert logged.headers["Content-Type"].startswith("application/merge-patch+json") and logged.name == "demo"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
async def test_kubectl_applies_the_samples_and_lists_the_category(api: ApiEmulator, tmp_path: Path) -> None:
    samples = Path(__file__).resolve().parents[2] / "deploy" / "samples"

    async def kubectl(*args: str) -> str:
        process = await asyncio.create_subprocess_exec(
            "kubectl", "--kubeconfig", str(api.write_kubeconfig(tmp_path / "kc")), *args,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
        assert process.returncode == 0, output.decode()
        return output.decode()

    await kubectl("apply", "--validate=false", "-f", str(samples))
    listed = await kubectl("get", "toolcatalog", "-o", "name")
    assert set(listed.split()) == {"toolserver.toolcatalog.dev/demo", "connectorconfig.toolcatalog.dev/alice-demo",
                                   "toolallowlist.toolcatalog.dev/demo-gateway"}
    token = await kubectl("get", "secret", "alice-demo", "-o", "jsonpath={.data.token}")
    assert base64.b64decode(token) == b"replace-me-with-a-real-token"
    await kubectl("annotate", "mcpts", "demo", f"{c.ANN_REFRESH}=2026-11-21T12:00:00Z")
    stored = api.get(TS, "default", "demo")
    assert stored is not None and stored["metadata"]["annotations"][c.ANN_REFRESH] == "2026-11-21T12:00:00Z"
    assert stored["metadata"]["generation"] == 1


# ------------------------------------------------------------------- kopf


HANDLERS = textwrap.dedent("""
    import kopf

    @kopf.on.startup()
    def configure(settings, **_):
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="toolcatalog.dev")
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix="toolcatalog.dev", key="last-handled-configuration")

    @kopf.on.create("toolcatalog.dev", "v1alpha1", "toolservers")
    @kopf.on.update("toolcatalog.dev", "v1alpha1", "toolservers", field="spec")
    def reconcile(body, meta, patch, **_):
        patch.status["phase"] = "Ready"
        patch.status["observedGeneration"] = meta["generation"]
        patch.status["url"] = body["spec"]["url"]
        kopf.info(body, reason="Synced", message=f"generation {meta['generation']}")
""")


@pytest.fixture
async def kopf_operator(api: ApiEmulator, tmp_path: Path) -> AsyncIterator[Path]:
    """`kopf run --standalone -A` in a subprocess, configured by KUBECONFIG alone."""
    (tmp_path / "handlers.py").write_text(HANDLERS)
    log_path = tmp_path / "kopf.log"
    env = {**os.environ, "KUBECONFIG": str(api.write_kubeconfig(tmp_path / "kubeconfig"))}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "kopf", "run", "--standalone", "--all-namespaces",
             str(tmp_path / "handlers.py")], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        def watching_or_exited() -> bool:
            return process.poll() is not None or any(
                r.params.get("watch") == "true" and r.resource == TS for r in list(api.emulator))

        await api.wait_for(watching_or_exited, timeout=30, what="kopf watching toolservers")
        assert process.poll() is None, f"kopf exited:\n{log_path.read_text()}"
        yield log_path
    finally:
        process.send_signal(signal.SIGINT)
        try:
            await asyncio.to_thread(process.wait, 15)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait, 5)


async def test_kopf_status_patches_and_events_land_in_the_emulator(api: ApiEmulator, kopf_operator: Path) -> None:
    await api.create(toolserver())

    def status() -> dict[str, Any]:
        obj = api.get(TS, "default", "demo") or {}
        return obj.get("status") or {}

    first = await api.wait_for(lambda: status().get("observedGeneration") == 1 and status(),
                               timeout=30, what="status written by kopf on create")
    assert first["phase"] == "Ready" and first["url"] == URL
    assert not {"reconcile", "kopf"} & set(first), "handler results and kopf state must not reach status"

    await api.patch_spec(TS, "default", "demo", {"url": "http://127.0.0.1:9/mcp"})
    second = await api.wait_for(lambda: status().get("observedGeneration") == 2 and status(),
                                timeout=30, what="status written by kopf on update")
    assert second["url"] == "http://127.0.0.1:9/mcp"

    def synced_events() -> list[dict[str, Any]]:
        events = [e for e in api.events("default", "demo") if e["reason"] == "Synced"]
        return events if len(events) >= 2 else []

    events = await api.wait_for(synced_events, timeout=30, what="two events posted by kopf")
    assert [e["message"] for e in events] == ["generation 1", "generation 2"]
    assert all(e["type"] == "Normal" and e["involvedObject"]["kind"] == c.KIND_TOOLSERVER for e in events)
    assert len({e["metadata"]["name"] for e in events}) == 2

    annotations = (api.get(TS, "default", "demo") or {})["metadata"].get("annotations", {})
    assert "toolcatalog.dev/last-handled-configuration" in annotations
    assert not any(key.startswith("kopf.zalando.org") for key in annotations)
