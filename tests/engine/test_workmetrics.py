"""controller-runtime's metrics of the engine, read back from the Prometheus registry the operator serves."""

from __future__ import annotations

import asyncio
import itertools

from prometheus_client import REGISTRY

from tests.engine.fakes import World
from tests.engine.test_runtime import SlowReconciler, wait_for
from toolcatalog.engine.runtime import Engine
from toolcatalog.engine.workmetrics import ControllerMetrics
from toolcatalog.kube.errors import ApiError

_names = itertools.count()


def sample(metric: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(metric, labels)


async def test_reconciles_are_counted_by_result_and_api_failures_by_reason():
    name = f"test-{next(_names)}"
    world = World()
    good, throttled = world.apply("good"), world.apply("throttled")
    metrics = ControllerMetrics(name)
    engine = Engine(world.reconciler, workers=1, observer=metrics)
    metrics.watch(engine)
    assert sample("toolcatalog_reconcile_total", controller=name, result="error") == 0     # every result from 0
    engine.start()
    engine.queue.add(good)
    await wait_for(lambda: sample("toolcatalog_reconcile_total", controller=name, result="requeue_after") == 1)
    world.kube.fail["create_configmap"] = ApiError.from_response(
        503, b'{"kind":"Status","reason":"ServiceUnavailable"}', "ConfigMap", retry_after="30")
    engine.queue.add(throttled)
    await wait_for(lambda: sample("toolcatalog_reconcile_errors_total", controller=name) == 1)
    await engine.stop(timeout=1)
    assert sample("toolcatalog_reconcile_kube_api_errors_total", controller=name, reason="ServiceUnavailable") == 1
    assert sample("toolcatalog_reconcile_total", controller=name, result="success") == 0
    assert sample("toolcatalog_workqueue_adds_total", name=name, controller=name) == 2
    assert sample("toolcatalog_workqueue_retries_total", name=name, controller=name) == 1
    assert sample("toolcatalog_workqueue_work_duration_seconds_count", name=name, controller=name) == 2
    assert sample("toolcatalog_workqueue_queue_duration_seconds_count", name=name, controller=name) == 2
    assert sample("toolcatalog_reconcile_time_seconds_count", controller=name) == 2
    assert sample("toolcatalog_max_concurrent_reconciles", controller=name) == 1
    assert sample("toolcatalog_max_slow_reconciles", controller=name) == 50


async def test_the_gauges_show_depth_busy_workers_slow_reconciles_and_unfinished_work_when_scraped():
    name = f"test-{next(_names)}"
    reconciler = SlowReconciler(seconds=0.0, hung={"hung-1", "hung-2", "hung-3"})
    metrics = ControllerMetrics(name)
    engine = Engine(reconciler, workers=1, slow_after=0.05, slow_capacity=1, observer=metrics)
    metrics.watch(engine)
    for hung in ("hung-1", "hung-2", "hung-3"):
        engine.queue.add(("ToolServer", hung, hung))
    assert sample("toolcatalog_workqueue_depth", name=name, controller=name) == 3
    engine.start()
    # hung-1 steps aside into the pool of one; hung-2 holds the worker; hung-3 waits.
    await wait_for(lambda: len(reconciler.started) == 2)
    await asyncio.sleep(0.1)
    assert sample("toolcatalog_workqueue_depth", name=name, controller=name) == 1
    assert sample("toolcatalog_active_workers", controller=name) == 1
    assert sample("toolcatalog_slow_reconciles", controller=name) == 1
    unfinished = sample("toolcatalog_workqueue_unfinished_work_seconds", name=name, controller=name)
    longest = sample("toolcatalog_workqueue_longest_running_processor_seconds", name=name, controller=name)
    assert unfinished is not None and longest is not None and unfinished > longest > 0.1
    await engine.stop(timeout=0.1)
    assert sample("toolcatalog_active_workers", controller=name) == 0
