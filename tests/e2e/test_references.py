"""Referenced Secrets and ConfigMaps, watched as metadata only (kube/informer.py), end to end on both API
servers: a deleted Secret is SecretNotFound and its return resyncs, a changed CA-bundle ConfigMap
resyncs, the operator receives no Secret's body but those its resources use (every answer the API
server sent it, read through an API proxy on loopback), namespace patterns watch only the matching
namespaces, and liveness fails while the Secrets' watches stall.

Rotation of a referenced Secret is covered in test_connectorconfig.py, test_list_changed.py and
test_sharding.py; its latency is measured by `make bench` (triggers).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_operate import probe
from tests.support.k8s import CM, SECRETS, TS, OperatorProcesses, condition, secret, toolserver, wait_until
from toolcatalog_dev.apiproxy import Answer, ApiProxy
from toolcatalog_dev.cluster import ApiError
from toolcatalog_dev.mcpserver import McpTestServer, free_port, make_self_signed_cert, make_tools
from toolcatalog_dev.operatorproc import OperatorProcess

pytestmark = pytest.mark.e2e

TOKEN = "refs-T0ken-8c1e5a40"
ROTATED = "refs-R0tated-77d1c2e9"
UNRELATED = "unrelated-Va1ue-3f0b9d12"
UNRELATED_ROTATED = "unrelated-R0tated-5a7e1c0f"
SECRET_PATHS = r"^/api/v1/(namespaces/[^/]+/)?secrets"


def synced(obj: dict[str, Any]) -> bool:
    return condition(obj, "Synced").get("status") == "True"


def failed_with(reason: str) -> Callable[[dict[str, Any]], bool]:
    return lambda obj: condition(obj, "Synced").get("status") == "False" and condition(obj, "Synced").get(
        "reason") == reason


def last_trigger(obj: dict[str, Any]) -> str | None:
    return ((obj.get("status") or {}).get("lastSync") or {}).get("trigger")


def bearer(name: str) -> dict[str, Any]:
    return {"bearerToken": {"secretKeyRef": {"name": name, "key": "token"}}}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# ------------------------------------------------------------------------------ an API proxy in front



@pytest.fixture
def launch(api: Any, proxy: ApiProxy, tmp_path: Path) -> Iterator[Callable[..., OperatorProcess]]:
    """Start the operator through the proxy (its ServiceAccount's token on a real server), in the given
    namespaces or every one; stopped at teardown."""
    token = api.session.operator_token if api.session is not None else None
    kubeconfig = proxy.write_kubeconfig(tmp_path / "proxied.kubeconfig", token=token, namespace=api.ns)
    operators = OperatorProcesses(tmp_path)

    def start(*args: str, namespaces: tuple[str, ...] = ()) -> OperatorProcess:
        return operators.start(kubeconfig, *args, namespaces=namespaces)

    yield start
    operators.stop_all()


def events_of(answer: Answer) -> list[dict[str, Any]]:
    """A watch's events, or a list as its one JSON document."""
    return [json.loads(line) for line in answer.body().splitlines() if line.strip()]


# ------------------------------------------------------------------------------ what a user sees


async def test_a_deleted_secret_is_secret_not_found_the_cache_stays_and_its_return_resyncs(api, operator, waiter):
    with McpTestServer(tokens={TOKEN: make_tools(2)}) as server:
        await api.create(secret("guard-token", {"token": TOKEN}))
        await api.create(toolserver("guarded", server.url, auth=bearer("guard-token")))
        before = await waiter.status(TS, "guarded", synced, "first sync", operator=operator)
        cache = await api.get(CM, api.ns, "toolserver-guarded")

        await api.delete(SECRETS, api.ns, "guard-token")
        obj = await waiter.status(TS, "guarded", failed_with("SecretNotFound"), "SecretNotFound after the deletion",
                                  operator=operator)
        assert last_trigger(obj) == "secret"
        assert "guard-token" in condition(obj, "Synced")["message"]
        assert obj["status"]["tools"] == before["status"]["tools"]
        assert obj["status"]["cache"] == before["status"]["cache"]
        assert (await api.get(CM, api.ns, "toolserver-guarded"))["data"] == cache["data"]

        await api.create(secret("guard-token", {"token": TOKEN}))
        obj = await waiter.status(TS, "guarded", synced, "synced again once the Secret is back", operator=operator)
        assert last_trigger(obj) == "secret"


async def test_a_changed_ca_bundle_configmap_resyncs_the_resource_that_uses_it(api, operator, waiter, tmp_path):
    for name in ("right", "wrong"):
        (tmp_path / name).mkdir()
    right, wrong = make_self_signed_cert(str(tmp_path / "right")), make_self_signed_cert(str(tmp_path / "wrong"))
    with McpTestServer(tools=make_tools(2), cert=right) as server:
        await api.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "server-ca"},
                          "data": {"ca.crt": wrong.pem}})
        await api.create(toolserver("pinned", server.url,
                                    tls={"caBundle": {"configMapKeyRef": {"name": "server-ca", "key": "ca.crt"}}}))
        obj = await waiter.status(TS, "pinned", lambda o: condition(o, "Synced").get("status") == "False",
                                  "the sync to fail on a CA that did not sign the server's certificate",
                                  operator=operator)
        assert "TLS" in condition(obj, "Synced")["message"] or "certificate" in condition(obj, "Synced")["message"]

        await api.patch(CM, api.ns, "server-ca", {"data": {"ca.crt": right.pem}})
        obj = await waiter.status(TS, "pinned", synced, "synced with the right CA", operator=operator)
    assert last_trigger(obj) == "update"
    assert obj["status"]["toolCount"] == 2


