"""Operator start-up and shutdown: kopf's settings, the engine and its clients, login, probes."""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

import kopf

from ..api import constants as c
from ..api.redact import Redactor
from ..config import OperatorConfig
from ..engine import metrics
from ..engine.allowlists import AllowlistReconciler
from ..engine.catalogs import SourceCatalogs
from ..engine.listeners import ToolChangeListeners
from ..engine.objects import ObjectCache
from ..engine.reconciler import Reconciler
from ..engine.runtime import Engine
from ..engine.targets import TargetWriter
from ..engine.workmetrics import ControllerMetrics
from ..gateways.contextforge import ContextForgeClient
from ..kube.client import KubeClient
from ..kube.informer import WATCH_TIMEOUT
from ..kube.login import login
from ..kube.references import ReferenceInformers
from ..mcp.egress import EgressPolicy
from ..mcp.fetch import EraMemory, fetch_catalog
from ..mcp.listen import listen_for_tool_changes
from ..mcp.pool import HttpPool
from ..mcp.wire import Limits
from . import health, logs, toolhive_webhook, watch
from .drain import FETCH_GRACE_SECONDS, WRITE_TIMEOUT_SECONDS, Drain
from .sharding import Shard
from .watch import ALLOWLISTS, KEYS

logger = logging.getLogger(__name__)
KINDS = (c.KIND_TOOLSERVER, c.KIND_CONNECTORCONFIG)     # in the order of watch.KEYS
# Helm keeps every release in a Secret; none of them is a credential for an MCP server.
SECRET_SELECTOR = "type!=helm.sh/release.v1"


def reference_informers(config: OperatorConfig, client: KubeClient) -> ReferenceInformers:
    """Metadata-only informers of Secrets and ConfigMaps where kopf watches our resources: everywhere,
    in each exact namespace, or in each namespace the patterns match (by kopf's rule)."""
    patterns = config.namespaces if config.namespaces and not health.exact_namespaces(config.namespaces) else ()
    return ReferenceInformers(
        client, namespaces=config.namespaces,
        matching=functools.partial(health.namespace_matches, patterns=patterns) if patterns else None,
        # Every ConfigMap, our cache ConfigMaps too: a resync that finds the catalog unchanged checks that its
        # ConfigMap is still the one it wrote against the version this informer holds, with no request.
        selectors={"Secret": ("", SECRET_SELECTOR)},
        # A quiet informer hears from the server at least this often: well within the stall timeout.
        watch_timeout=min(WATCH_TIMEOUT, config.watch_stall_timeout / 3), stall_after=config.watch_stall_timeout)


async def start_when_synced(engine: Engine, references: ReferenceInformers) -> None:
    """The workers start once every informer has listed (controller-runtime's WaitForCacheSync): before, a
    reconcile would find no version of any Secret, and every resource that uses one would sync again."""
    await references.wait_synced()
    logger.info("%s listed; starting the engine", references.describe())
    engine.start()


class IndexedAllowlists:
    """Which ToolAllowlists name a source, as kopf's index holds it (engine/catalogs.py's `referrers`)."""

    def __init__(self, index: kopf.Index) -> None:
        self._index = index

    def __call__(self, key: Any) -> set[Any]:
        kind, namespace, name = key
        return set(self._index.get((namespace, kind, name), ()))


