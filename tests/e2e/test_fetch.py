"""fetch_catalog against real MCP servers on loopback, over both transports, healthy and faulty."""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest

from toolcatalog.api import constants as c
from toolcatalog.api.endpoint import Endpoint, TLSMaterial
from toolcatalog.api.errors import SyncError as FetchError
from toolcatalog.mcp.egress import EgressPolicy
from toolcatalog.mcp.fetch import EraMemory, fetch_catalog
from toolcatalog.mcp.pool import HttpPool
from toolcatalog_dev.mcpserver import (
    REDIRECT_TARGET,
    McpTestServer,
    closed_port,
    make_self_signed_cert,
    make_tools,
    silent_port,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(30),
              pytest.mark.emulator_only("talks to MCP servers only, no API server: runs once, in make test")]

TRANSPORTS = [c.TRANSPORT_STREAMABLE_HTTP, c.TRANSPORT_SSE]
TIMEOUT = 10.0
SECRET_TOKEN = "s3cr3t-Token-Value-0042"
SECRET_API_KEY = "api-key-Value-9f8e7d"


@pytest.fixture(scope="module")
def running_servers() -> Iterator[dict[str, McpTestServer]]:
    servers = {transport: McpTestServer(transport=transport).start() for transport in TRANSPORTS}
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture(params=TRANSPORTS)
def server(request: pytest.FixtureRequest, running_servers: dict[str, McpTestServer]) -> McpTestServer:
    """A running server of each transport, knobs back at their defaults."""
    srv = running_servers[request.param]
    srv.tools, srv.page_size, srv.tokens, srv.delay, srv.mode = make_tools(3), None, None, 0.0, "ok"
    srv.reset_counters()
    return srv


@pytest.fixture
async def pool() -> AsyncIterator[HttpPool]:
    http_pool = HttpPool()
    yield http_pool
    await http_pool.aclose()


def endpoint(server: McpTestServer, **headers: str) -> Endpoint:
    return Endpoint(url=server.url, transport=server.transport, headers=headers)


async def fetch_error(ep: Endpoint, pool: HttpPool, timeout: float = TIMEOUT, **kwargs: int) -> FetchError:
    with pytest.raises(FetchError) as caught:
        await fetch_catalog(ep, pool=pool, timeout=timeout, **kwargs)
    return caught.value


# ------------------------------------------------------------------------------ healthy


async def test_the_digest_of_an_answer_is_the_same_for_the_same_catalog_and_changes_with_one_character(
        server: McpTestServer, pool: HttpPool) -> None:
    """What lets an unchanged resync skip its merge and its writes: the same list, page by page, has the same
    digest; one character more in one description anywhere in the pages gives another one."""
    server.tools, server.page_size = make_tools(5), 2
    first = await fetch_catalog(endpoint(server), pool=pool, timeout=TIMEOUT)
    again = await fetch_catalog(endpoint(server), pool=pool, timeout=TIMEOUT)
    assert first.digest is not None and first.digest == again.digest and first.pages == 3
    for index in range(5):
        edited = make_tools(5)
        edited[index]["description"] += "."
        server.tools = edited
        changed = await fetch_catalog(endpoint(server), pool=pool, timeout=TIMEOUT)
        assert changed.tools == edited and changed.digest != first.digest, index


async def test_fetch_returns_every_tool_as_sent_and_the_server_identity(server: McpTestServer, pool: HttpPool) -> None:
    server.tools = make_tools(4)
    catalog = await fetch_catalog(endpoint(server), pool=pool, timeout=TIMEOUT)
    assert catalog.tools == make_tools(4)
    assert catalog.pages == 1
    assert catalog.server.name == "test-mcp"
    assert catalog.server.version == "1.0.0"
    assert catalog.server.protocol_version
    assert server.list_calls == 1


