"""Bad input and unexpected failures end as a condition (issue 15, item 5), in-process on fakes.

- Every spec, whatever its host and whatever its Secret holds, ends its first reconcile with a Synced
  condition and a reason from the documented list: hostnames drawn as in
  tests/unit/test_properties_hosts.py, tokens with any characters, and a fetcher that builds the request
  the way the HTTP client does first (it raises what the client would raise).
- An exception no code path expected (a bug) ends as Synced=False InternalError through the normal
  plan: the previous cache and status.tools stay exactly as they were, the message names the exception's
  type and never its text (it may quote a credential), and the retry backs off.
"""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import httpx2
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import toolcatalog.engine.reconciler as reconciler_module
from tests.engine.fakes import URL, FakeFetcher, World, tool
from tests.unit.test_properties_hosts import hosts, ports
from toolcatalog.api import constants as c
from toolcatalog.api.endpoint import Endpoint, FetchedCatalog

SECRET = "s3cret-Internal-Token-4410"
AUTH = {"bearerToken": {"secretKeyRef": {"name": "auth", "key": "token"}}}
PROPERTIES = settings(derandomize=True, database=None, deadline=None, max_examples=100,
                      suppress_health_check=[HealthCheck.too_slow])


class HttpClientFetcher(FakeFetcher):
    """Answers like FakeFetcher, after building the request as the HTTP client would (URL and headers)."""

    async def __call__(self, endpoint: Endpoint, *, timeout: float, fresh: bool = False) -> FetchedCatalog:
        httpx2.Request("POST", endpoint.url, headers=endpoint.headers)
        return await super().__call__(endpoint, timeout=timeout, fresh=fresh)


def world_with_secret(token: str = SECRET, fetcher: FakeFetcher | None = None) -> World:
    world = World()
    if fetcher is not None:
        world.fetch = fetcher
        world.reconciler.fetch = fetcher
    world.kube.secret("auth", {"token": token})
    return world


def visible(world: World, name: str = "demo") -> str:
    """All a user can read: status, Events, the cache ConfigMap."""
    return json.dumps([world.status(name), world.kube.events, world.kube.get("ConfigMap", f"toolserver-{name}")])


def synced_condition_is_documented(world: World, name: str = "demo") -> dict[str, Any]:
    synced = world.condition(name, "Synced")
    assert synced, f"no Synced condition: {world.status(name)}"
    if synced["status"] == "True":
        assert synced["reason"] == c.REASON_SYNC_SUCCEEDED
    else:
        assert synced["status"] == "False" and synced["reason"] in c.SYNC_FAILURE_REASONS, synced
    return synced


# ----------------------------------------------------------------------------- every spec gets a condition


@PROPERTIES
@given(hosts, ports, st.text(max_size=12))
@example("\uff11\uff16\uff19.\uff12\uff15\uff14.\uff11\uff16\uff19.\uff12\uff15\uff14", "", "")
@example("127.0.0.1", ":9", "\u00fc")
@example("127.0.0.1", ":9", "line\nbreak")
@example("[v1.x]", "", "")
@example("[::]", "", "controll")
def test_every_spec_ends_its_first_reconcile_with_a_synced_condition(host: str, port: str, tail: str) -> None:
    token = SECRET + tail           # a token of any characters, recognisable wherever it might show up
    world = world_with_secret(token, HttpClientFetcher())
    world.apply("demo", {"url": f"http://{host}{port}/mcp", "auth": AUTH})
    asyncio.run(world.reconcile("demo"))
    synced = synced_condition_is_documented(world)
    if synced["status"] == "False":
        assert synced["reason"] == c.REASON_INVALID_SPEC, synced      # bad input is foreseen: no InternalError
        assert "spec.url" in synced["message"] or "spec.auth.bearerToken: Secret team-a/auth key 'token'" \
            in synced["message"], synced
        assert world.status("demo").get("nextSyncAt") is None        # only a change of spec or Secret helps
    assert token.strip() not in visible(world) and SECRET not in visible(world)


# ----------------------------------------------------------------------------- the unexpected


UNEXPECTED = [RuntimeError, KeyError, TypeError, ValueError, AttributeError, AssertionError, ZeroDivisionError,
              UnicodeError, OSError, LookupError, NotImplementedError, RecursionError]


class ExplodingFetcher(FakeFetcher):
    """Succeeds until `explode` is set, then raises it."""

    explode: BaseException | None = None

    async def __call__(self, endpoint: Endpoint, *, timeout: float, fresh: bool = False) -> FetchedCatalog:
        if self.explode is not None:
            raise self.explode
        return await super().__call__(endpoint, timeout=timeout, fresh=fresh)


async def synced_once(world: World) -> tuple[dict[str, Any], dict[str, Any]]:
    world.apply("demo", {"url": URL, "auth": AUTH, "sync": {"ttlSeconds": 60}})
    await world.reconcile("demo")
    assert world.condition("demo", "Synced")["status"] == "True"
    return copy.deepcopy(world.status("demo")), copy.deepcopy(world.kube.get("ConfigMap", "toolserver-demo"))