# ------------------------------------------------------------------------------ what the operator receives


async def test_the_api_server_answers_metadata_only_when_asked_the_emulator_as_the_real_one(api):
    """What the informers rely on, on both API servers: PartialObjectMetadata for a get and a watch,
    PartialObjectMetadataList for a list, with no data, and 406 for the one that does not fit."""
    path = f"/api/v1/namespaces/{api.ns}/secrets"
    only, listing = ("application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
                     "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1")
    await api.create(secret("asked", {"token": UNRELATED}))
    listed = await api.request("GET", path, accept=listing)
    assert (listed["kind"], listed["apiVersion"]) == ("PartialObjectMetadataList", "meta.k8s.io/v1")
    [item] = listed["items"]
    assert set(item) == {"kind", "apiVersion", "metadata"} and item["metadata"]["name"] == "asked"
    one = await api.request("GET", f"{path}/asked", accept=only)
    assert one["kind"] == "PartialObjectMetadata" and set(one) == {"kind", "apiVersion", "metadata"}
    for wrong, where in ((only, path), (listing, f"{path}/asked")):
        with pytest.raises(ApiError) as refused:
            await api.request("GET", where, accept=wrong)
        assert refused.value.status == 406
    await api.patch(SECRETS, api.ns, "asked", {"data": {"token": b64(UNRELATED_ROTATED)}})
    events = await api.watch_metadata(path, {
        "watch": "true", "resourceVersion": listed["metadata"]["resourceVersion"], "timeoutSeconds": "1"})
    assert ("MODIFIED", "PartialObjectMetadata") in [(e["type"], e["object"]["kind"]) for e in events]
    assert all(set(e["object"]) <= {"kind", "apiVersion", "metadata"} for e in events)
    for answer in (listed, one, events):
        for value in (UNRELATED, UNRELATED_ROTATED):
            assert b64(value) not in json.dumps(answer)
    whole = await api.request("GET", f"{path}/asked", accept="application/json")
    assert whole["data"]["token"] == b64(UNRELATED_ROTATED)


async def test_the_operator_receives_no_secret_body_but_those_its_resources_use(api, proxy, launch, waiter):
    with McpTestServer(tokens={TOKEN: make_tools(2), ROTATED: make_tools(3)}) as server:
        await api.create(secret("unrelated", {"token": UNRELATED}))
        await api.create(secret("used", {"token": TOKEN}))
        await api.create(toolserver("reader", server.url, auth=bearer("used")))
        operator = launch()
        await waiter.status(TS, "reader", synced, "first sync", operator=operator)
        # Both change: the operator hears of each (by metadata), and reads only the one it uses.
        await api.patch(SECRETS, api.ns, "unrelated", {"data": {"token": b64(UNRELATED_ROTATED)}})
        await api.patch(SECRETS, api.ns, "used", {"data": {"token": b64(ROTATED)}})
        obj = await waiter.status(TS, "reader", lambda o: synced(o) and o["status"]["toolCount"] == 3,
                                  "resynced with the rotated token", operator=operator)
        assert last_trigger(obj) == "secret"

    answers = proxy.answers(SECRET_PATHS)
    reads = [answer for answer in answers if answer.path.split("?")[0].endswith("/secrets/used")]
    collections = [answer for answer in answers if answer.path.split("?")[0].endswith("/secrets")]
    assert reads and collections and len(reads) + len(collections) == len(answers), \
        [answer.path for answer in answers]
    assert {answer.method for answer in answers} == {"GET"}
    # Lists and watches ask for, and get, metadata only.
    for answer in collections:
        watch = "watch=true" in answer.path
        assert f"as=PartialObjectMetadata{'' if watch else 'List'};g=meta.k8s.io;v=v1" in answer.accept, answer
        for document in events_of(answer):
            objects = [document["object"]] if watch else document["items"]
            if watch and document["type"] == "ERROR":
                continue
            for obj in objects:
                assert set(obj) == {"kind", "apiVersion", "metadata"} and obj["kind"] == "PartialObjectMetadata", obj
    # No answer at all holds the unrelated Secret's value, before or after its change, in any form.
    everything = b"".join(answer.body() for answer in proxy.answers())
    for value in (UNRELATED, UNRELATED_ROTATED):
        for form in (value, b64(value), b64(value).rstrip("=")):
            assert form.encode() not in everything, f"{form!r} reached the operator"
    # The used one's reached it only as the answers to its GETs.
    for form in (b64(TOKEN), b64(ROTATED)):
        assert any(form.encode() in answer.body() for answer in reads)
        assert all(form.encode() not in answer.body() for answer in proxy.answers() if answer not in reads)