async def test_server_identity_changes_are_seen_by_the_next_fetch(server: McpTestServer, pool: HttpPool) -> None:
    server.server_name, server.server_version = "renamed-mcp", "2.0.0"
    try:
        catalog = await fetch_catalog(endpoint(server), pool=pool, timeout=TIMEOUT)
    finally:
        server.server_name, server.server_version = "test-mcp", "1.0.0"
    assert (catalog.server.name, catalog.server.version) == ("renamed-mcp", "2.0.0")


async def test_tools_keep_only_fields_the_server_sent(server: McpTestServer, pool: HttpPool) -> None:
    server.tools = [{"name": "bare", "inputSchema": {"type": "object"}}]
    catalog = await fetch_catalog(endpoint(server), pool=pool, timeout=TIMEOUT)
    assert catalog.tools == [{"name": "bare", "inputSchema": {"type": "object"}}]


async def test_pagination_follows_every_cursor_in_order(server: McpTestServer, pool: HttpPool) -> None:
    server.tools, server.page_size = make_tools(23), 5
    catalog = await fetch_catalog(endpoint(server), pool=pool, timeout=TIMEOUT)
    assert catalog.pages == 5
    assert [tool["name"] for tool in catalog.tools] == [tool["name"] for tool in make_tools(23)]
    assert server.list_calls == 5


async def test_a_second_fetch_sees_changed_definitions(server: McpTestServer, pool: HttpPool) -> None:
    first = await fetch_catalog(endpoint(server), pool=pool, timeout=TIMEOUT)
    changed = make_tools(3)
    changed[1]["description"] = "Rewritten in v2."
    server.tools = changed + make_tools(1, prefix="extra")
    second = await fetch_catalog(endpoint(server), pool=pool, timeout=TIMEOUT)
    assert first.tools[1]["description"] != "Rewritten in v2."
    assert second.tools[1]["description"] == "Rewritten in v2."
    assert [t["name"] for t in second.tools][-1] == "extra_000"
    assert server.list_calls == 2


async def test_headers_reach_the_server_and_each_token_sees_its_own_tools(
    server: McpTestServer, pool: HttpPool
) -> None:
    server.tokens = {"alice-token": make_tools(2, prefix="alice"), "bob-token": make_tools(3, prefix="bob")}
    alice = await fetch_catalog(
        endpoint(server, Authorization="Bearer alice-token", **{"X-Tenant": "team-a"}), pool=pool, timeout=TIMEOUT
    )
    assert [t["name"] for t in alice.tools] == ["alice_000", "alice_001"]
    assert server.last_headers["authorization"] == "Bearer alice-token"
    assert server.last_headers["x-tenant"] == "team-a"
    bob = await fetch_catalog(endpoint(server, Authorization="Bearer bob-token"), pool=pool, timeout=TIMEOUT)
    assert [t["name"] for t in bob.tools] == ["bob_000", "bob_001", "bob_002"]


async def test_concurrent_fetches_share_one_pool(server: McpTestServer, pool: HttpPool) -> None:
    server.tools, server.page_size = make_tools(7), 3
    results: list[int] = []

    async def one() -> None:
        results.append(len((await fetch_catalog(endpoint(server), pool=pool, timeout=TIMEOUT)).tools))

    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(one)
    assert results == [7] * 8


async def test_the_pool_reuses_connections_across_fetches(pool: HttpPool) -> None:
    with McpTestServer() as server:
        for _ in range(12):
            await fetch_catalog(endpoint(server), pool=pool, timeout=TIMEOUT)
        assert server.list_calls == 12
        # 12 sessions, 24+ requests, yet the server saw a handful of TCP connections at most.
        assert server.connections <= 2
        assert pool.connection_states()["active"] == 0


# ------------------------------------------------------------------------------ faults


