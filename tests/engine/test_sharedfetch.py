"""Shared fetches: resources that read the same endpoint with the same credentials at the same moment ask
the server once; nobody gets an answer older than it may take (engine/sharedfetch.py).

The fetcher is a fake server that counts its answers and takes a second to give each (the real fetch is
tested end to end); on looptime's fake loop time, so the seconds cost nothing.
"""

from __future__ import annotations

import asyncio

import pytest

from toolcatalog.api import constants as c
from toolcatalog.api.endpoint import Endpoint, FetchedCatalog
from toolcatalog.api.errors import SyncError
from toolcatalog.api.models import ServerInfo
from toolcatalog.engine.sharedfetch import SharedFetches

pytestmark = pytest.mark.looptime

URL = "http://127.0.0.1:8000/mcp"


def endpoint(token: str | None = None) -> Endpoint:
    return Endpoint(url=URL, headers={"Authorization": f"Bearer {token}"} if token else {})


class Server:
    def __init__(self, seconds: float = 1.0) -> None:
        self.seconds, self.answers, self.failing = seconds, 0, False
        self.tokens: list[str | None] = []

    async def fetch(self, endpoint: Endpoint, *, timeout: float, fresh: bool) -> FetchedCatalog:
        self.tokens.append(endpoint.headers.get("Authorization"))
        await asyncio.sleep(self.seconds)
        if self.failing:
            raise SyncError(c.REASON_SERVER_UNAVAILABLE, "connection refused")
        self.answers += 1
        return FetchedCatalog(server=ServerInfo(name="s"), tools=[{"name": f"answer-{self.answers}"}], pages=1,
                              digest=str(self.answers))


def now() -> float:
    return asyncio.get_running_loop().time()


async def test_syncs_of_one_endpoint_at_the_same_moment_share_one_fetch() -> None:
    server = Server()
    shared = SharedFetches(server.fetch, window=5.0, clock=now)
    answers = await asyncio.gather(*(shared(endpoint("a"), timeout=10, fresh=False, not_before=now() - 5)
                                     for _ in range(10)))
    assert server.answers == 1 and {catalog.digest for catalog, _ in answers} == {"1"}
    # Two seconds later, within the window: the answer landed is taken; no request reaches the server.
    await asyncio.sleep(2)
    catalog, began = await shared(endpoint("a"), timeout=10, fresh=False, not_before=now() - 5)
    assert (catalog.digest, server.answers, shared.shared) == ("1", 1, 10)
    # Past the window the server is asked again.
    await asyncio.sleep(5)
    catalog, _ = await shared(endpoint("a"), timeout=10, fresh=False, not_before=now() - 5)
    assert catalog.digest == "2"


async def test_other_credentials_never_share_an_answer() -> None:
    server = Server()
    shared = SharedFetches(server.fetch, window=5.0, clock=now)
    await asyncio.gather(shared(endpoint("alice"), timeout=10, fresh=False, not_before=now() - 5),
                         shared(endpoint("bob"), timeout=10, fresh=False, not_before=now() - 5),
                         shared(endpoint(), timeout=10, fresh=False, not_before=now() - 5))
    assert server.answers == 3
    assert sorted(server.tokens, key=str) == sorted(["Bearer alice", "Bearer bob", None], key=str)


async def test_a_refresh_or_a_sync_without_a_window_asks_the_server_itself() -> None:
    server = Server()
    shared = SharedFetches(server.fetch, window=5.0, clock=now)
    first = asyncio.ensure_future(shared(endpoint("a"), timeout=10, fresh=False, not_before=now() - 5))
    await asyncio.sleep(0.5)            # under way
    refresh, _ = await shared(endpoint("a"), timeout=10, fresh=True)
    own, _ = await shared(endpoint("a"), timeout=10, fresh=False, not_before=None)
    await first
    assert server.answers == 3 and refresh.digest != "1" and own.digest not in ("1", refresh.digest)


async def test_an_answer_begun_before_the_moment_a_sync_names_is_not_taken() -> None:
    """A notification wants an answer begun after it; a resource's next sync, one newer than its last."""
    server = Server()
    shared = SharedFetches(server.fetch, window=5.0, clock=now)
    first = asyncio.ensure_future(shared(endpoint("a"), timeout=10, fresh=False, not_before=now() - 5))
    await asyncio.sleep(0.5)
    notified = now()
    after, began = await shared(endpoint("a"), timeout=10, fresh=False, not_before=notified)
    assert began >= notified and server.answers == 2
    earlier, earlier_began = await first
    assert earlier_began < notified and earlier.digest == "1" and after.digest == "2"
    # Within the window, but no newer than what this resource already has: asked again.
    again, _ = await shared(endpoint("a"), timeout=10, fresh=False, not_before=began + 1e-6)
    assert again.digest == "3"


async def test_a_failure_is_shared_by_the_syncs_waiting_for_it_but_never_kept() -> None:
    server = Server()
    server.failing = True
    shared = SharedFetches(server.fetch, window=5.0, clock=now)
    results = await asyncio.gather(*(shared(endpoint("a"), timeout=10, fresh=False, not_before=now() - 5)
                                     for _ in range(3)), return_exceptions=True)
    assert [type(result) for result in results] == [SyncError] * 3 and len(server.tokens) == 1
    server.failing = False
    catalog, _ = await shared(endpoint("a"), timeout=10, fresh=False, not_before=now() - 5)
    assert catalog.digest == "1" and len(server.tokens) == 2


async def test_the_last_sync_to_give_up_cancels_the_fetch() -> None:
    server = Server(seconds=30)
    shared = SharedFetches(server.fetch, window=5.0, clock=now)
    waiters = [asyncio.ensure_future(shared(endpoint("a"), timeout=60, fresh=False, not_before=now() - 5))
               for _ in range(2)]
    await asyncio.sleep(1)
    waiters[0].cancel()
    await asyncio.sleep(1)
    assert not waiters[1].done()        # the other still waits for the same fetch
    waiters[1].cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
    await asyncio.sleep(60)
    assert server.answers == 0          # cancelled, never answered
