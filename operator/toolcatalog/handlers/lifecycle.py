"""Operator start-up and shutdown: kopf settings, the shared HTTP pool and Kubernetes client."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from .. import constants as c
from .. import metrics
from ..config import OperatorConfig
from ..egress import EgressPolicy
from ..httppool import HttpPool
from ..kube import KubeApi, load_config
from ..sync import SyncEngine

logger = logging.getLogger(__name__)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    config = OperatorConfig.from_env()
    # kopf's own bookkeeping: annotations under our domain, never status. Not `toolcatalog.dev/`
    # itself: kopf leaves every annotation under its storage prefix out of the diff, and the
    # user-facing `toolcatalog.dev/refresh` must stay visible to it.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=c.KOPF_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=c.KOPF_PREFIX, key="last-handled-configuration")
    settings.persistence.finalizer = f"{c.KOPF_PREFIX}/finalizer"
    settings.posting.level = logging.INFO
    settings.posting.loggers = False          # only the Events we post on purpose
    settings.execution.max_workers = max(4, config.max_concurrent_syncs)
    memo.engine = SyncEngine(
        kube=KubeApi(load_config(config.context)),
        pool=HttpPool(egress=EgressPolicy.from_env()),
        max_concurrent=config.max_concurrent_syncs,
    )
    if config.metrics_port:
        metrics.serve(config.metrics_port, config.metrics_address)
    logger.info("toolcatalog ready: at most %d concurrent syncs, timers every %.1fs",
                config.max_concurrent_syncs, config.timer_interval)


@kopf.on.login(id="login-like-the-client")
def login(**_: Any) -> kopf.ConnectionInfo:
    """kopf and our own client use the same credentials: in-cluster, or KUBECONFIG with --context."""
    cfg = load_config(OperatorConfig.from_env().context).configuration
    token = (cfg.api_key or {}).get("authorization") or (cfg.api_key or {}).get("BearerToken")
    scheme = None
    if token and " " in token:
        scheme, token = token.split(" ", 1)
    return kopf.ConnectionInfo(
        server=cfg.host,
        ca_path=cfg.ssl_ca_cert,
        insecure=not cfg.verify_ssl,
        username=cfg.username or None,
        password=cfg.password or None,
        scheme=scheme,
        token=token or None,
        certificate_path=cfg.cert_file,
        private_key_path=cfg.key_file,
    )


@kopf.on.cleanup()
async def close(memo: Any, **_: Any) -> None:
    engine: SyncEngine | None = getattr(memo, "engine", None)
    if engine is not None:
        await engine.pool.aclose()
        engine.kube.close()
