"""The list-changed listeners: one session per distinct endpoint, shared by every resource that reads it.

The sessions here are a fake `listen` (the real one is tested end to end in tests/e2e/test_list_changed.py):
it records each session the supervisor opens and lets a test notify, end or fail it. On looptime's fake
loop time, so the debounce and the reconnect backoff cost no real time.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from toolcatalog.api.endpoint import Endpoint
from toolcatalog.api.errors import SyncError
from toolcatalog.engine.listeners import ToolChangeListeners

pytestmark = pytest.mark.looptime

URL = "http://127.0.0.1:8000/mcp"


class Session:
    def __init__(self, endpoint: Endpoint, on_change: Any) -> None:
        self.endpoint, self.on_change = endpoint, on_change
        self.end: asyncio.Future[SyncError | None] = asyncio.get_running_loop().create_future()
        self.cancelled = False


class FakeServers:
    """Every session the listeners open, as a server would count them."""

    def __init__(self) -> None:
        self.sessions: list[Session] = []

    async def listen(self, endpoint: Endpoint, *, pool: Any, on_change: Any, ready: asyncio.Event) -> None:
        session = Session(endpoint, on_change)
        self.sessions.append(session)
        ready.set()
        try:
            error = await session.end
        except asyncio.CancelledError:
            session.cancelled = True
            raise
        if error is not None:
            raise error

    def open(self) -> list[Session]:
        return [session for session in self.sessions if not session.end.done() and not session.cancelled]


class Pool:
    async def aclose(self) -> None:
        pass


def endpoint(token: str | None = None, url: str = URL) -> Endpoint:
    return Endpoint(url=url, headers={"Authorization": f"Bearer {token}"} if token else {})


def key(name: str) -> tuple[str, str, str]:
    return ("ToolServer", "team-a", name)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.fixture
def world() -> Any:
    servers = FakeServers()
    told: list[tuple[str, str, str]] = []
    listeners = ToolChangeListeners(told.append, max_listeners=3, pool=Pool(),  # type: ignore[arg-type]
                                    listen=servers.listen, clock=lambda: asyncio.get_running_loop().time())
    return servers, told, listeners


async def test_resources_of_one_endpoint_share_one_session_and_all_hear_a_change(world):
    servers, told, listeners = world
    for name in ("a", "b", "c"):
        listeners.ensure(key(name), endpoint())
    await settle()
    assert len(servers.open()) == 1 and listeners.open == 1 and listeners.subscribed == 3
    servers.open()[0].on_change()
    servers.open()[0].on_change()       # a burst: one resync each
    await asyncio.sleep(1)
    assert sorted(told) == [key("a"), key("b"), key("c")]


async def test_other_credentials_or_another_url_never_share_a_session(world):
    servers, told, listeners = world
    listeners.ensure(key("alice"), endpoint("alice-token"))
    listeners.ensure(key("bob"), endpoint("bob-token"))
    listeners.ensure(key("anonymous"), endpoint(url="http://127.0.0.1:8001/mcp"))
    await settle()
    sessions = servers.open()
    assert len(sessions) == 3
    alice = next(session for session in sessions
                 if session.endpoint.headers.get("Authorization") == "Bearer alice-token")
    alice.on_change()
    await asyncio.sleep(1)
    assert told == [key("alice")]


async def test_the_session_lives_as_long_as_one_resource_listens_and_moves_with_a_changed_endpoint(world):
    servers, told, listeners = world
    listeners.ensure(key("a"), endpoint("t1"))
    listeners.ensure(key("b"), endpoint("t1"))
    await settle()
    first = servers.open()[0]
    listeners.stop(key("a"))
    await settle()
    assert servers.open() == [first]
    listeners.ensure(key("b"), endpoint("t2"))      # its Secret rotated: the old session has nobody left
    await settle()
    assert first.cancelled and [session.endpoint.headers["Authorization"] for session in servers.open()] == [
        "Bearer t2"]
    listeners.stop(key("b"))
    await settle()
    assert servers.open() == [] and listeners.open == 0 and listeners.subscribed == 0


async def test_at_most_max_listeners_sessions_and_a_resource_joins_an_open_one_beyond(world):
    servers, told, listeners = world
    for index in range(4):
        listeners.ensure(key(f"r{index}"), endpoint(f"token-{index}"))
    listeners.ensure(key("late"), endpoint("token-0"))     # the endpoint of an open session: it joins
    await settle()
    assert len(servers.open()) == 3 and listeners.subscribed == 4
    servers.sessions[0].on_change()
    await asyncio.sleep(1)
    assert sorted(told) == [key("late"), key("r0")]


async def test_a_lost_stream_resyncs_every_resource_once_it_listens_again(world, looptime):
    servers, told, listeners = world
    listeners.ensure(key("a"), endpoint())
    listeners.ensure(key("b"), endpoint())
    await settle()
    servers.open()[0].end.set_result(SyncError("ServerUnavailable", "the connection was lost"))
    await asyncio.sleep(10)         # the backoff, then the second session
    assert len(servers.sessions) == 2 and len(servers.open()) == 1
    assert sorted(told) == [key("a"), key("b")]
    await listeners.aclose()
    assert servers.sessions[1].cancelled
