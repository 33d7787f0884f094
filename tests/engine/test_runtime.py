"""The engine's workers: slow reconciles step aside, and a stop waits for every reconcile in flight.

On looptime's fake loop time: the sleeps cost no real time, and each test asserts how much loop time passed
(when a reconcile stepped aside, when a stop returned).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from toolcatalog.api.resource import ObjectKey
from toolcatalog.engine.objects import ObjectCache
from toolcatalog.engine.runtime import Engine


class SlowReconciler:
    """Reconciles that take `seconds`, some of them forever; records what started and what finished."""

    def __init__(self, seconds: float, hung: set[str] | None = None) -> None:
        self.objects = ObjectCache()
        self.seconds, self.hung = seconds, hung or set()
        self.started: list[str] = []
        self.finished: list[str] = []

    async def reconcile(self, key: ObjectKey) -> float | None:
        self.started.append(key[2])
        await asyncio.sleep(3600 if key[2] in self.hung else self.seconds)
        self.finished.append(key[2])
        return None

    def forget(self, key: ObjectKey, uid: str | None = None) -> None:
        pass


def engine_for(reconciler: Any, **kwargs: Any) -> Engine:
    return Engine(reconciler, **kwargs)


pytestmark = pytest.mark.looptime


async def test_a_stop_waits_for_a_reconcile_that_steps_aside_while_stopping(looptime):
    reconciler = SlowReconciler(seconds=0.5)
    engine = engine_for(reconciler, workers=1, slow_after=0.2)
    engine.start()
    engine.queue.add(("ToolServer", "ns", "a"))
    while not reconciler.started:
        await asyncio.sleep(0)
    assert looptime == 0
    await engine.stop(timeout=5)        # begins before the reconcile steps aside into the slow pool (at 0.2)
    assert reconciler.finished == ["a"]
    assert float(looptime) == pytest.approx(0.5)   # it waited for the reconcile to end, not for the deadline


async def test_hung_reconciles_step_aside_and_the_next_key_is_taken(looptime):
    reconciler = SlowReconciler(seconds=0.0, hung={"hung-1", "hung-2"})
    engine = engine_for(reconciler, workers=1, slow_after=0.05)
    engine.start()
    for name in ("hung-1", "hung-2", "healthy"):
        engine.queue.add(("ToolServer", "ns", name))
    while "healthy" not in reconciler.finished:
        await asyncio.sleep(0.001)
    # Each hung reconcile held the only worker for slow_after, then stepped aside.
    assert float(looptime) == pytest.approx(0.1, abs=0.002)
    assert reconciler.finished == ["healthy"] and engine.slow == 2
    await engine.stop(timeout=0.1)      # the hung ones are cut at the deadline
    assert engine.slow == 0
    assert float(looptime) == pytest.approx(0.2, abs=0.002)


async def test_one_namespace_holds_at_most_half_of_the_slow_pool(looptime):
    hung = {f"hung-{i}" for i in range(4)}
    reconciler = SlowReconciler(seconds=0.0, hung=hung)
    engine = engine_for(reconciler, workers=1, slow_after=0.05, slow_capacity=4)
    engine.start()
    for name in sorted(hung):
        engine.queue.add(("ToolServer", "team-a", name))
    engine.queue.add(("ToolServer", "team-b", "healthy"))
    await asyncio.sleep(600)            # ten minutes of loop time: nothing more is ever started
    # Two of team-a's hung reconciles hold the pool's half; the third holds the only worker, so team-b's key
    # waits behind it (backpressure) and the fourth never starts.
    assert engine.slow == 2 and reconciler.started == ["hung-0", "hung-1", "hung-2"]
    await engine.stop(timeout=0.1)
    assert engine.slow == 0


class CountingReconciler(SlowReconciler):
    """SlowReconciler that also records how many reconciles ran at once, at most."""

    def __init__(self, seconds: float, hung: set[str] | None = None) -> None:
        super().__init__(seconds, hung)
        self.running = self.most = 0

    async def reconcile(self, key: ObjectKey) -> float | None:
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            return await super().reconcile(key)
        finally:
            self.running -= 1


async def wait_for(predicate: Any, seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not within the deadline")


async def test_at_most_the_workers_plus_the_slow_pool_run_at_once_and_zero_slow_means_the_workers_alone():
    for slow_capacity, expected in ((3, 5), (0, 2)):
        hung = {f"hung-{i}" for i in range(10)}
        reconciler = CountingReconciler(seconds=0.0, hung=hung)
        engine = engine_for(reconciler, workers=2, slow_after=0.02, slow_capacity=slow_capacity)
        engine.start()
        for index, name in enumerate(sorted(hung)):
            engine.queue.add(("ToolServer", f"team-{index}", name))     # one namespace each: no fair share cap
        await wait_for(lambda: len(reconciler.started) >= expected)     # noqa: B023
        await asyncio.sleep(0.2)                # time for more to start, were the bound not kept
        assert reconciler.most == expected and engine.busy == 2 and engine.slow == slow_capacity
        await engine.stop(timeout=0.1)


async def test_a_retry_after_from_the_api_server_holds_the_key_back_at_least_that_long():
    from tests.engine.fakes import World
    from toolcatalog.kube.errors import ApiError

    world = World()
    key = world.apply("throttled")
    world.kube.fail["create_configmap"] = ApiError.from_response(
        429, b'{"kind":"Status","reason":"TooManyRequests","message":"too many requests"}', "ConfigMap",
        retry_after="7")
    seen = Observer()
    engine = Engine(world.reconciler, workers=1, observer=seen)
    engine.start()
    engine.queue.add(key)
    await wait_for(lambda: seen.results)
    await engine.stop(timeout=1)
    assert seen.results == [("error", "TooManyRequests")]
    due = engine.queue.is_due_later(key)
    assert due is not None and due > 6.5        # the backoff alone would retry within a second
    assert world.status("throttled") == {}      # nothing written


class Observer:
    def __init__(self) -> None:
        self.results: list[tuple[str, str | None]] = []

    def added(self) -> None:
        pass

    def taken(self, waited: float) -> None:
        pass

    def finished(self, worked: float) -> None:
        pass

    def retried(self) -> None:
        pass

    def reconciled(self, result: str, seconds: float, api_reason: str | None = None) -> None:
        self.results.append((result, api_reason))


async def test_the_echo_of_our_own_status_write_wakes_no_reconcile_but_a_newer_event_does():
    engine = engine_for(SlowReconciler(0.0))
    key = ("ToolServer", "team-a", "demo")

    def body(version: str) -> dict[str, Any]:
        return {"metadata": {"namespace": "team-a", "name": "demo", "uid": "u1", "resourceVersion": version}}

    assert engine.observe("ToolServer", body("7")) is True and len(engine.queue) == 1
    assert await engine.queue.get() == key
    engine.queue.done(key)
    # The status write's answer went into the object cache already; its watch event brings the same version.
    engine.objects.observe("ToolServer", body("8"))
    assert engine.observe("ToolServer", body("8")) is False
    assert engine.echoes == 1 and len(engine.queue) == 0
    # Someone else's change (a newer version) is news.
    assert engine.observe("ToolServer", body("9")) is True and len(engine.queue) == 1
