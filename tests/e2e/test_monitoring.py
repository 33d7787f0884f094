"""What a kube-prometheus user installs with the operator, checked with Prometheus itself.

- The alerts (deploy/helm/toolcatalog/monitoring/prometheusrule.yaml, the one file the kustomize component
  and the Helm chart ship) pass `promtool check rules`, and the unit tests of monitoring/alerts_test.yaml
  with their real durations in simulated time (`promtool test rules`).
- A real Prometheus (Debian's, `make prometheus`) on 127.0.0.1, with its own configuration file, scrapes
  the operator every second and evaluates the same rules, each `for` cut to 2 s (the expressions are the
  shipped ones, verbatim): the failing-sync alert fires when an MCP server goes down and resolves when
  it comes back.
- Every query of the Grafana dashboard (monitoring/dashboard.json) parses and returns series from that
  Prometheus.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.k8s import TS, condition, toolserver, wait_until
from toolcatalog.api import constants as c
from toolcatalog_dev.mcpserver import McpTestServer, free_port, make_tools

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "deploy" / "helm" / "toolcatalog" / "monitoring"
ALERT_TESTS = Path(__file__).parent / "monitoring" / "alerts_test.yaml"
RATE_INTERVAL = "30s"           # what Grafana's $__rate_interval stands for at this scrape interval


@pytest.fixture(scope="session")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is not installed: `make prometheus` installs it (Debian's prometheus package)")
    return found


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    found = shutil.which("prometheus")
    if found is None:
        pytest.fail("prometheus is not installed: `make prometheus` installs it (Debian's prometheus package)")
    return found


def shipped_groups() -> list[dict[str, Any]]:
    rule = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    assert rule["kind"] == "PrometheusRule"
    return list(rule["spec"]["groups"])


def write_rules(path: Path, hold: str | None = None) -> Path:
    """The shipped groups as a Prometheus rule file; `hold`: every rule's `for` replaced by it."""
    groups = shipped_groups()
    if hold is not None:
        for group in groups:
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = hold
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


def dashboard_queries() -> list[str]:
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert len(queries) >= 20, "the dashboard lost its panels"
    return [query.replace("$__rate_interval", RATE_INTERVAL) for query in queries]


# ------------------------------------------------------------------------------ promtool


def test_promtool_checks_the_shipped_rules(promtool, tmp_path):
    rules = write_rules(tmp_path / "rules.yaml")
    result = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    count = sum(len(group["rules"]) for group in shipped_groups())
    assert f"SUCCESS: {count} rules found" in result.stdout


def test_promtool_unit_tests_of_the_alerts_pass(promtool, tmp_path):
    write_rules(tmp_path / "rules.yaml")
    shutil.copy(ALERT_TESTS, tmp_path / "alerts_test.yaml")
    result = subprocess.run([promtool, "test", "rules", "alerts_test.yaml"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    tested = {test["alertname"] for case in yaml.safe_load(ALERT_TESTS.read_text())["tests"]
              for test in case["alert_rule_test"]}
    shipped = {rule["alert"] for group in shipped_groups() for rule in group["rules"]}
    assert shipped - tested <= {"ToolCatalogSlowSyncs", "ToolCatalogWorkQueueBacklog"}   # quantiles: checked live


# ------------------------------------------------------------------------------ a real Prometheus


class Prometheus:
    """Prometheus on 127.0.0.1 with a configuration of the test's own: scrape and evaluate every second."""

    def __init__(self, binary: str, workdir: Path, *, target: str, rules: Path) -> None:
        self.port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules)],
            "scrape_configs": [{"job_name": "toolcatalog", "static_configs": [{"targets": [target]}]}],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log_path = workdir / "prometheus.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [binary, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def get(self, path: str, **query: str) -> Any:
        url = f"http://127.0.0.1:{self.port}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            return json.loads(error.read() or b"{}")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def query(self, expr: str) -> dict[str, Any]:
        return dict(self.get("/api/v1/query", query=expr))

    def alerts(self, alertname: str, state: str | None = None, **labels: str) -> list[dict[str, Any]]:
        found = self.get("/api/v1/alerts")["data"]["alerts"]
        return [alert for alert in found if alert["labels"].get("alertname") == alertname
                and (state is None or alert["state"] == state)
                and all(alert["labels"].get(key) == value for key, value in labels.items())]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def start_prometheus(prometheus_bin: str, tmp_path: Path) -> Iterator[Callable[..., Prometheus]]:
    started: list[Prometheus] = []

    def start(target: str, rules: Path) -> Prometheus:
        workdir = tmp_path / f"prometheus-{len(started)}"
        workdir.mkdir()
        started.append(Prometheus(prometheus_bin, workdir, target=target, rules=rules))
        return started[-1]

    yield start
    for prometheus in started:
        prometheus.stop()


