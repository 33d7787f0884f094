"""The metadata-only informer (kube/informer.py) and the informers of Secrets and ConfigMaps per scope
(kube/references.py), against a scripted API: lists in pages, watches resumed from the last version
(a bookmark's too), a 410 answered by listing again and reporting what changed meanwhile, backoff on
failures, namespaces followed by pattern. The real servers are in tests/e2e/test_references.py."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import pytest

from toolcatalog.engine.watchlag import Verdict
from toolcatalog.handlers.health import stalled_watches
from toolcatalog.kube.errors import ApiError
from toolcatalog.kube.informer import Backoff, Change, MetadataInformer, Scope, VersionStore
from toolcatalog.kube.references import ReferenceInformers


def meta(name: str, version: str, namespace: str = "ns") -> dict[str, Any]:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": version}}


def page(*items: dict[str, Any], version: str = "10", more: str | None = None) -> dict[str, Any]:
    return {"kind": "PartialObjectMetadataList", "metadata": {"resourceVersion": version, **({"continue": more}
                                                                                             if more else {})},
            "items": list(items)}


def event(type_: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {"type": type_, "object": obj}


def bookmark(version: str) -> dict[str, Any]:
    return event("BOOKMARK", {"kind": "PartialObjectMetadata", "metadata": {"resourceVersion": version}})


def gone() -> dict[str, Any]:
    return event("ERROR", {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old resource version"})


class ScriptedApi:
    """Answers by path: `listings[path]` is a list of pages (a later listing takes the next list of
    pages from `relistings[path]`); each watch takes the next stream queued in `streams[path]` (a list of
    events, or an exception to raise), and waits, like a quiet open stream, while there is none."""

    def __init__(self) -> None:
        self.listings: dict[str, list[dict[str, Any]] | Exception] = {}
        self.relistings: dict[str, list[list[dict[str, Any]]]] = defaultdict(list)
        self.streams: dict[str, asyncio.Queue[list[dict[str, Any]] | Exception]] = defaultdict(asyncio.Queue)
        self.calls: list[tuple[str, str, dict[str, str]]] = []

    def watches(self, path: str) -> list[dict[str, str]]:
        return [query for verb, where, query in self.calls if verb == "watch" and where == path]

    async def list_metadata_page(self, path: str, query: Mapping[str, str]) -> dict[str, Any]:
        self.calls.append(("list", path, dict(query)))
        if "continue" not in query and self.relistings[path] and any(
                verb == "list" and where == path and "continue" not in q for verb, where, q in self.calls[:-1]):
            self.listings[path] = self.relistings[path].pop(0)
        pages = self.listings[path]
        if isinstance(pages, Exception):
            raise pages
        return pages[int(query.get("continue", "0"))]

    async def watch_metadata(self, path: str, query: Mapping[str, str], *,
                             idle_timeout: float) -> AsyncIterator[bytes]:
        self.calls.append(("watch", path, dict(query)))
        stream = await self.streams[path].get()
        if isinstance(stream, Exception):
            raise stream
        for item in stream:
            yield json.dumps(item).encode()


async def until(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while not (value := check()):
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail("condition not met in time")
        await asyncio.sleep(0.001)
    return value


class Running:
    """One informer running in a task, with the sleeps it asked for recorded (and not slept)."""

    def __init__(self, api: ScriptedApi, scope: Scope, **options: Any) -> None:
        self.changes: list[Change] = []
        self.slept: list[float] = []
        self.store = VersionStore()
        self.informer = MetadataInformer(api, scope, self.store, self.changes.append, sleep=self._sleep,
                                         jitter=lambda: 1.0, **options)
        self.task: asyncio.Task[None] | None = None

    async def _sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        await asyncio.sleep(0)

    async def __aenter__(self) -> Running:
        self.task = asyncio.get_running_loop().create_task(self.informer.run())
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


SECRETS = Scope("secrets", "ns", field_selector="type!=helm.sh/release.v1")
PATH = "/api/v1/namespaces/ns/secrets"


# ------------------------------------------------------------------------------ the store


def test_the_store_reports_what_a_watch_event_changes_and_nothing_for_a_version_it_knows() -> None:
    store = VersionStore()
    assert store.apply("ADDED", "ns", "a", "1") == ("ADDED", "ns", "a")
    assert store.apply("MODIFIED", "ns", "a", "1") is None
    assert store.apply("MODIFIED", "ns", "a", "2") == ("MODIFIED", "ns", "a")
    assert store.get("ns", "a") == "2" and store.get("ns", "b") is None and store.get("other", "a") is None
    assert store.apply("DELETED", "ns", "a", "3") == ("DELETED", "ns", "a")
    assert store.apply("DELETED", "ns", "a", "3") is None
    assert len(store) == 0


def test_a_listing_of_one_namespace_replaces_that_namespace_only_and_reports_the_differences() -> None:
    store = VersionStore()
    store.replace(None, {"a": {"x": "1", "y": "2"}, "b": {"z": "3"}})
    changes = store.replace("a", {"a": {"x": "1", "y": "5", "new": "6"}})
    assert sorted(changes) == [("ADDED", "a", "new"), ("MODIFIED", "a", "y")]
    assert store.get("b", "z") == "3"
    assert sorted(store.replace(None, {"b": {"z": "3"}})) == [("DELETED", "a", "new"), ("DELETED", "a", "x"),
                                                       ("DELETED", "a", "y")]
    assert len(store) == 1


# ------------------------------------------------------------------------------ one informer


async def test_the_first_listing_is_read_in_pages_reports_nothing_and_the_watch_starts_from_its_version() -> None:
    api = ScriptedApi()
    api.listings[PATH] = [page(meta("a", "3"), meta("b", "4"), more="1"), page(meta("c", "9"), version="12")]
    async with Running(api, SECRETS) as running:
        await until(lambda: api.watches(PATH))
        assert running.informer.synced.is_set()
        assert [running.store.get("ns", name) for name in "abc"] == ["3", "4", "9"]
        assert running.changes == []
    lists = [query for verb, _, query in api.calls if verb == "list"]
    assert lists == [{"limit": "500", "fieldSelector": "type!=helm.sh/release.v1"},
                     {"limit": "500", "fieldSelector": "type!=helm.sh/release.v1", "continue": "1"}]
    [watch] = api.watches(PATH)
    assert watch["resourceVersion"] == "12" and watch["allowWatchBookmarks"] == "true"
    assert watch["watch"] == "true" and watch["fieldSelector"] == "type!=helm.sh/release.v1"
    assert 60 <= int(watch["timeoutSeconds"]) <= 90


async def test_watch_events_are_reported_and_a_bookmark_only_moves_the_version_the_next_watch_starts_from() -> None:
    api = ScriptedApi()
    api.listings[PATH] = [page(meta("a", "3"), version="5")]
    api.streams[PATH].put_nowait([event("MODIFIED", meta("a", "6")), event("ADDED", meta("b", "7")),
                                  bookmark("20")])      # then the server ends the stream
    api.streams[PATH].put_nowait([event("DELETED", meta("a", "21"))])
    async with Running(api, SECRETS) as running:
        await until(lambda: len(api.watches(PATH)) == 3)
        assert running.changes == [("MODIFIED", "ns", "a"), ("ADDED", "ns", "b"), ("DELETED", "ns", "a")]
        assert running.store.get("ns", "a") is None and running.store.get("ns", "b") == "7"
    assert [query["resourceVersion"] for query in api.watches(PATH)] == ["5", "20", "21"]
    assert [verb for verb, _, _ in api.calls].count("list") == 1


@pytest.mark.parametrize("expiry", ["an ERROR event", "the answer"])
async def test_a_410_lists_again_and_reports_what_changed_meanwhile(expiry: str) -> None:
    api = ScriptedApi()
    api.listings[PATH] = [page(meta("a", "3"), meta("b", "4"), version="5")]
    api.relistings[PATH].append([page(meta("a", "30"), meta("c", "31"), version="40")])
    api.streams[PATH].put_nowait([gone()] if expiry == "an ERROR event" else ApiError(410, "Expired", "too old"))
    async with Running(api, SECRETS) as running:
        await until(lambda: len(api.watches(PATH)) == 2)
        assert sorted(running.changes) == [("ADDED", "ns", "c"), ("DELETED", "ns", "b"), ("MODIFIED", "ns", "a")]
        assert running.informer.lists == 2 and running.slept == []     # at once, no backoff
    assert [query["resourceVersion"] for query in api.watches(PATH)] == ["5", "40"]


async def test_failures_are_retried_with_exponential_backoff_and_a_success_starts_the_count_again() -> None:
    api = ScriptedApi()
    api.listings[PATH] = [page(version="5")]
    for _ in range(3):
        api.streams[PATH].put_nowait(ApiError(503, "ServiceUnavailable", "down"))
    api.streams[PATH].put_nowait([event("ADDED", meta("a", "6"))])
    api.streams[PATH].put_nowait(ApiError(0, "Unavailable", "broken"))
    async with Running(api, SECRETS, backoff=Backoff(base=0.8, cap=30.0)) as running:
        await until(lambda: len(api.watches(PATH)) == 6)
        # jitter 1.0: the whole delay; 0.1 s between a stream the server ended and the next
        assert running.slept == [0.8, 1.6, 3.2, 0.1, 0.8]
        assert running.changes == [("ADDED", "ns", "a")]
    assert [query["resourceVersion"] for query in api.watches(PATH)] == ["5", "5", "5", "5", "6", "6"]


async def test_a_failing_first_listing_is_retried_and_nothing_is_synced_until_it_succeeds() -> None:
    api = ScriptedApi()
    api.listings[PATH] = ApiError(403, "Forbidden", "secrets is forbidden")
    async with Running(api, SECRETS) as running:
        await until(lambda: len(running.slept) >= 3)
        assert not running.informer.synced.is_set()
        api.listings[PATH] = [page(meta("a", "1"), version="2")]
        await until(lambda: running.informer.synced.is_set())
        assert running.store.get("ns", "a") == "1"
    assert running.slept[:3] == [0.8, 1.6, 3.2]


async def test_silence_counts_from_the_last_answer_of_the_server_a_refusal_included() -> None:
    now = [100.0]
    api = ScriptedApi()
    api.listings[PATH] = [page(version="5")]
    async with Running(api, SECRETS, clock=lambda: now[0]) as running:
        await until(lambda: api.watches(PATH))
        now[0] = 150.0
        assert running.informer.silent_for() == 50.0
        api.streams[PATH].put_nowait([bookmark("6")])
        await until(lambda: len(api.watches(PATH)) == 2)
        assert running.informer.silent_for() == 0.0
        # No answer at all (a stalled stream, an unreachable server) is silence; a refusal is an answer.
        now[0] = 200.0
        api.streams[PATH].put_nowait(ApiError(0, "Timeout", "nothing came for 65s"))
        await until(lambda: len(api.watches(PATH)) == 3)
        assert running.informer.silent_for() == 50.0
        api.streams[PATH].put_nowait(ApiError(403, "Forbidden", "secrets is forbidden"))
        await until(lambda: len(api.watches(PATH)) == 4)
        assert running.informer.silent_for() == 0.0


async def test_a_watch_timeout_below_a_second_still_asks_the_server_for_one() -> None:
    api = ScriptedApi()
    api.listings[PATH] = [page(version="5")]
    async with Running(api, SECRETS, watch_timeout=0.4):
        await until(lambda: api.watches(PATH))
    assert api.watches(PATH)[0]["timeoutSeconds"] == "1"


# ------------------------------------------------------------------------------ Secrets and ConfigMaps, per scope


async def test_every_namespace_is_one_cluster_wide_informer_per_kind_with_its_selectors() -> None:
    api = ScriptedApi()
    api.listings["/api/v1/secrets"] = [page(meta("s", "1", "a"), meta("s", "2", "b"))]
    api.listings["/api/v1/configmaps"] = [page(meta("ca", "3", "a"))]
    seen: list[tuple[str, str, str]] = []
    informers = ReferenceInformers(api, on_change=lambda *change: seen.append(change),
                                   selectors={"ConfigMap": ("app.kubernetes.io/managed-by!=toolcatalog", "")})
    informers.start()
    try:
        assert informers.waiting_for() == "waiting for the initial listing of Secrets and ConfigMaps (metadata)"
        await asyncio.wait_for(informers.wait_synced(), 5)
        assert informers.waiting_for() is None
        assert (informers.secret("a", "s"), informers.secret("b", "s"), informers.configmap("a", "ca")) == \
            ("1", "2", "3")
        api.streams["/api/v1/secrets"].put_nowait([event("MODIFIED", meta("s", "7", "b"))])
        await until(lambda: seen)
        assert seen == [("Secret", "b", "s")] and informers.secret("b", "s") == "7"
    finally:
        await informers.stop()
    [configmaps] = [query for verb, path, query in api.calls if verb == "list" and path == "/api/v1/configmaps"]
    assert configmaps["labelSelector"] == "app.kubernetes.io/managed-by!=toolcatalog"


async def test_exact_namespaces_list_no_secret_elsewhere() -> None:
    api = ScriptedApi()
    for namespace in ("a", "b"):
        for plural in ("secrets", "configmaps"):
            api.listings[f"/api/v1/namespaces/{namespace}/{plural}"] = [page()]
    informers = ReferenceInformers(api, namespaces=("a", "b"))
    informers.start()
    try:
        await asyncio.wait_for(informers.wait_synced(), 5)
    finally:
        await informers.stop()
    assert sorted({path for _, path, _ in api.calls}) == [
        "/api/v1/namespaces/a/configmaps", "/api/v1/namespaces/a/secrets",
        "/api/v1/namespaces/b/configmaps", "/api/v1/namespaces/b/secrets"]


async def test_namespace_patterns_follow_matching_namespaces_as_they_come_and_go() -> None:
    api = ScriptedApi()
    api.listings["/api/v1/namespaces"] = [page(meta("team-a", "1", ""), meta("other", "2", ""))]
    for namespace in ("team-a", "team-b"):
        api.listings[f"/api/v1/namespaces/{namespace}/secrets"] = [page(meta("token", "5", namespace))]
        api.listings[f"/api/v1/namespaces/{namespace}/configmaps"] = [page()]
    informers = ReferenceInformers(api, namespaces=("team-*",), matching=lambda ns: ns.startswith("team-"))
    informers.start()
    try:
        await asyncio.wait_for(informers.wait_synced(), 5)
        assert informers.secret("team-a", "token") == "5"
        assert not any("/namespaces/other/" in path for _, path, _ in api.calls)

        api.streams["/api/v1/namespaces"].put_nowait([event("ADDED", meta("team-b", "6", ""))])
        await until(lambda: informers.secret("team-b", "token") == "5")
        api.streams["/api/v1/namespaces"].put_nowait([event("DELETED", meta("team-a", "7", ""))])
        await until(lambda: informers.secret("team-a", "token") is None)
        assert informers.synced()
    finally:
        await informers.stop()
    assert not any(path == "/api/v1/secrets" for _, path, _ in api.calls)      # never cluster-wide


async def test_an_informer_the_server_stopped_answering_is_reported_silent() -> None:
    now = [0.0]
    api = ScriptedApi()
    api.listings["/api/v1/secrets"] = [page()]
    api.listings["/api/v1/configmaps"] = [page()]
    informers = ReferenceInformers(api, clock=lambda: now[0], stall_after=180)
    informers.start()
    try:
        await asyncio.wait_for(informers.wait_synced(), 5)
        now[0] = 100.0
        assert informers.stalled() == []
        now[0] = 200.0
        assert informers.stalled() == ["the watch of secrets (every namespace) (200s silent)",
                                       "the watch of configmaps (every namespace) (200s silent)"]
    finally:
        await informers.stop()


def test_a_silent_informer_fails_liveness_only_while_the_api_server_can_be_asked() -> None:
    class Check:
        last: Verdict | None = Verdict()

        def stalled(self) -> list[str]:
            return []

    class Silent:
        def waiting_for(self) -> str | None:
            return None

        def stalled(self) -> list[str]:
            return ["the watch of secrets (every namespace) (200s silent)"]

    check = Check()
    assert stalled_watches(check, [Silent()]) == ["the watch of secrets (every namespace) (200s silent)"]  # type: ignore[arg-type]
    check.last = Verdict(error="cannot ask the API server what changed: connection refused")
    assert stalled_watches(check, [Silent()]) == []  # type: ignore[arg-type]
    check.last = None       # not checked yet
    assert stalled_watches(check, [Silent()]) == []  # type: ignore[arg-type]