async def test_refused_token_is_authentication_failed_and_never_shows_the_token(
    server: McpTestServer, pool: HttpPool
) -> None:
    server.tokens = {"the-right-token": make_tools(1)}
    ep = endpoint(server, Authorization=f"Bearer {SECRET_TOKEN}", **{"X-Api-Key": SECRET_API_KEY})
    error = await fetch_error(ep, pool)
    assert error.reason == c.REASON_AUTH_FAILED
    assert "401" in error.message and "Secret" in error.message
    for text in (error.message, str(error), repr(error), repr(ep)):
        assert SECRET_TOKEN not in text
        assert SECRET_API_KEY not in text
    assert server.last_headers["authorization"] == f"Bearer {SECRET_TOKEN}"  # it was sent, just not shown


async def test_a_server_quoting_the_token_back_does_not_leak_it(server: McpTestServer, pool: HttpPool) -> None:
    server.mode = "leaky-error"
    error = await fetch_error(endpoint(server, Authorization=f"Bearer {SECRET_TOKEN}"), pool)
    assert error.reason == c.REASON_PROTOCOL_ERROR
    assert "JSON-RPC error" in error.message and "may not list tools" in error.message
    assert SECRET_TOKEN not in error.message


async def test_missing_token_is_authentication_failed(server: McpTestServer, pool: HttpPool) -> None:
    server.tokens = {"the-right-token": make_tools(1)}
    error = await fetch_error(endpoint(server), pool)
    assert error.reason == c.REASON_AUTH_FAILED
    assert "requires credentials" in error.message and "spec.auth" in error.message


async def test_server_down_is_server_unavailable(pool: HttpPool) -> None:
    with closed_port() as port:
        error = await fetch_error(Endpoint(url=f"http://127.0.0.1:{port}/mcp"), pool)
    assert error.reason == c.REASON_SERVER_UNAVAILABLE
    assert "refused" in error.message


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_server_that_goes_down_and_comes_back(transport: str, pool: HttpPool) -> None:
    with McpTestServer(transport=transport) as server:
        ep = endpoint(server)
        assert len((await fetch_catalog(ep, pool=pool, timeout=TIMEOUT)).tools) == 3
        server.stop()
        error = await fetch_error(ep, pool)
        assert error.reason == c.REASON_SERVER_UNAVAILABLE
        server.start()
        assert len((await fetch_catalog(ep, pool=pool, timeout=TIMEOUT)).tools) == 3


@pytest.mark.timeout(10)
async def test_slow_server_times_out_within_the_deadline_and_leaves_nothing_behind(
    server: McpTestServer, pool: HttpPool
) -> None:
    server.delay = 60.0
    tasks_before = asyncio.all_tasks()
    fetch = asyncio.create_task(fetch_error(endpoint(server), pool, timeout=0.5))
    await server.wait_until_async(lambda s: s.list_calls == 1)  # the server now sits on tools/list
    error = await fetch
    assert error.reason == c.REASON_TIMEOUT
    assert "within 0.5s" in error.message and server.url in error.message
    assert asyncio.all_tasks() == tasks_before
    assert pool.connection_states()["active"] == 0


@pytest.mark.timeout(10)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_server_that_never_answers_times_out(transport: str, pool: HttpPool) -> None:
    with silent_port() as port:
        error = await fetch_error(Endpoint(url=f"http://127.0.0.1:{port}/mcp", transport=transport), pool, timeout=0.5)
    assert error.reason == c.REASON_TIMEOUT


async def test_non_mcp_answer_is_protocol_error(server: McpTestServer, pool: HttpPool) -> None:
    server.mode = "garbage"
    error = await fetch_error(endpoint(server), pool)
    assert error.reason == c.REASON_PROTOCOL_ERROR
    assert "text/html" in error.message


async def test_http_500_is_server_unavailable(server: McpTestServer, pool: HttpPool) -> None:
    server.mode = "http500"
    tasks_before = asyncio.all_tasks()
    error = await fetch_error(endpoint(server), pool)
    assert error.reason == c.REASON_SERVER_UNAVAILABLE
    assert "HTTP 500" in error.message
    assert asyncio.all_tasks() == tasks_before
    assert pool.connection_states()["active"] == 0


