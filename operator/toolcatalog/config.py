"""The operator's settings: one object, built from the command line (cli.py) and passed in.

Nothing reads the environment at import. Flags whose defaults may also come from environment
variables (for Deployments that prefer env) get them in cli.py, when the command line is parsed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_EGRESS_DENY: tuple[str, ...] = ("169.254.0.0/16", "fe80::/10")   # cloud metadata and link-local
SLOW_SYNCS_PER_WORKER, MIN_SLOW_SYNCS = 5, 50      # the slow pool when max_slow_syncs is None


@dataclass(frozen=True)
class OperatorConfig:
    namespaces: tuple[str, ...] = ()            # empty: every namespace
    standalone: bool = False                    # peer with other kopf operators unless --standalone
    context: str | None = None
    # Workers: syncs started at once. One still running after `slow_after` steps aside into the slow pool
    # (`max_slow_syncs`, None: 5 per worker, at least 50), so at most the sum of both runs at once.
    max_concurrent_syncs: int = 10
    max_slow_syncs: int | None = None
    # Open list-changed listeners (one long-lived MCP session per resource) at most; beyond it,
    # resources are resynced on TTL expiry and refreshes only.
    max_listeners: int = 500
    metrics_port: int | None = None             # serve Prometheus metrics when set
    metrics_address: str = "0.0.0.0"
    liveness: str | None = None                 # e.g. http://0.0.0.0:8080/healthz
    readiness: str | None = None                # e.g. http://0.0.0.0:8081/readyz (handlers/health.py)
    watch_stall_timeout: float = 180.0          # liveness fails when the watches lag this long behind
    log_format: str = "text"                    # text | json (handlers/logs.py)
    egress_deny: tuple[str, ...] = field(default=DEFAULT_EGRESS_DENY)
    egress_allow: tuple[str, ...] = ()          # non-empty: only these networks may be reached
    max_sync_timeout: float = 60.0              # caps spec.sync.timeoutSeconds: one server cannot hold a sync longer
    slow_after: float = 2.0                     # a sync still running after this steps aside from its worker
    min_server_ttl: float = 60.0                # the shortest cache lifetime a server's ttlMs may impose
    # A resync that finds nothing changed writes status only when the recorded verification is this old
    # (reconcile/report.py, the kubelet's nodeStatusReportFrequency); 0: every resync writes it.
    status_report_interval: float = 300.0
    # A scheduled resync may use the answer another resource's fetch of the same endpoint, with the same
    # credentials, got this many seconds before (engine/sharedfetch.py); 0: only fetches under way are shared.
    fetch_share_window: float = 5.0
    max_response_bytes: int = 8 * 1024 * 1024   # one answer from an MCP server, on the wire and inflated
    max_catalog_bytes: int = 32 * 1024 * 1024   # every page of one catalog, inflated
    kube_qps: float = 100.0                     # client-side rate limit of our own API requests
    kube_burst: int = 200
    shard: int = 0                              # this process takes the resources whose uid hashes here ...
    total_shards: int = 1                       # ... of this many shards (handlers/sharding.py)
    pod: str | None = None                      # else: this StatefulSet pod's shard, of its replicas (autoshard.py)
    pod_namespace: str | None = None
    webhook_port: int | None = None             # serve the validating admission webhook (handlers/admission.py)
    webhook_address: str = "0.0.0.0"
    webhook_cert_dir: str = "/etc/toolcatalog/webhook"     # tls.crt, tls.key, optional ca.crt
    webhook_service: str | None = None          # NAMESPACE/NAME: the API server reaches it through this Service
    webhook_host: str | None = None             # ... else at https://HOST:PORT/validate
    webhook_configuration: str | None = None    # the ValidatingWebhookConfiguration to manage (None: apply your own)
    toolhive_webhook_port: int | None = None    # serve ToolHive's validating webhook (handlers/toolhive_webhook.py)
    toolhive_webhook_hmac_secret_file: str | None = None   # ToolHive's calls must be signed with this secret
    verbose: bool = False
    quiet: bool = False
