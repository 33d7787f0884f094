"""The metrics every controller-runtime controller exports, for toolcatalog's one controller.

Named and labelled as controller-runtime and client-go name theirs, with the `toolcatalog_` prefix:
the work queue (`toolcatalog_workqueue_*{name, controller}`, client-go's workqueue metrics), the
reconciles (`toolcatalog_reconcile_*{controller}`) and the workers (`toolcatalog_active_workers`,
`toolcatalog_max_concurrent_reconciles`), so the dashboards and alerts written for those work here
with the prefix changed. Added: failures of the Kubernetes API by its Status reason, and the pool of
slow reconciles (README "Slow servers").

`ControllerMetrics` is the engine's observer (`EngineObserver`): counters and histograms are updated
as the queue and the reconciles report; gauges that change continuously (depth, unfinished work,
busy workers) are read from the engine when Prometheus scrapes.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram

from .runtime import ERROR, REQUEUE_AFTER, SUCCESS, Engine

CONTROLLER = "toolcatalog"      # one controller: one work queue and one pool of workers for both kinds

# client-go's buckets for the queue's histograms: 10 ns to 1000 s, by tens.
QUEUE_BUCKETS = tuple(10.0 ** exponent for exponent in range(-8, 4))
RECONCILE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0,
                     20.0, 30.0, 45.0, 60.0)

QUEUE_LABELS = ("name", "controller")
DEPTH = Gauge("toolcatalog_workqueue_depth", "Current depth of the work queue: keys waiting for a worker",
              QUEUE_LABELS)
ADDS = Counter("toolcatalog_workqueue_adds_total", "Total number of adds handled by the work queue", QUEUE_LABELS)
QUEUE_SECONDS = Histogram("toolcatalog_workqueue_queue_duration_seconds",
                          "How long in seconds a key stays in the work queue before a worker takes it",
                          QUEUE_LABELS, buckets=QUEUE_BUCKETS)
WORK_SECONDS = Histogram("toolcatalog_workqueue_work_duration_seconds",
                         "How long in seconds processing a key from the work queue takes", QUEUE_LABELS,
                         buckets=QUEUE_BUCKETS)
UNFINISHED = Gauge("toolcatalog_workqueue_unfinished_work_seconds",
                   "How many seconds of work has been done that is in progress and has not been observed by "
                   "work_duration. Large values indicate stuck reconciles", QUEUE_LABELS)
LONGEST = Gauge("toolcatalog_workqueue_longest_running_processor_seconds",
                "How many seconds the longest running reconcile has been running", QUEUE_LABELS)
RETRIES = Counter("toolcatalog_workqueue_retries_total", "Total number of retries handled by the work queue",
                  QUEUE_LABELS)

RECONCILES = Counter("toolcatalog_reconcile_total", "Total number of reconciliations per controller, by result "
                     "(success, error, requeue, requeue_after)", ["controller", "result"])
RECONCILE_ERRORS = Counter("toolcatalog_reconcile_errors_total", "Total number of reconciliation errors per "
                           "controller", ["controller"])
API_ERRORS = Counter("toolcatalog_reconcile_kube_api_errors_total", "Reconciliations that failed on the Kubernetes "
                     "API (and are retried with backoff), by the API's Status reason", ["controller", "reason"])
RECONCILE_SECONDS = Histogram("toolcatalog_reconcile_time_seconds", "Length of time per reconciliation per "
                              "controller", ["controller"], buckets=RECONCILE_BUCKETS)
MAX_RECONCILES = Gauge("toolcatalog_max_concurrent_reconciles", "Maximum number of concurrent reconciles per "
                       "controller: the workers (--max-concurrent-syncs)", ["controller"])
ACTIVE_WORKERS = Gauge("toolcatalog_active_workers", "Number of currently used workers per controller",
                       ["controller"])
SLOW = Gauge("toolcatalog_slow_reconciles", "Reconciles that stepped aside from their worker after running for "
             "2 s, and still run", ["controller"])
MAX_SLOW = Gauge("toolcatalog_max_slow_reconciles", "The most reconciles the slow pool holds (--max-slow-syncs)",
                 ["controller"])

RESULTS = (SUCCESS, ERROR, "requeue", REQUEUE_AFTER)
# The API's failures a healthy operator meets: their series exist from 0, so a rate() of them has a value.
COMMON_API_REASONS = ("TooManyRequests", "ServiceUnavailable", "InternalError", "Conflict", "Timeout")


class ControllerMetrics:
    """The engine's observer: controller-runtime's metrics for the controller `name`."""

    def __init__(self, name: str = CONTROLLER) -> None:
        self.name = name
        queue = (name, name)
        self._adds, self._retries = ADDS.labels(*queue), RETRIES.labels(*queue)
        self._waited, self._worked = QUEUE_SECONDS.labels(*queue), WORK_SECONDS.labels(*queue)
        self._errors, self._seconds = RECONCILE_ERRORS.labels(name), RECONCILE_SECONDS.labels(name)
        self._results = {result: RECONCILES.labels(name, result) for result in RESULTS}   # all exist from 0
        for reason in COMMON_API_REASONS:
            API_ERRORS.labels(name, reason)

    # -- the queue (QueueObserver) ------------------------------------------------------------

    def added(self) -> None:
        self._adds.inc()

    def taken(self, waited: float) -> None:
        self._waited.observe(waited)

    def finished(self, worked: float) -> None:
        self._worked.observe(worked)

    def retried(self) -> None:
        self._retries.inc()

    # -- the reconciles -------------------------------------------------------------------------

    def reconciled(self, result: str, seconds: float, api_reason: str | None = None) -> None:
        self._results[result].inc()
        self._seconds.observe(seconds)
        if result == ERROR:
            self._errors.inc()
            if api_reason is not None:
                API_ERRORS.labels(self.name, api_reason).inc()

    # -- gauges read at scrape time -------------------------------------------------------------

    def watch(self, engine: Engine) -> None:
        """Read the engine's gauges from now on, whenever Prometheus scrapes."""
        queue = (self.name, self.name)
        readings: list[tuple[Gauge, tuple[str, ...], Callable[[], float]]] = [
            (DEPTH, queue, lambda: len(engine.queue)),
            (UNFINISHED, queue, lambda: engine.queue.unfinished()[0]),
            (LONGEST, queue, lambda: engine.queue.unfinished()[1]),
            (MAX_RECONCILES, (self.name,), lambda: engine.workers),
            (ACTIVE_WORKERS, (self.name,), lambda: engine.busy),
            (SLOW, (self.name,), lambda: engine.slow),
            (MAX_SLOW, (self.name,), lambda: engine.slow_capacity),
        ]
        for gauge, labels, read in readings:
            gauge.labels(*labels).set_function(read)