async def test_wrong_path_is_server_unavailable_pointing_at_the_path(server: McpTestServer, pool: HttpPool) -> None:
    ep = Endpoint(url=server.base_url + "/no-such-path", transport=server.transport)
    error = await fetch_error(ep, pool)
    assert error.reason == c.REASON_SERVER_UNAVAILABLE
    assert "HTTP 404" in error.message and "path" in error.message


async def test_redirect_is_not_followed(server: McpTestServer, pool: HttpPool) -> None:
    server.mode = "redirect"
    error = await fetch_error(endpoint(server), pool)
    assert error.reason == c.REASON_PROTOCOL_ERROR
    assert server.base_url + REDIRECT_TARGET in error.message and "spec.url" in error.message
    assert REDIRECT_TARGET not in server.paths
    assert server.requests >= 1


async def test_repeated_cursor_is_protocol_error(server: McpTestServer, pool: HttpPool) -> None:
    server.tools, server.page_size, server.mode = make_tools(10), 2, "repeat-cursor"
    error = await fetch_error(endpoint(server), pool)
    assert error.reason == c.REASON_PROTOCOL_ERROR
    assert "cursor" in error.message
    assert server.list_calls == 2


async def test_more_pages_than_the_cap_is_protocol_error(server: McpTestServer, pool: HttpPool) -> None:
    server.tools, server.page_size = make_tools(10), 1
    error = await fetch_error(endpoint(server), pool, max_pages=3)
    assert error.reason == c.REASON_PROTOCOL_ERROR
    assert "more than 3 pages" in error.message
    assert server.list_calls == 3


async def test_malformed_tool_entries_are_protocol_error(pool: HttpPool) -> None:
    async with McpTestServer(mode="bad-tools") as server:
        error = await fetch_error(endpoint(server), pool)
    assert error.reason == c.REASON_PROTOCOL_ERROR
    assert "listed a tool without a name (page 1, entry 0)" in error.message


@pytest.mark.parametrize("legacy", [False, True], ids=["stateless", "sdk-session"])
@pytest.mark.parametrize("mode", ["wrong-id", "wrong-id-sse"], ids=["json", "event-stream"])
async def test_an_answer_to_another_request_is_protocol_error_in_every_era(pool: HttpPool, mode: str,
                                                                          legacy: bool) -> None:
    """Stateless POSTs check the id themselves; a session's wire watch checks every response against the
    requests it sent, before the SDK (which would drop it and wait out the whole timeout) sees it."""
    async with McpTestServer(mode=mode, legacy=legacy) as server:  # type: ignore[arg-type]
        error = await fetch_error(endpoint(server), pool)
        assert server.list_calls == 1
    assert error.reason == c.REASON_PROTOCOL_ERROR, error
    assert "answered tools/list" in error.message and "with a response to another request (JSON-RPC id " in \
        error.message


async def test_egress_policy_denies_before_any_traffic(pool: HttpPool) -> None:
    denied_pool = HttpPool(egress=EgressPolicy(deny=[ipaddress.ip_network("127.0.0.2/32")]))
    try:
        with McpTestServer(host="127.0.0.2") as server:
            error = await fetch_error(endpoint(server), denied_pool)
            assert error.reason == c.REASON_EGRESS_DENIED
            assert "127.0.0.2" in error.message
            assert server.requests == 0
            # The same server is reachable under the default policy: the denial, not the address, stopped it.
            default_pool = HttpPool(egress=EgressPolicy())
            try:
                assert len((await fetch_catalog(endpoint(server), pool=default_pool, timeout=TIMEOUT)).tools) == 3
            finally:
                await default_pool.aclose()
    finally:
        await denied_pool.aclose()


# ------------------------------------------------------------------------------ TLS


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpTestServer]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not available to make a test certificate")
    cert = make_self_signed_cert(str(tmp_path_factory.mktemp("tls")))
    with McpTestServer(cert=cert) as server:
        yield server


