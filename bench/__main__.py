"""`make bench`: how fast and how lean the operator is, beside the floor, measured in one run on this machine.

    make bench                                  # the whole harness (about 50 minutes on 2 cores)
    make bench BENCH_ARGS=--quick               # small sizes, short runs (a few minutes)
    make bench BENCH_ARGS="--sizes 100,1000 --steady-seconds 600"
    make bench-profile                          # the same with py-spy profiles of the operator

Sections (--only picks some): floor (bare SDK session, raw HTTP on a warm connection, tools/list on an
open session: 1, 50 and 500 tools), refresh (annotation to answer, on the emulator and on the real
control plane, as ratios to the floor), converge (N ToolServers × 20 tools created at once on a fresh
real control plane, then idle and sizes; and 1,000 on servers with the mcp SDK's defaults, ttlMs 0 and
listChanged), steady (N with a short TTL for a while on tuned servers; N on servers with the SDK's
defaults, resyncing at the 60 s floor; a few 500-tool catalogs likewise), triggers (Secret rotation and
list-changed notification to resync), probes (what the liveness check costs the API server, by N up to
1000: bench/probes.py), allowlist (a notified rug pull until ToolHive's proxy denies the tool through the
operator's webhook, and each ToolAllowlist target, ContextForge included, withdraws it: the exposure
window through the real gateways), secrets (the operator's RSS and the bytes it receives with 5,000
unrelated 10 KiB Secrets in the cluster; --secrets-baseline REF: also with the operator code of REF),
ratelimit (N created at once with the client-side rate limit on and off: convergence, 429s and APF
queueing, API server CPU, another client's latency). Prints a table and writes
bench/results/<date>-<machine>.json. Every server listens on, and all traffic goes to, 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Coroutine
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import allowlist, floor, probes, ratelimit, refresh, scale, secrets, steady, triggers
from bench.common import REPO, McpFleet, emulator, log, operator_environment, real_cluster, workdir

SECTIONS = ("floor", "refresh", "converge", "steady", "triggers", "probes", "allowlist", "secrets",
            "ratelimit")
CATALOGS = [1, 50, 500]
PAGE_SIZE = 100
LARGE_TOOLS, LARGE_SERVERS = 500, 2      # the steady state of large catalogs


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="small and short: --sizes 100 --rounds 10 --idle-seconds 20 --steady-resources 200 "
                             "--steady-ttl 30 --steady-seconds 90 --sdk-resources 200 --sdk-seconds 150 "
                             "--large-resources 10 --trigger-rounds 3")
    parser.add_argument("--sizes", default=None, help="convergence sizes N, comma-separated (default 100,1000,5000)")
    parser.add_argument("--rounds", type=int, default=None, help="samples per latency figure (default 30)")
    parser.add_argument("--idle-seconds", type=float, default=None, help="idle measurement per size (default 60)")
    parser.add_argument("--steady-resources", type=int, default=None, help="steady state N (default 1000)")
    parser.add_argument("--steady-ttl", type=int, default=None, help="steady state ttlSeconds (default 120)")
    parser.add_argument("--steady-seconds", type=float, default=None, help="steady state duration (default 1800)")
    parser.add_argument("--sdk-resources", type=int, default=None,
                        help="resources on servers with the SDK's defaults, converge and steady (default 1000)")
    parser.add_argument("--sdk-seconds", type=float, default=None,
                        help="steady state on servers with the SDK's defaults, and of large catalogs (default 600)")
    parser.add_argument("--large-resources", type=int, default=None,
                        help=f"resources × {LARGE_TOOLS} tools in the large catalogs' steady state (default 40)")
    parser.add_argument("--trigger-rounds", type=int, default=None, help="samples per trigger latency (default 10)")
    parser.add_argument("--kube-qps", type=float, default=None, metavar="QPS",
                        help="also converge the largest N at or below 1000 with the operator's --kube-qps QPS "
                             "(burst 2×QPS), beside the default 100 (default 50; --quick: not)")
    parser.add_argument("--secrets-count", type=int, default=None,
                        help="unrelated Secrets of 10 KiB created in the secrets section (default 5000)")
    parser.add_argument("--secrets-baseline", default=None, metavar="REF",
                        help="the secrets section also runs the operator code of this git ref, to compare with")
    parser.add_argument("--ratelimit-resources", type=int, default=None, metavar="N",
                        help="ToolServers created at once to converge with the client-side rate limit on and off "
                             "(default 1000; --quick: 200)")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"sections to run, of {','.join(SECTIONS)}")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="record py-spy profiles of the operator (refresh, converge, steady) into DIR")
    parser.add_argument("--output", type=Path, default=None, help="the JSON file (default bench/results/...)")
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {"sizes": "100" if quick else "100,1000,5000", "rounds": 10 if quick else 30,
                "idle_seconds": 20.0 if quick else 60.0, "steady_resources": 200 if quick else 1000,
                "steady_ttl": 30 if quick else 120, "steady_seconds": 90.0 if quick else 1800.0,
                "sdk_resources": 200 if quick else 1000, "sdk_seconds": 150.0 if quick else 600.0,
                "large_resources": 10 if quick else 40,
                "trigger_rounds": 3 if quick else 10, "kube_qps": None if quick else 50.0,
                "secrets_count": 500 if quick else 5000,
                "ratelimit_resources": 200 if quick else 1000}
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.sizes = [int(part) for part in str(args.sizes).split(",") if part]
    args.only = [part for part in args.only.split(",") if part]
    unknown = set(args.only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    return args


def machine() -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    memory = next((int(line.split()[1]) // 1024 for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal")), 0)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                            check=False).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "operator"], cwd=REPO, capture_output=True,
                                text=True, check=False).stdout.strip())
    versions = {}
    for package in ("kopf", "mcp", "httpx2", "pydantic", "kmock", "uvicorn"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {"hostname": socket.gethostname(), "cpu": model, "cores": os.cpu_count(), "memory_mib": memory,
            "kernel": platform.release(), "python": platform.python_version(), "packages": versions,
            "commit": commit, "operator_code_modified_since_commit": dirty, "operator": operator_environment()}


def ratio(numerator: float, denominator: float) -> float:
    return round(numerator / denominator, 2) if denominator else float("nan")


async def run(args: argparse.Namespace, output: Path | None = None) -> dict[str, Any]:
    results: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine(),
                               "settings": {key: (str(value) if isinstance(value, Path) else value)
                                            for key, value in vars(args).items() if key != "output"},
                               "errors": {}}
    directory = workdir()
    for section, step in (("floor+refresh", _latency), ("converge", _converge), ("steady", _steady),
                          ("triggers", _triggers), ("probes", _probes), ("allowlist", _allowlist),
                          ("secrets", _secrets), ("ratelimit", _ratelimit)):
        try:
            await step(args, results, directory)
        except Exception as error:      # one section failing still leaves the others' figures
            log(f"{section} failed: {error!r}")
            results["errors"][section] = f"{type(error).__name__}: {error}"[:2000]
        if output is not None:      # what is measured so far survives a later failure or Ctrl-C
            output.write_text(json.dumps(results, indent=2) + "\n")
    results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    results["targets"] = targets(results)
    return results


async def _latency(args: argparse.Namespace, results: dict[str, Any], directory: Path) -> None:
    if "floor" not in args.only and "refresh" not in args.only:
        return
    with McpFleet(CATALOGS, page_size=PAGE_SIZE) as fleet:
        if "floor" in args.only:
            log("floor: bare SDK session, raw HTTP on a warm connection, tools/list on an open session")
            results["floor"] = await floor.measure(dict(zip(CATALOGS, fleet.urls, strict=True)), args.rounds)
        if "refresh" not in args.only:
            return
        results["refresh"] = {}
        for name, backend_cm in (("emulator", emulator), ("real", real_cluster)):
            log(f"refresh latency on the {name} API server")
            async with backend_cm(directory) as backend:
                results["refresh"][name] = await refresh.measure(backend, fleet, CATALOGS, args.rounds, directory,
                                                                 args.profile, f"refresh-{name}")
    for backend_name in results["refresh"]:
        for count in CATALOGS:
            figures = results["refresh"][backend_name][str(count)]
            base = (results.get("floor") or {}).get(str(count))
            if base:
                lat = figures["latency_ms"]
                figures["ratio_to_sdk_session"] = {q: ratio(lat[q], base["sdk_session_ms"][q]) for q in ("p50", "p95")}
                figures["ratio_to_raw_floor"] = {q: ratio(lat[q], base["raw_warm_ms"][q]) for q in ("p50", "p95")}


async def _converge(args: argparse.Namespace, results: dict[str, Any], directory: Path) -> None:
    if "converge" not in args.only:
        return
    results["converge"] = []
    for index, count in enumerate(args.sizes):
        results["converge"].append(await scale.run(
            count, directory, idle_seconds=args.idle_seconds, sizes=index == 0,
            profile_dir=args.profile if count == max(args.sizes) else None))
    if args.kube_qps and [count for count in args.sizes if count <= 1000]:
        count = max(count for count in args.sizes if count <= 1000)
        entry = await scale.run(count, directory, idle_seconds=0, sizes=False, profile_dir=None,
                                operator_args=("--kube-qps", f"{args.kube_qps:g}",
                                               "--kube-burst", str(int(2 * args.kube_qps))))
        entry["operator_flags"] = f"--kube-qps {args.kube_qps:g} --kube-burst {int(2 * args.kube_qps)}"
        results["converge"].append(entry)
    await _part(results, "converge_sdk", scale.run(args.sdk_resources, directory, idle_seconds=0, sizes=False,
                                                   profile_dir=args.profile, sdk_defaults=True))


async def _steady(args: argparse.Namespace, results: dict[str, Any], directory: Path) -> None:
    if "steady" not in args.only:
        return
    await _part(results, "steady", steady.run(args.steady_resources, args.steady_ttl, args.steady_seconds,
                                              directory, args.profile))
    await _part(results, "steady_sdk", steady.run(args.sdk_resources, None, args.sdk_seconds, directory,
                                                  args.profile, sdk_defaults=True))
    await _part(results, "steady_large", steady.run(args.large_resources, None, args.sdk_seconds, directory,
                                                    args.profile, tools=LARGE_TOOLS, servers=LARGE_SERVERS,
                                                    sdk_defaults=True))


async def _part(results: dict[str, Any], name: str, measure: Coroutine[Any, Any, dict[str, Any]]) -> None:
    """One measurement of a section: its failure is recorded, and the section's others still run."""
    try:
        results[name] = await measure
    except Exception as error:
        log(f"{name} failed: {error!r}")
        results["errors"][name] = f"{type(error).__name__}: {error}"[:2000]