def register(registry: kopf.OperatorRegistry, config: OperatorConfig, redactor: Redactor, shard: Shard) -> None:

    @kopf.on.startup(registry=registry)
    async def start(settings: kopf.OperatorSettings, memo: Any, **indexes: Any) -> None:
        settings.posting.enabled = False        # the engine posts its own Events, and only those
        # Exact namespace names: no cluster-wide scanning of namespaces and CRDs (a namespace-scoped
        # install then needs no cluster-scoped permission at all).
        settings.scanning.disabled = health.exact_namespaces(config.namespaces)
        egress = EgressPolicy.from_lists(config.egress_deny, config.egress_allow)
        pool = HttpPool(egress=egress)
        # Each listener holds a connection; handshake-era ones a second for pings, plus reconnects.
        listener_pool = HttpPool(egress=egress, max_connections=2 * config.max_listeners + 10)
        kube = KubeClient(functools.partial(login, config.context), qps=config.kube_qps, burst=config.kube_burst)
        # Each watch holds a connection for as long as it runs: a client of their own, with no cap.
        watch_client = KubeClient(functools.partial(login, config.context), qps=config.kube_qps,
                                  burst=config.kube_burst, connections=0)
        references = reference_informers(config, watch_client)
        drain = Drain()     # on shutdown, syncs are cut only before they write anything
        eras, limits = EraMemory(), Limits(config.max_response_bytes, config.max_catalog_bytes)   # fetch and listen
        reconciler = Reconciler(objects=ObjectCache(), kube=drain.store(kube),
                                fetch=drain.fetcher(functools.partial(fetch_catalog, pool=pool, eras=eras,
                                                                      limits=limits)),
                                versions=references,
                                server_ttl_floor=config.min_server_ttl, max_sync_timeout=config.max_sync_timeout,
                                redactor=redactor, status_report_interval=config.status_report_interval,
                                fetch_share_window=config.fetch_share_window)
        controller_metrics = ControllerMetrics()
        engine = Engine(reconciler, workers=config.max_concurrent_syncs, slow_after=config.slow_after,
                        slow_capacity=config.max_slow_syncs, on_forget=metrics.forget, observer=controller_metrics)
        controller_metrics.watch(engine)
        reconciler.listeners = ToolChangeListeners(engine.list_changed, max_listeners=config.max_listeners,
                                                   pool=listener_pool, listen=functools.partial(
                                                       listen_for_tool_changes, eras=eras, limits=limits))
        reconciler.observers.append(metrics.observe)
        reconciler.observers.append(logs.log_sync)
        references.on_change = watch.waker(engine, indexes)
        # ToolAllowlists: reconciled by the same queue and workers; the sources' syncs tell them what changed.
        catalogs = SourceCatalogs(IndexedAllowlists(indexes[ALLOWLISTS]))
        allowlists = AllowlistReconciler(objects=engine.objects, kube=kube, catalogs=catalogs,
                                         writer=TargetWriter(kube, redactor=redactor,
                                                             contextforge=functools.partial(_contextforge, pool,
                                                                                            redactor),
                                                             # toolhiveWebhook targets are Unavailable
                                                             # unless this operator serves the webhook
                                                             webhook_path=toolhive_webhook.path_for
                                                             if config.toolhive_webhook_port else None),
                                         enqueue=lambda key, urgent: engine.enqueue(key, urgent=urgent),
                                         owns=shard.owns)
        catalogs.on_change = allowlists.source_changed
        reconciler.catalogs = catalogs
        engine.register(c.KIND_TOOLALLOWLIST, allowlists)
        memo.allowlists = allowlists
        # ToolHive's validating webhook (--toolhive-webhook-port) answers from the allowlists' current state.
        memo.toolhive_webhook = toolhive_webhook.from_config(config, allowlists.allowed)
        if memo.toolhive_webhook is not None:
            await memo.toolhive_webhook.start()
        memo.engine, memo.kube, memo.pools, memo.drain = engine, kube, (pool, listener_pool), drain
        memo.references, memo.watch_client = references, watch_client
        references.start()
        memo.engine_start = asyncio.get_running_loop().create_task(start_when_synced(engine, references),
                                                                   name="engine start")
        await health.start(memo, engine, kube, keys=dict(zip(KINDS, (indexes[id_] for id_ in KEYS), strict=True)),
                           namespaces=config.namespaces, stall_after=config.watch_stall_timeout,
                           readiness_url=config.readiness,
                           owns=(lambda meta: shard.owns(meta.get("uid"))) if shard.sharded else None,
                           sources=(references,))
        if config.metrics_port:
            metrics.serve(config.metrics_port, config.metrics_address)
        logger.info("toolcatalog ready: %d workers, at most %d slow syncs beside them, %d listeners",
                    engine.workers, engine.slow_capacity, config.max_listeners)

    @kopf.on.login(registry=registry)
    def credentials(**_: Any) -> kopf.ConnectionInfo:
        """kopf and the engine use the same credentials: in-cluster, or the kubeconfig (with --context)."""
        return login(config.context)

    @kopf.on.cleanup(registry=registry)
    async def stop(memo: Any, **_: Any) -> None:
        engine: Engine | None = getattr(memo, "engine", None)
        if engine is None:
            return
        await health.stop(memo)                     # readiness: 503 from now on
        memo.engine_start.cancel()
        engine.queue.shut_down()                    # no new syncs; those reading or fetching may be cut,
        await memo.drain.stop(FETCH_GRACE_SECONDS)  # those writing finish: never a half-written sync
        await engine.stop(WRITE_TIMEOUT_SECONDS)    # waits for workers and slow reconciles alike
        listeners = engine.reconciler.listeners
        if isinstance(listeners, ToolChangeListeners):
            await listeners.aclose()
        for pool in memo.pools:
            await pool.aclose()
        await memo.kube.aclose()
        await memo.references.stop()
        await memo.watch_client.aclose()
        if getattr(memo, "toolhive_webhook", None) is not None:
            await memo.toolhive_webhook.stop()
        await health.close(memo)


def _contextforge(pool: HttpPool, redactor: Redactor, url: str, token: str) -> ContextForgeClient:
    """A client of ContextForge's REST API at `url` for one publish, over the egress-checked pool."""
    return ContextForgeClient(url, token, pool.client_for(None), redactor=redactor)
