import pytest

from tests.support.k8s import CM, TS, condition, toolserver
from tests.support.mcpservers import McpTestServer, make_tools

pytestmark = pytest.mark.e2e


async def test_smoke(api, operator, waiter):
    with McpTestServer(tools=make_tools(3)) as server:
        await api.create(toolserver("smoke", server.url))
        obj = await waiter.status(TS, "smoke", lambda o: condition(o, "Synced").get("status") == "True",
                                  "Synced=True", operator=operator)
        print(obj["status"])
        cm = api.get(CM, "default", "toolserver-smoke")
        assert cm is not None
