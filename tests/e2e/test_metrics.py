"""Prometheus metrics as a scraper sees them after real syncs."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.k8s import TS, condition, toolserver, wait_until
from toolcatalog_dev.mcpserver import McpTestServer, closed_port, free_port, make_tools

pytestmark = pytest.mark.e2e


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples, metric, **labels):
    return samples.get((metric, tuple(sorted(labels.items()))))


async def test_metrics_count_syncs_failures_refreshes_and_tools(api, start_operator, waiter):
    port = free_port()
    operator = start_operator(args=["--metrics-port", str(port), "--metrics-address", "127.0.0.1"])
    with McpTestServer(tools=make_tools(3)) as server, closed_port() as dead:
        await api.create(toolserver("good", server.url, sync={"minIntervalSeconds": 0}))
        await api.create(toolserver("down", f"http://127.0.0.1:{dead}/mcp"))
        await waiter.status(TS, "good", lambda o: condition(o, "Synced").get("status") == "True", "good synced",
                            operator=operator)
        await waiter.status(TS, "down", lambda o: condition(o, "Synced").get("reason") == "ServerUnavailable",
                            "down failed", operator=operator)
        server.tools = make_tools(4)
        await api.annotate(TS, api.ns, "good", {"toolcatalog.dev/refresh": "m1"})
        await waiter.status(TS, "good", lambda o: o["status"].get("lastRefresh", {}).get("token") == "m1",
                            "refresh answered", operator=operator)
        samples = await wait_until(lambda: scrape_when(port, "toolcatalog_refreshes_total"), what="metrics",
                                   operator=operator)
    assert value(samples, "toolcatalog_syncs_total", kind="ToolServer", trigger="create", result="Succeeded",
                 reason="") == 1
    assert value(samples, "toolcatalog_syncs_total", kind="ToolServer", trigger="create", result="Failed",
                 reason="ServerUnavailable") == 1
    assert value(samples, "toolcatalog_refreshes_total", kind="ToolServer", result="Succeeded") == 1
    assert value(samples, "toolcatalog_tool_changes_total", kind="ToolServer", change="new") == 4  # 3 + 1
    assert value(samples, "toolcatalog_tools", kind="ToolServer", namespace=api.ns, name="good") == 4
    assert value(samples, "toolcatalog_ready", kind="ToolServer", namespace=api.ns, name="good") == 1
    assert value(samples, "toolcatalog_ready", kind="ToolServer", namespace=api.ns, name="down") == 0
    assert value(samples, "toolcatalog_sync_duration_seconds_count", kind="ToolServer") >= 3


def scrape_when(port: int, name: str):
    try:
        samples = scrape(port)
    except OSError:
        return None
    return samples if any(key[0] == name for key in samples) else None


async def test_the_verified_timestamp_moves_with_every_verification_status_does_not_record(api, start_operator,
                                                                                         waiter):
    """Between status reports (--status-report-interval, 5 minutes by default) an unchanged resync writes
    nothing to the API server; the metric still says when the catalog was last verified."""
    from datetime import datetime

    port = free_port()
    operator = start_operator(args=["--metrics-port", str(port), "--metrics-address", "127.0.0.1"])
    with McpTestServer(tools=make_tools(2)) as server:
        await api.create(toolserver("fresh", server.url, sync={"ttlSeconds": 1}))
        recorded = await waiter.status(TS, "fresh", lambda o: (o["status"].get("lastSync") or {}).get("trigger")
                                       == "schedule", "the first resync", operator=operator)
        verified_at = datetime.fromisoformat(recorded["status"]["cache"]["verifiedAt"]).timestamp()

        def later_verification():
            samples = scrape_when(port, "toolcatalog_catalog_verified_timestamp_seconds")
            seen = samples and value(samples, "toolcatalog_catalog_verified_timestamp_seconds", kind="ToolServer",
                                     namespace=api.ns, name="fresh")
            return seen if seen and seen >= verified_at + 2 else None
        await wait_until(later_verification, what="a verification two seconds after the recorded one",
                         operator=operator)
        assert (await api.get(TS, api.ns, "fresh"))["status"] == recorded["status"]