def assert_kept(world: World, before: dict[str, Any], cm_before: dict[str, Any]) -> None:
    cm_after = world.kube.get("ConfigMap", "toolserver-demo")
    assert cm_after == cm_before                            # byte for byte, resourceVersion included
    status = world.status("demo")
    for key in ("tools", "toolCount", "cache", "server", "url"):
        assert status.get(key) == before.get(key), key


@PROPERTIES
@given(st.sampled_from(UNEXPECTED), st.sampled_from(["", SECRET, f"Bearer {SECRET}", f"header {SECRET!r} failed"]))
def test_any_unexpected_exception_while_fetching_is_an_internal_error_that_keeps_the_cache(
        kind: type[BaseException], text: str) -> None:
    async def scenario() -> None:
        fetcher = ExplodingFetcher()
        world = world_with_secret(fetcher=fetcher)
        before, cm_before = await synced_once(world)
        fetcher.explode = kind(text)
        world.clock.advance(61)
        delays = [await world.reconcile("demo")]
        synced = world.condition("demo", "Synced")
        assert (synced["status"], synced["reason"]) == ("False", c.REASON_INTERNAL_ERROR)
        assert synced["message"].startswith(f"the operator failed unexpectedly while fetching the tool list "
                                            f"({kind.__name__}); it retries with backoff")
        assert_kept(world, before, cm_before)
        assert world.status("demo")["phase"] == "Stale" and not world.condition("demo", "Stalled")
        assert world.kube.events[-1]["reason"] == "SyncFailed"
        assert SECRET not in visible(world)
        world.clock.advance(delays[0] or 0)
        delays.append(await world.reconcile("demo"))
        assert delays == [pytest.approx(5), pytest.approx(10)]          # backing off, visibly: nextSyncAt
        fetcher.explode = None
        world.clock.advance(delays[1] or 0)
        await world.reconcile("demo")
        assert world.condition("demo", "Synced")["status"] == "True"
    asyncio.run(scenario())


async def test_an_unexpected_failure_of_the_status_write_puts_the_cache_back_and_is_recorded(caplog):
    world = World()
    before, cm_before = await synced_once_without_auth(world)
    world.fetch.tools = [tool("a"), tool("b"), tool("c")]
    world.kube.fail["patch_status"] = RuntimeError("the client broke")   # type: ignore[assignment]
    world.clock.advance(61)
    await world.reconcile("demo")
    synced = world.condition("demo", "Synced")
    assert synced["reason"] == c.REASON_INTERNAL_ERROR and "while writing status (RuntimeError)" in synced["message"]
    cm_after = world.kube.get("ConfigMap", "toolserver-demo")
    assert cm_after["data"] == cm_before["data"] and cm_after["metadata"]["annotations"] == \
        cm_before["metadata"]["annotations"]
    assert world.status("demo")["tools"] == before["tools"]
    assert "Traceback" in caplog.text and "the client broke" in caplog.text      # the log has the details


async def synced_once_without_auth(world: World) -> tuple[dict[str, Any], dict[str, Any]]:
    world.apply("demo", {"url": URL, "sync": {"ttlSeconds": 60}})
    await world.reconcile("demo")
    return copy.deepcopy(world.status("demo")), copy.deepcopy(world.kube.get("ConfigMap", "toolserver-demo"))


@pytest.mark.parametrize(("target", "step"), [("plan_sync", "merging the catalog"),
                                              ("configmap_patch", "writing the cache"),
                                              ("plan_suspend", "reconciling")])
async def test_an_unexpected_exception_at_any_step_is_recorded_with_the_step(monkeypatch, target, step):
    world = World()
    before, cm_before = await synced_once_without_auth(world)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("bug")

    monkeypatch.setattr(reconciler_module, target, broken)
    world.fetch.tools = [tool("a"), tool("c")]
    spec = {"url": URL, "sync": {"ttlSeconds": 60, "suspend": target == "plan_suspend"}}
    world.apply("demo", spec)
    delay = await world.reconcile("demo")
    synced = world.condition("demo", "Synced")
    assert synced["reason"] == c.REASON_INTERNAL_ERROR and f"while {step} (KeyError)" in synced["message"]
    assert world.kube.get("ConfigMap", "toolserver-demo")["data"] == cm_before["data"]
    assert world.status("demo")["tools"] == before["tools"] and delay == pytest.approx(5)
    monkeypatch.undo()
    world.apply("demo", {**spec, "sync": {"ttlSeconds": 60}})
    world.clock.advance(5)
    await world.reconcile("demo")
    assert world.condition("demo", "Synced")["status"] == "True"


async def test_a_listener_that_fails_does_not_fail_a_written_sync():
    world = World(list_changed=True)

    def refuse(key: Any, endpoint: Any) -> None:
        raise RuntimeError("no listener today")

    world.listeners.ensure = refuse         # type: ignore[method-assign]
    world.apply("demo")
    await world.reconcile("demo")
    assert world.condition("demo", "Synced")["status"] == "True"
    assert json.loads(world.kube.get("ConfigMap", "toolserver-demo")["data"]["tools.json"])["tools"]
    assert world.status("demo")["toolCount"] == 2
