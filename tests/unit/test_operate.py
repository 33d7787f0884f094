"""The operating pieces in-process: JSON log lines and the per-sync line (handlers/logs.py), the watches'
health check and readiness (handlers/health.py), and where a shutdown may cut a sync (handlers/drain.py).
The same behaviours end to end: tests/e2e/test_operate.py."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import kopf
import pytest

from toolcatalog.api import constants as c
from toolcatalog.api.models import ErrorInfo, LastSync, Status
from toolcatalog.api.redact import Redactor
from toolcatalog.cli import configure_logging
from toolcatalog.config import OperatorConfig
from toolcatalog.engine.objects import ObjectCache
from toolcatalog.engine.reconciler import Outcome
from toolcatalog.handlers.drain import Drain
from toolcatalog.handlers.health import Readiness, WatchHealth, exact_namespaces, namespace_matches
from toolcatalog.handlers.logs import log_sync, sync_fields
from toolcatalog.reconcile.catalog import CatalogDiff
from toolcatalog.reconcile.decide import Decision
from toolcatalog.reconcile.plan import Plan

TOKEN = "unit-Secret-Token-0042"


# ------------------------------------------------------------------------------ logs


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO, Redactor]]:
    """The operator's logging as `--log-format json` configures it (kopf's JSON formatter, the redacting
    filter, StructuredFields), its output into a string; the root logger restored afterwards."""
    root, asyncio_logger = logging.getLogger(), logging.getLogger("asyncio")
    saved = (root.handlers[:], root.level, asyncio_logger.handlers[:], asyncio_logger.propagate)
    redactor = Redactor()
    root.handlers[:] = []               # pytest's own handlers get no filters of ours
    configure_logging(OperatorConfig(log_format="json", verbose=True), redactor)
    stream = io.StringIO()
    (handler,) = root.handlers
    handler.setStream(stream)
    logger = logging.getLogger("test.operate.json")
    try:
        yield logger, stream, redactor
    finally:
        root.handlers[:], asyncio_logger.handlers[:], asyncio_logger.propagate = saved[0], saved[2], saved[3]
        root.setLevel(saved[1])


def outcome(result: str = "Succeeded", reason: str | None = None, trigger: str = "refresh") -> Outcome:
    error = ErrorInfo(reason=reason, message=f"server said {TOKEN}") if reason else None
    status = Status(tool_count=4, last_sync=LastSync(trigger=trigger, started_at="2026-01-01T00:00:00Z",
                                                     completed_at="2026-01-01T00:00:01Z", duration_ms=37,
                                                     result=result, error=error))
    plan = Plan(status=status, diff=CatalogDiff(new=["a", "b"], removed=["c"], changed=[]), synced=True)
    return Outcome(("ToolServer", "team-a", "tasks"), Decision(action="sync", trigger=trigger), plan)


def test_a_json_line_is_kopfs_json_format_with_the_sync_fields_at_the_top_level(captured):
    logger, stream, _ = captured
    logger.info("hello %s", "world", extra={"sync": {"kind": "ToolServer", "name": "tasks", "new": 2},
                                            "other": [1, "x"]})
    line = json.loads(stream.getvalue())
    assert line["message"] == "hello world" and line["severity"] == "info" and line["logger"] == "test.operate.json"
    assert line["kind"] == "ToolServer" and line["name"] == "tasks" and line["new"] == 2 and line["other"] == [1, "x"]
    assert "sync" not in line
    assert datetime.fromisoformat(line["timestamp"]).utcoffset() == timedelta(0)
    assert "\n" not in stream.getvalue().rstrip("\n")


def test_a_kopf_per_object_line_carries_the_object_it_is_about(captured):
    _, stream, _ = captured
    body = kopf.Body({"apiVersion": c.API_VERSION, "kind": "ToolServer",
                      "metadata": {"namespace": "team-a", "name": "tasks", "uid": "u-1"}})
    kopf.LocalObjectLogger(body=body, settings=kopf.OperatorSettings()).warning("about it")
    line = json.loads(stream.getvalue())
    assert line["message"] == "about it" and line["severity"] == "warn" and line["logger"] == "kopf.objects"
    assert line["object"] == {"apiVersion": c.API_VERSION, "kind": "ToolServer", "namespace": "team-a",
                              "name": "tasks", "uid": "u-1"}
    assert "settings" not in line and "k8s_skip" not in line and "k8s_ref" not in line


def test_json_lines_mask_every_credential_in_every_field_and_the_traceback(captured):
    logger, stream, redactor = captured
    redactor.add(TOKEN)
    body = kopf.Body({"apiVersion": c.API_VERSION, "kind": "ToolServer",
                      "metadata": {"namespace": "team-a", "name": f"n-{TOKEN}", "uid": "u-1"}})
    try:
        raise ValueError(f"boom {TOKEN}")
    except ValueError:
        logger.exception("failed with %s", TOKEN, stack_info=True, extra={
            "sync": {"error": f"said {TOKEN}", f"key-{TOKEN}": "k"},
            "nested": {"deep": [f"x{TOKEN}y", ValueError(TOKEN)], "url": f"http://u:{TOKEN}@127.0.0.1/"},
            "plain": f"Bearer {TOKEN}"})
    kopf.LocalObjectLogger(body=body, settings=kopf.OperatorSettings()).info("object %s", TOKEN)
    logger.info({"message": f"a dict {TOKEN}", "field": [TOKEN]})          # python-json-logger's own form
    text = stream.getvalue()
    for form in (TOKEN, base64.b64encode(TOKEN.encode()).decode().rstrip("=")):
        assert form not in text
    first, second, third = (json.loads(line) for line in text.splitlines())
    assert first["message"] == "failed with ***" and first["error"] == "said ***" and first["key-***"] == "k"
    assert first["nested"] == {"deep": ["x***y", "***"], "url": "http://***@127.0.0.1/"}
    assert first["plain"] == "***" and "boom ***" in first["exc_info"] and "test_operate.py" in first["stack_info"]
    assert second["message"] == "object ***" and second["object"]["name"] == "n-***"
    assert third["message"] == "a dict ***" and third["field"] == ["***"] and third["logger"] == "test.operate.json"


def test_a_record_through_two_handlers_gives_the_same_line_twice(captured):
    logger, stream, redactor = captured
    redactor.add(TOKEN)
    first = logging.getLogger().handlers[0]
    other = io.StringIO()
    second = logging.StreamHandler(other)
    second.setFormatter(first.formatter)
    for attached in first.filters:
        second.addFilter(attached)
    logging.getLogger().addHandler(second)
    logger.warning("twice %s", TOKEN, extra={"sync": {"name": "tasks", "error": TOKEN}})
    line = json.loads(stream.getvalue())
    assert json.loads(other.getvalue()) | {"timestamp": ""} == line | {"timestamp": ""}
    assert line["message"] == "twice ***" and line["name"] == "tasks" and line["error"] == "***"


def test_the_sync_line_has_resource_trigger_result_reason_duration_and_diff_counts():
    fields = sync_fields(outcome("Failed", "ServerUnavailable"))
    assert fields == {"kind": "ToolServer", "namespace": "team-a", "name": "tasks", "trigger": "refresh",
                      "result": "Failed", "reason": "ServerUnavailable", "durationMs": 37, "totalMs": 0,
                      "cacheWritten": False, "tools": 4, "new": 2, "removed": 1, "changed": 0,
                      "error": f"server said {TOKEN}"}
    assert sync_fields(Outcome(("ToolServer", "a", "b"), Decision(action="wait"))) is None


def test_log_sync_logs_success_at_info_and_failure_at_warning(caplog):
    caplog.set_level(logging.INFO, logger="toolcatalog.sync")
    log_sync(outcome())
    log_sync(outcome("Failed", "Timeout", trigger="schedule"))
    first, second = caplog.records
    assert first.levelno == logging.INFO and first.getMessage() == (
        "ToolServer team-a/tasks: refresh sync Succeeded in 37 ms; 4 usable tools, 2 new, 1 removed, 0 changed")
    assert second.levelno == logging.WARNING and "schedule sync Failed (Timeout)" in second.getMessage()
    assert second.sync["reason"] == "Timeout"  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------ health


def test_namespace_patterns_are_kopfs():
    assert namespace_matches("team-a", ["team-*"]) and not namespace_matches("ops", ["team-*"])
    assert namespace_matches("team-a", ["team-*,!team-b"]) and not namespace_matches("team-b", ["team-*,!team-b"])
    assert namespace_matches("x", ["!y"]) and namespace_matches("ops", ["team-*", "ops"])
    # kopf's rule exactly (its documented examples): later inclusive globs only re-match what the first matched.
    assert not namespace_matches("team-b", ["team-a,team-b"])
    pattern = ["myapp-*, !*-pr-*, *pr-123"]
    assert namespace_matches("myapp-pr-123", pattern) and namespace_matches("myapp-live", pattern)
    assert not namespace_matches("myapp-pr-456", pattern) and not namespace_matches("otherapp-pr-123", pattern)
    assert namespace_matches("otherapp-pr-123", ["!*-pr-*, *pr-123"])
    assert exact_namespaces(["a", "b"]) and not exact_namespaces(["a", "team-*"]) and not exact_namespaces([])


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.failing = False

    def put(self, kind: str, namespace: str, name: str, version: str, uid: str = "") -> dict[str, Any]:
        body = {"metadata": {"namespace": namespace, "name": name, "uid": uid or f"uid-{name}",
                             "resourceVersion": version}, "spec": {"url": "http://127.0.0.1:1/mcp"}}
        self.objects[(kind, namespace, name)] = body
        return body

    async def list_metadata(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        if self.failing:
            from toolcatalog.kube.errors import ApiError
            raise ApiError(0, "Unavailable", "cannot reach the API server")
        return [body["metadata"] for (k, ns, _), body in sorted(self.objects.items())
                if k == kind and (namespace is None or ns == namespace)]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_the_health_check_tells_a_passing_lag_from_a_stall():
    kube, cache, clock = FakeKube(), ObjectCache(), Clock()
    health = WatchHealth(cache, kube, stall_after=60, clock=clock)  # type: ignore[arg-type]
    cache.observe(c.KIND_TOOLSERVER, kube.put(c.KIND_TOOLSERVER, "a", "one", "10"))
    verdict = await health.check()
    assert (verdict.listed, verdict.behind, verdict.missing, verdict.stalled) == (1, 0, 0, [])

    kube.put(c.KIND_TOOLSERVER, "a", "one", "11")          # a change the watch has not delivered (yet)
    kube.put(c.KIND_CONNECTORCONFIG, "a", "two", "12")     # a new one neither
    clock.now += 59
    verdict = await health.check()
    assert (verdict.behind, verdict.missing, verdict.stalled) == (2, 1, [])
    clock.now += 30                                       # 30 s after they were first seen behind: fine
    assert (await health.check()).stalled == []
    clock.now += 31
    verdict = await health.check()
    assert verdict.stalled == ["ToolServer a/one (61s)", "ConnectorConfig a/two (61s)"]

    cache.observe(c.KIND_TOOLSERVER, kube.objects[(c.KIND_TOOLSERVER, "a", "one")])     # delivered at last
    kube.put(c.KIND_CONNECTORCONFIG, "a", "two", "13")     # changed again: its lag starts afresh
    verdict = await health.check()
    assert (verdict.behind, verdict.stalled) == (1, [])


async def test_deletions_missed_count_and_other_shards_and_namespaces_do_not():
    kube, cache, clock = FakeKube(), ObjectCache(), Clock()
    mine = lambda meta: meta["uid"] != "theirs"  # noqa: E731
    health = WatchHealth(cache, kube, namespaces=("team-*",), stall_after=10, clock=clock, owns=mine)  # type: ignore[arg-type]
    kube.put(c.KIND_TOOLSERVER, "team-a", "theirs", "5", uid="theirs")   # another shard's: never cached here
    kube.put(c.KIND_TOOLSERVER, "ops", "elsewhere", "6")                 # not a watched namespace
    cache.observe(c.KIND_TOOLSERVER, kube.put(c.KIND_TOOLSERVER, "team-b", "gone", "7"))
    del kube.objects[(c.KIND_TOOLSERVER, "team-b", "gone")]              # deleted; the watch missed it
    verdict = await health.check()
    assert (verdict.listed, verdict.behind, verdict.missing, verdict.gone) == (0, 0, 0, 1)
    clock.now += 10
    assert (await health.check()).stalled == ["ToolServer team-b/gone (10s)"]


async def test_an_api_server_out_of_reach_is_no_stall():
    kube = FakeKube()
    kube.failing = True
    verdict = await WatchHealth(ObjectCache(), kube, stall_after=0).check()  # type: ignore[arg-type]
    assert verdict.stalled == [] and "cannot reach the API server" in (verdict.error or "")


async def test_readiness_waits_for_the_listing_then_for_the_backlog():
    kube, cache = FakeKube(), ObjectCache()
    body = kube.put(c.KIND_TOOLSERVER, "a", "one", "1")
    backlog = [3]
    readiness = Readiness(WatchHealth(cache, kube), lambda: backlog[0], poll=0.01)  # type: ignore[arg-type]
    task = asyncio.ensure_future(readiness.run())
    await asyncio.sleep(0.05)
    assert readiness.answer() == (503, {"ready": False, "state": "waiting for the initial listing: 1 of 1 "
                                                                    "resources not delivered by the watches yet"})
    cache.observe(c.KIND_TOOLSERVER, body)
    await asyncio.sleep(0.05)
    assert readiness.answer()[1]["state"] == "taking every resource once"
    backlog[0] = 0
    await asyncio.wait_for(task, 1)
    assert readiness.answer() == (200, {"ready": True, "state": "ready"})
    readiness.stopping = True
    assert readiness.answer()[0] == 503


# ------------------------------------------------------------------------------ drain


class SlowStore:
    """Every call waits on its event: reads forever, writes until released."""

    def __init__(self) -> None:
        self.release_writes = asyncio.Event()
        self.wrote: list[str] = []

    async def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        await asyncio.Event().wait()
        return None

    async def patch_configmap(self, namespace: str, name: str, patch: Any) -> dict[str, Any]:
        await self.release_writes.wait()
        self.wrote.append("configmap")
        return {}

    async def patch_status(self, kind: str, namespace: str, name: str, patch: Any) -> dict[str, Any]:
        self.wrote.append("status")
        return {}


async def test_a_shutdown_cuts_syncs_that_read_and_lets_those_that_write_finish():
    drain, slow = Drain(), SlowStore()
    store = drain.store(slow)  # type: ignore[arg-type]

    async def reading() -> None:
        await store.read_secret("a", "s")

    async def writing() -> None:
        await store.patch_configmap("a", "cm", {})
        with drain.cuttable():              # a sync that has begun to write is never cut, even here
            await asyncio.sleep(0)
        await store.patch_status("ToolServer", "a", "ts", {})

    reader, writer = asyncio.ensure_future(reading()), asyncio.ensure_future(writing())
    await asyncio.sleep(0.01)
    stopping = asyncio.ensure_future(drain.stop(grace=0.05))
    await asyncio.sleep(0.2)
    assert reader.cancelled() and drain.cut == 1 and stopping.done()
    assert not writer.done()
    slow.release_writes.set()
    await writer
    assert slow.wrote == ["configmap", "status"]
    with pytest.raises(asyncio.CancelledError):
        await store.read_secret("a", "after the stop")


async def test_a_read_that_ends_within_the_grace_is_not_cut():
    drain = Drain()

    async def quick() -> str:
        with drain.cuttable():
            await asyncio.sleep(0.05)
        return "done"

    task = asyncio.ensure_future(quick())
    await asyncio.sleep(0.01)
    await drain.stop(grace=1.0)
    assert await task == "done" and drain.cut == 0