async def test_namespace_patterns_watch_the_secrets_of_matching_namespaces_only(api, proxy, launch, waiter):
    team_a = await api.make_namespace("team-a")
    pattern = team_a.removesuffix("a") + "*"
    with McpTestServer(tokens={TOKEN: make_tools(1), ROTATED: make_tools(2)}) as server:
        await api.create(secret("token", {"token": TOKEN}, namespace=team_a))
        await api.create(toolserver("a", server.url, namespace=team_a, auth=bearer("token")))
        operator = launch(namespaces=(pattern,))
        await waiter.status(TS, "a", synced, "synced in team-a", namespace=team_a, operator=operator)

        team_b = await api.make_namespace("team-b")         # after the start: followed as it comes
        await api.create(secret("token", {"token": TOKEN}, namespace=team_b))
        await api.create(toolserver("b", server.url, namespace=team_b, auth=bearer("token")))
        await waiter.status(TS, "b", synced, "synced in team-b", namespace=team_b, operator=operator)
        await api.patch(SECRETS, team_b, "token", {"data": {"token": b64(ROTATED)}})
        obj = await waiter.status(TS, "b", lambda o: synced(o) and o["status"]["toolCount"] == 2,
                                  "resynced after the rotation in team-b", namespace=team_b, operator=operator)
        assert last_trigger(obj) == "secret"

    watched = {answer.path.split("?")[0] for answer in proxy.answers(SECRET_PATHS) if "watch=true" in answer.path}
    assert watched == {f"/api/v1/namespaces/{team_a}/secrets", f"/api/v1/namespaces/{team_b}/secrets"}
    assert not proxy.answers(r"^/api/v1/secrets"), "a cluster-wide list or watch of Secrets"


# ------------------------------------------------------------------------------ liveness


async def test_liveness_fails_while_the_secret_watches_stall_and_passes_when_they_recover(api, proxy, launch,
                                                                                          waiter):
    port = free_port()
    url = f"http://127.0.0.1:{port}/healthz"
    operator = launch(f"--liveness={url}", "--watch-stall-timeout=3")
    with McpTestServer(tokens={TOKEN: make_tools(1), ROTATED: make_tools(2)}) as server:
        await api.create(secret("live-token", {"token": TOKEN}))
        await api.create(toolserver("live", server.url, auth=bearer("live-token")))
        await waiter.status(TS, "live", synced, "first sync", operator=operator)
        await wait_until(lambda: probe(url, 200), what="/healthz passes", operator=operator)

        proxy.stall_watches(only=r"/secrets\?")              # the Secrets' watches only; kopf's go on
        started = time.monotonic()
        await api.patch(SECRETS, api.ns, "live-token", {"data": {"token": b64(ROTATED)}})
        await wait_until(lambda: probe(url, 500), timeout=40, what="/healthz to fail", operator=operator)
        print(f"\nliveness failed {time.monotonic() - started:.1f}s after the Secrets' watches stalled")
        assert (await api.get(TS, api.ns, "live"))["status"]["toolCount"] == 1     # the rotation is held back

        proxy.resume_watches()
        obj = await waiter.status(TS, "live", lambda o: o["status"]["toolCount"] == 2,
                                  "the held-back rotation resyncs", operator=operator)
        assert last_trigger(obj) == "secret"
        await wait_until(lambda: probe(url, 200), timeout=30, what="/healthz passes again", operator=operator)
    assert "the watch of secrets (every namespace)" in operator.log()