async def test_tls_with_the_right_ca_bundle_succeeds(tls_server: McpTestServer, pool: HttpPool) -> None:
    assert tls_server.cert is not None
    ep = Endpoint(url=tls_server.url, tls=TLSMaterial(ca_pem=tls_server.cert.pem))
    assert len((await fetch_catalog(ep, pool=pool, timeout=TIMEOUT)).tools) == 3


async def test_tls_verification_failure_is_server_unavailable_with_a_tls_hint(
    tls_server: McpTestServer, pool: HttpPool
) -> None:
    list_calls_before = tls_server.list_calls
    error = await fetch_error(Endpoint(url=tls_server.url), pool)
    assert error.reason == c.REASON_SERVER_UNAVAILABLE
    assert "TLS" in error.message and "caBundle" in error.message
    assert tls_server.list_calls == list_calls_before


async def test_tls_insecure_skip_verify_connects(tls_server: McpTestServer, pool: HttpPool) -> None:
    ep = Endpoint(url=tls_server.url, tls=TLSMaterial(insecure_skip_verify=True))
    assert len((await fetch_catalog(ep, pool=pool, timeout=TIMEOUT)).tools) == 3


# ---------------------------------------------------------------------------- protocol eras


async def test_a_2026_07_28_server_is_listed_with_one_stateless_request_per_page(pool: HttpPool) -> None:
    async with McpTestServer(tools=make_tools(7), page_size=3, ttl_ms=300_000, cache_scope="public",
                             server_name="modern-mcp", list_changed=True) as server:
        eras = EraMemory()
        catalog = await fetch_catalog(endpoint(server), pool=pool, timeout=TIMEOUT, eras=eras)
        first = server.requests
        assert first == 3 + 1                       # three pages, one server/discover beside the first
        assert (catalog.server.name, catalog.server.protocol_version) == ("modern-mcp", "2026-07-28")
        assert (catalog.server.ttl_ms, catalog.server.cache_scope, catalog.server.list_changed) == (
            300_000, "public", True)
        again = await fetch_catalog(endpoint(server), pool=pool, timeout=TIMEOUT, eras=eras)
        assert server.requests - first == 3         # what it speaks is remembered: pages only
        assert [t["name"] for t in again.tools] == [f"tool_{i:03d}" for i in range(7)]
        await fetch_catalog(endpoint(server), pool=pool, timeout=TIMEOUT, eras=eras, fresh=True)
        assert server.requests - first == 3 + 4     # a refresh asks again


async def test_a_handshake_era_server_gets_a_session_and_its_era_is_remembered(pool: HttpPool) -> None:
    async with McpTestServer(tools=make_tools(4), page_size=2, legacy=True) as server:
        eras = EraMemory()
        catalog = await fetch_catalog(endpoint(server), pool=pool, timeout=TIMEOUT, eras=eras)
        assert [t["name"] for t in catalog.tools] == [f"tool_{i:03d}" for i in range(4)]
        assert catalog.server.protocol_version != "2026-07-28" and catalog.server.ttl_ms is None
        assert "DELETE" in server.methods            # the session the refused probe opened is closed
        server.reset_counters()
        await fetch_catalog(endpoint(server), pool=pool, timeout=TIMEOUT, eras=eras)
        assert server.list_calls == 2 and not any(h == "2026-07-28" for h in server.protocol_headers)


async def test_tool_definitions_are_kept_as_the_server_sent_them(pool: HttpPool) -> None:
    tools = make_tools(1)
    tools[0]["icons"] = [{"src": "https://example.com/icon.png", "mimeType": "image/png"}]
    async with McpTestServer(tools=tools) as server:
        catalog = await fetch_catalog(endpoint(server), pool=pool, timeout=TIMEOUT)
    assert catalog.tools[0]["icons"] == tools[0]["icons"]
    assert {k: v for k, v in catalog.tools[0].items() if k != "icons"} == {k: v for k, v in tools[0].items()
                                                                          if k != "icons"}