async def call(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """In a thread: the emulator serves on this test's event loop."""
    return await asyncio.to_thread(function, *args, **kwargs)


def synced(obj: dict[str, Any]) -> bool:
    return condition(obj, "Synced").get("status") == "True"


async def refresh(api: Any, name: str, token: str) -> None:
    await api.annotate(TS, api.ns, name, {c.ANN_REFRESH: token, c.ANN_REFRESH_FORCE: token})


@pytest.mark.timeout(240)
async def test_a_real_prometheus_fires_the_failing_sync_alert_and_resolves_it_and_answers_the_dashboard(
        api, start_operator, waiter, start_prometheus, tmp_path):
    port = free_port()
    operator = start_operator(args=["--metrics-port", str(port), "--metrics-address", "127.0.0.1"])
    with McpTestServer(tools=make_tools(3)) as server:
        await api.create(toolserver("flaky", server.url, sync={"minIntervalSeconds": 0}))
        await waiter.status(TS, "flaky", synced, "first sync", operator=operator)
        prometheus = start_prometheus(f"127.0.0.1:{port}", write_rules(tmp_path / "rules.yaml", hold="2s"))
        await wait_until(lambda: call(prometheus.ready), timeout=30, what="Prometheus ready")
        scraped = f'toolcatalog_consecutive_sync_failures{{name="flaky",namespace="{api.ns}"}}'

        async def values() -> list[float]:
            result = (await call(prometheus.query, scraped))["data"]["result"]
            return [float(series["value"][1]) for series in result]

        assert await wait_until(values, timeout=30, what="Prometheus scraped the operator") == [0.0]
        assert not await call(prometheus.alerts, "ToolCatalogSyncFailing", name="flaky")

        server.stop()                                           # the MCP server goes down
        started = time.monotonic()
        await refresh(api, "flaky", "down")
        await waiter.status(TS, "flaky", lambda o: condition(o, "Synced").get("reason") == "ServerUnavailable",
                            "the sync failed", operator=operator)
        (firing,) = await wait_until(lambda: call(prometheus.alerts, "ToolCatalogSyncFailing", "firing", name="flaky"),
                                     timeout=60, what="ToolCatalogSyncFailing to fire", operator=operator)
        print(f"\nToolCatalogSyncFailing fired {time.monotonic() - started:.1f}s after the server went down "
              "(for: 2s, scrape and evaluation every 1s)")
        assert firing["labels"] | {"namespace": api.ns, "kind": "ToolServer", "severity": "warning"} == \
            firing["labels"]
        assert firing["annotations"]["summary"] == f"ToolServer {api.ns}/flaky: its syncs keep failing"

        server.start()                                          # ... and comes back on the same port
        await refresh(api, "flaky", "up")
        await waiter.status(TS, "flaky", lambda o: synced(o) and o["status"]["lastRefresh"]["token"] == "up",
                            "synced again", operator=operator)
        await wait_until(lambda: _none(call(prometheus.alerts, "ToolCatalogSyncFailing", name="flaky")),
                         timeout=60, what="ToolCatalogSyncFailing to resolve", operator=operator)

        # Every query of the dashboard parses and returns series.
        empty, failed = [], []
        for query in dashboard_queries():
            answer = await call(prometheus.query, query)
            if answer.get("status") != "success":
                failed.append(f"{query}: {answer.get('error')}")
            elif not answer["data"]["result"]:
                empty.append(query)
        assert not failed, "queries Prometheus refused:\n" + "\n".join(failed)
        assert not empty, "queries that returned no series:\n" + "\n".join(empty)
    assert "level=error" not in prometheus.log(), prometheus.log()[-3000:]     # e.g. a rule it cannot evaluate


async def _none(pending: Any) -> bool:
    return not await pending