async def _triggers(args: argparse.Namespace, results: dict[str, Any], directory: Path) -> None:
    if "triggers" in args.only:
        log("trigger latencies on the real control plane")
        async with real_cluster(directory) as backend:
            results["triggers"] = await triggers.measure(backend, args.trigger_rounds, directory)


async def _probes(args: argparse.Namespace, results: dict[str, Any], directory: Path) -> None:
    if "probes" in args.only:
        log("what the liveness check costs the real control plane")
        async with real_cluster(directory) as backend:
            results["probes"] = await probes.measure(backend, [size for size in args.sizes if size <= 1000],
                                                     args.trigger_rounds)


async def _allowlist(args: argparse.Namespace, results: dict[str, Any], directory: Path) -> None:
    if "allowlist" in args.only:
        log("ToolAllowlist exposure window on the real control plane")
        async with real_cluster(directory) as backend:
            results["allowlist"] = await allowlist.measure(backend, max(args.trigger_rounds, 2 * args.rounds // 3),
                                                           directory)


async def _secrets(args: argparse.Namespace, results: dict[str, Any], directory: Path) -> None:
    if "secrets" in args.only:
        results["secrets"] = await secrets.run(args.secrets_count, directory, REPO, args.secrets_baseline)


async def _ratelimit(args: argparse.Namespace, results: dict[str, Any], directory: Path) -> None:
    if "ratelimit" in args.only:
        results["ratelimit"] = await ratelimit.run(args.ratelimit_resources, directory)


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each figure the issue sets a target for, with the measured value and whether it holds."""
    rows: list[dict[str, Any]] = []

    def row(figure: str, value: Any, target: str, met: bool | None) -> None:
        rows.append({"figure": figure, "value": value, "target": target, "met": met})

    for backend, figures in (results.get("refresh") or {}).items():
        for count in CATALOGS:
            ratios = figures[str(count)].get("ratio_to_sdk_session")
            if not ratios:
                continue
            # The issue's bounds hold on the real control plane: at most half a bare SDK session for one tool,
            # at most one for 500; the emulator and 50 tools are measured.
            bound = {1: 0.5, 500: 1.0}.get(count) if backend == "real" else None
            row(f"refresh p50 / bare SDK session, {count} tools, {backend}", ratios["p50"],
                f"<= {bound:g}" if bound else "measured", ratios["p50"] <= bound if bound else None)
        if backend == "real" and "500" in figures:
            cpu = figures["500"]["operator_cpu_ms_per_refresh"]
            row("CPU per 500-tool refresh (real), ms", cpu, "<= 50", cpu <= 50)
    converged = {entry["resources"]: entry for entry in results.get("converge") or []
                 if not entry.get("operator_flags")}
    for entry in results.get("converge") or []:
        if entry.get("operator_flags"):
            row(f"{entry['resources']} × 20 tools converge with {entry['operator_flags']}, s",
                entry["converge_seconds"], "measured", None)
    for key, tools, bound in (("steady", 20, 4), ("steady_sdk", 20, 4), ("steady_large", 500, 15)):
        s = results.get(key)
        if not s:
            continue
        where = f"{s['resources']} × {tools} tools, {'SDK defaults' if key != 'steady' else 'tuned'}"
        row(f"CPU per unchanged sync ({where}), ms", s["operator_cpu_ms_per_sync"], f"<= {bound}",
            s["operator_cpu_ms_per_sync"] <= bound)
        per_sync = s["operator_api_requests_per_sync"]
        writes = sum(value for name, value in per_sync.items() if name.endswith(" configmaps")
                     and name.split()[0] in ("POST", "PUT", "PATCH"))
        row(f"ConfigMap writes per unchanged sync ({where})", writes, "0", writes == 0)
        body = s.get("request_body_bytes_per_sync", {}).get("PATCH toolservers")
        if body is not None:
            row(f"status patch bytes per unchanged sync ({where})", body, "<= 1024", body <= 1024)
    sdk = results.get("steady_sdk")
    if sdk:
        where = f"{sdk['resources']} resources, SDK defaults"
        row(f"steady state CPU ({where}), % of a core", sdk["operator_cpu_percent_of_a_core"], "<= 5",
            sdk["operator_cpu_percent_of_a_core"] <= 5)
        row(f"API writes per second ({where})", sdk["api_writes_per_second"], "<= 20",
            sdk["api_writes_per_second"] <= 20)
        row(f"etcd WAL bytes per minute ({where})", sdk["etcd_wal_bytes_per_minute"], "measured", None)
        row(f"change-notification streams ({where}, {sdk['servers']} servers)", sdk["listen_streams_open"],
            f"{sdk['servers']}", sdk["listen_streams_open"] == sdk["servers"])
        row(f"RSS ({where}), max MiB", sdk["rss_mib"]["max"], "<= 120", sdk["rss_mib"]["max"] <= 120)
    converge_sdk = results.get("converge_sdk")
    if converge_sdk:
        where = f"{converge_sdk['resources']} × 20 tools, SDK defaults"
        row(f"converge ({where}), s", converge_sdk["converge_seconds"], "<= 60", converge_sdk["converge_seconds"] <= 60)
        row(f"peak RSS ({where}), MiB", converge_sdk["operator_peak_rss_mib"], "<= 120",
            converge_sdk["operator_peak_rss_mib"] <= 120)
    for count, entry in converged.items():
        row(f"CPU per first sync (convergence, N={count}), ms", entry["operator_cpu_ms_per_sync"], "<= 8",
            entry["operator_cpu_ms_per_sync"] <= 8)
    if converged:
        first = converged[min(converged)]
        row("start-up RSS (one resource synced), MiB", first["operator_rss_start_mib"], "< 80",
            first["operator_rss_start_mib"] < 80)
        for count, entry in converged.items():
            # Below about a thousand, RSS grows in allocator arenas, not per resource: measured, not judged.
            judged = count >= 1000
            row(f"memory per resource (N={count}), KiB", entry["operator_kib_per_resource"],
                "< 40" if judged else "measured", entry["operator_kib_per_resource"] < 40 if judged else None)
    if 1000 in converged:
        entry = converged[1000]
        row("1000 × 20 tools converge, s", entry["converge_seconds"], "<= 60", entry["converge_seconds"] <= 60)
        row("1000 × 20 tools peak RSS, MiB", entry["operator_peak_rss_mib"], "<= 200",
            entry["operator_peak_rss_mib"] <= 200)
        if entry.get("idle"):
            idle = entry["idle"]
            row("idle CPU with 1000 resources, % of a core", idle["operator_cpu_percent_of_a_core"], "< 1",
                idle["operator_cpu_percent_of_a_core"] < 1)
            row("idle API requests/min beyond watches, 1000 resources",
                idle["api_requests_per_minute_our_resources"], "0", idle["api_requests_per_minute_our_resources"] == 0)
    if 5000 in converged:
        row("5000 × 20 tools converge, s", converged[5000]["converge_seconds"], "measured", None)
    exposure = results.get("allowlist") or {}
    for key, label in (("webhook_deny_ms", "notification -> ToolHive's webhook denies the tool"),
                       ("mcptoolconfig_ms", "notification -> MCPToolConfig updated"),
                       ("contextforge_ms", "notification -> ContextForge deactivated it")):
        if key in exposure:
            bound = exposure["bounds_p95_ms"][key.removesuffix("_ms")]
            row(f"{label}, p95 ms", exposure[key]["p95"], f"<= {bound:g}", exposure[key]["p95"] <= bound)
    for label, entry in (results.get("secrets") or {}).items():
        judged = label == "current"
        row(f"RSS growth, {entry['secrets']} unrelated 10 KiB Secrets created ({label}), MiB",
            entry["rss_growth_mib"], "< 5" if judged else "measured", entry["rss_growth_mib"] < 5 if judged else None)
    return rows


def table(results: dict[str, Any]) -> str:
    lines: list[str] = []
    out = lines.append
    if results.get("floor"):
        out("floor (ms)                        tools   p50      p95")
        for count, figures in results["floor"].items():
            for name in ("sdk_session_ms", "raw_warm_ms", "open_session_ms"):
                value = figures[name]
                out(f"  {name.removesuffix('_ms'):<30} {count:>5} {value['p50']:8.1f} {value['p95']:8.1f}")
    for backend, figures in (results.get("refresh") or {}).items():
        patch = figures["api_patch_ms"]
        out(f"one merge PATCH on the {backend} API server: p50 {patch['p50']} ms, p95 {patch['p95']} ms")
        out(f"refresh on the {backend} API server  tools   p50      p95   /SDK p50 /SDK p95 /raw p50 /raw p95  "
            "CPU ms")
        for count in CATALOGS:
            entry = figures[str(count)]
            lat, sdk = entry["latency_ms"], entry.get("ratio_to_sdk_session") or {}
            raw = entry.get("ratio_to_raw_floor") or {}
            out(f"  annotation -> answer           {count:>5} {lat['p50']:8.1f} {lat['p95']:8.1f} "
                f"{sdk.get('p50', float('nan')):8.2f} {sdk.get('p95', float('nan')):8.2f} "
                f"{raw.get('p50', float('nan')):8.2f} {raw.get('p95', float('nan')):8.2f} "
                f"{entry['operator_cpu_ms_per_refresh']:7.1f}")
    for entry in results.get("converge") or []:
        flags = f" [{entry['operator_flags']}]" if entry.get("operator_flags") else ""
        out(f"converge N={entry['resources']} × {entry['tools_each']} tools ({entry['servers']} servers){flags}: "
            f"{entry['converge_seconds']} s ({entry['syncs_per_second']} syncs/s; creates took "
            f"{entry['create_seconds']} s), operator RSS start {entry['operator_rss_start_mib']} MiB, peak "
            f"{entry['operator_peak_rss_mib']} MiB, after {entry['operator_rss_after_mib']} MiB "
            f"({entry['operator_kib_per_resource']} KiB/resource), CPU {entry['operator_cpu_seconds']} s "
            f"({entry['operator_cpu_ms_per_sync']} ms/sync, {100 * entry['operator_cpu_share_of_total']:.0f}% of all "
            f"CPU), control plane CPU {entry['control_plane_cpu_seconds']}, MCP servers CPU "
            f"{entry['mcp_servers_cpu_seconds']} s, API requests/sync {entry['operator_api_requests_per_sync']}")
        if entry.get("idle"):
            idle = entry["idle"]
            out(f"  idle: {idle['operator_cpu_percent_of_a_core']}% of a core, "
                f"{idle['api_requests_per_minute_our_resources']} API requests/min on our resources "
                f"({idle['api_requests_per_minute_other_clients']}/min from other clients)")
        if entry.get("sizes"):
            sizes = entry["sizes"]
            out(f"  sizes: ConfigMap {sizes['configmap_bytes_per_tool_raw']} B/tool raw, "
                f"{sizes['configmap_bytes_per_tool_gzip']} B/tool gzip; status {sizes['status_bytes_per_resource']} "
                f"B/resource; etcd {sizes['etcd_bytes_per_resource_total']} B/resource "
                f"{sizes['etcd_bytes_per_resource']}")
    if results.get("converge_sdk"):
        entry = results["converge_sdk"]
        out(f"converge N={entry['resources']} × {entry['tools_each']} tools ({entry['servers']} servers, "
            f"{entry['server_behaviour']}): {entry['converge_seconds']} s, operator RSS peak "
            f"{entry['operator_peak_rss_mib']} MiB, after {entry['operator_rss_after_mib']} MiB, CPU "
            f"{entry['operator_cpu_ms_per_sync']} ms/sync, change-notification streams {entry['listen_streams_open']}, "
            f"API requests/sync {entry['operator_api_requests_per_sync']}")
    for key in ("steady", "steady_sdk", "steady_large"):
        s = results.get(key)
        if not s:
            continue
        out(f"steady N={s['resources']} × {s.get('tools_each', 20)} tools ({s.get('server_behaviour', 'tuned')}), "
            f"resync every {s['ttl_seconds']} s, for {s['seconds']} s: {s['syncs']} syncs "
            f"({s.get('syncs_recorded_in_status', s['syncs'])} recorded in status), "
            f"{s['syncs_per_second_mean']}/s mean (N/TTL {s['expected_syncs_per_second']}), recorded peak "
            f"{s['syncs_per_second_peak_1s']}/s in 1 s, {s['syncs_per_second_peak_10s_window']}/s over 10 s; "
            f"MCP fetches/sync {s.get('mcp_fetches_per_sync', 1.0)}; "
            f"CPU {s['operator_cpu_ms_per_sync']} ms/sync ({s['operator_cpu_percent_of_a_core']}% of a core); RSS "
            f"{s['rss_mib']}; API requests/sync {s['operator_api_requests_per_sync']}")
        if "api_writes_per_second" in s:
            out(f"  API writes {s['api_writes_per_second']}/s; bytes sent per sync "
                f"{s['request_body_bytes_per_sync']}; etcd: {s['etcd_wal_bytes_per_minute']} WAL bytes/min, "
                f"{s['etcd_puts_per_minute']} puts/min; change-notification streams open: {s['listen_streams_open']}")
    if results.get("triggers"):
        for name, figures in results["triggers"].items():
            out(f"trigger {name:<22} p50 {figures['p50']:8.1f}  p95 {figures['p95']:8.1f}  (n={figures['n']})")
    if results.get("probes"):
        out(probes.table(results["probes"]))
    for name, figures in (results.get("allowlist") or {}).items():
        if name.endswith("_ms") and "p50" in figures:
            out(f"allowlist {name:<26} p50 {figures['p50']:8.1f}  p95 {figures['p95']:8.1f}  (n={figures['n']})")
    for label, entry in (results.get("secrets") or {}).items():
        start = entry["start_with_them"]
        out(f"secrets ({label}: {entry['ref']}): {entry['secrets']} unrelated Secrets of {entry['secret_bytes']} B "
            f"created in {entry['create_seconds']} s: operator RSS {entry['rss_before_mib']} -> "
            f"{entry['rss_after_mib']} MiB (growth {entry['rss_growth_mib']} MiB, peak {entry['peak_rss_mib']} MiB), "
            f"CPU {entry['cpu_seconds_while_created']} s, {entry['secret_bytes_received_while_created'] / 2**20:.2f} "
            f"MiB of Secret answers received; a start with them: ready in {start['ready_seconds']} s, RSS "
            f"{start['rss_mib']} MiB ({start['rss_over_first_start_mib']:+} MiB over the first start), "
            f"{start['secret_bytes_received'] / 2**20:.2f} MiB received")
    for entry in results.get("ratelimit") or []:
        apf, during, idle = entry["apf"], entry["neighbour_get_ms_during"], entry["neighbour_get_ms_idle"]
        out(f"rate limit, N={entry['resources']} created at once, {entry['limit']}: converge "
            f"{entry['converge_seconds']} s ({entry['syncs_per_second']} syncs/s, "
            f"{entry['operator_api_requests_per_second']} operator requests/s); 429 answers {apf['answers_429']}, "
            f"APF rejections {apf['apf_rejected']}, APF queue wait ms {apf['mean_queue_wait_ms_by_priority_level']}; "
            f"kube-apiserver {entry['kube_apiserver_cpu_percent_of_a_core']}% of a core, etcd "
            f"{entry['etcd_cpu_percent_of_a_core']}%; another client's GET p50/p95/p99/max "
            f"{during.get('p50')}/{during.get('p95')}/{during.get('p99')}/{during.get('max')} ms "
            f"(idle {idle.get('p50')}/{idle.get('p95')}), {entry['neighbour_failures']} failed")
    for section, error in (results.get("errors") or {}).items():
        out(f"FAILED {section}: {error[:300]}")
    if results.get("targets"):
        out("targets")
        for target in results["targets"]:
            mark = {True: "met", False: "MISSED", None: "-"}[target["met"]]
            out(f"  {target['figure']:<58} {target['value']!s:>10}  target {target['target']:<9} {mark}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    output = args.output or REPO / "bench" / "results" / (
        f"{time.strftime('%Y-%m-%d', time.gmtime())}-{socket.gethostname()}{'-quick' if args.quick else ''}.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    results = asyncio.run(run(args, output))
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\nwritten: {output.relative_to(REPO) if output.is_relative_to(REPO) else output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
