"""docs/reference/metrics.md: every metric the operator serves on /metrics, from the Prometheus registry.

Every module of the shipped package is imported (so a metric defined anywhere is registered, as in
the running operator), then the registry is read: name, type and help. prometheus_client has no
public accessor for a metric's label names, so each labelled metric is given one child through its
public `labels()` (which refuses a wrong number of values) and the names are read off its sample.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

import toolcatalog

from .markdown import banner, code, prose, table

PREFIX = "toolcatalog_"
MAX_LABELS = 16


def _import_all() -> list[Any]:
    modules = []
    for info in pkgutil.walk_packages(toolcatalog.__path__, prefix="toolcatalog."):
        modules.append(importlib.import_module(info.name))
    return modules


def _label_names(metric: MetricWrapperBase) -> tuple[str, ...]:
    for count in range(1, MAX_LABELS + 1):
        values = [f"docgen-{i}" for i in range(count)]
        try:
            metric.labels(*values)
        except ValueError:
            continue
        try:
            for family in metric.collect():
                for sample in family.samples:
                    if list(sample.labels.values())[:count] == values:
                        return tuple(name for name in sample.labels if name != "le")
        finally:
            metric.remove(*values)
    return ()


def _exposed_name(name: str, kind: str) -> str:
    return name + "_total" if kind == "counter" else name


def collect() -> list[tuple[str, str, tuple[str, ...], str]]:
    """(name as exposed, type, label names, help) of every toolcatalog_ metric, sorted by name."""
    wrappers: dict[str, MetricWrapperBase] = {}
    for module in _import_all():
        for value in vars(module).values():
            if isinstance(value, MetricWrapperBase):
                family = next(iter(value.describe()))
                wrappers[family.name] = value
    found = []
    for family in REGISTRY.collect():
        if not family.name.startswith(PREFIX):
            continue
        metric = wrappers.get(family.name)
        if metric is None:
            raise RuntimeError(f"metric {family.name} is registered but no module of toolcatalog holds it at its "
                               "top level: define metrics at module level so their labels can be documented")
        found.append((_exposed_name(family.name, family.type), family.type, _label_names(metric),
                      family.documentation))
    return sorted(found)


def render() -> str:
    rows = [(code(name), kind, ", ".join(labels), prose(doc)) for name, kind, labels, doc in collect()]
    return "\n".join([
        banner("the Prometheus registry the operator builds (operator/toolcatalog/**: Counter, Gauge, Histogram)"),
        "# Metrics\n",
        "With `--metrics-port PORT` (the manifests use 9090, and a `toolcatalog-metrics` Service with the "
        "`prometheus.io/scrape` annotations), the operator serves these on `http://ADDR:PORT/metrics`, in the "
        "Prometheus text format:\n",
        table(("Metric", "Type", "Labels", "Help"), rows),
        "Besides these, the Prometheus client's own `process_*` and `python_*` metrics (CPU, memory, open files, "
        "the garbage collector), and a `*_created` series per counter and histogram: the time each series began. "
        "A histogram also has its `_bucket`, `_sum` and `_count` series.\n",
        "Label values are bounded sets (kinds, triggers, results, reasons, changes), plus `namespace` and `name` "
        "on the per-resource gauges, which are removed when their resource is deleted. "
        "[Monitoring](../how-to/monitoring.md) has a scrape example and alert rules.\n",
    ])
