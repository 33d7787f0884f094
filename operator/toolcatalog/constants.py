"""Names fixed by the API contract (../shared/design/api.md): group, kinds, keys, reasons."""

from __future__ import annotations

GROUP = "toolcatalog.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORY = "toolcatalog"

KIND_TOOLSERVER = "ToolServer"
KIND_CONNECTORCONFIG = "ConnectorConfig"
PLURAL = {KIND_TOOLSERVER: "toolservers", KIND_CONNECTORCONFIG: "connectorconfigs"}
SHORT_NAMES = {KIND_TOOLSERVER: ["mcpts"], KIND_CONNECTORCONFIG: ["mcpcc"]}
# Default cache ConfigMap name prefix per kind: toolserver-<name>, connectorconfig-<name>.
CONFIGMAP_PREFIX = {KIND_TOOLSERVER: "toolserver", KIND_CONNECTORCONFIG: "connectorconfig"}

# kopf's bookkeeping annotations (progress, last-handled-configuration) live under this prefix.
KOPF_PREFIX = f"kopf.{GROUP}"

# Annotations users set on ToolServer / ConnectorConfig.
ANN_REFRESH = f"{GROUP}/refresh"
ANN_REFRESH_REASON = f"{GROUP}/refresh-reason"
ANN_REFRESH_FORCE = f"{GROUP}/refresh-force"

# Labels and annotations the operator puts on cache ConfigMaps.
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "toolcatalog"
LABEL_KIND = f"{GROUP}/kind"
LABEL_NAME = f"{GROUP}/name"
ANN_CACHED_AT = f"{GROUP}/cached-at"
ANN_EXPIRES_AT = f"{GROUP}/expires-at"
ANN_CONTENT_HASH = f"{GROUP}/content-hash"

# ConfigMap keys.
CM_KEY_JSON = "tools.json"
CM_KEY_GZIP = "tools.json.gz"
GZIP_THRESHOLD_BYTES = 512 * 1024
# A ConfigMap holds at most 1 MiB in total; leave room for metadata.
CONFIGMAP_MAX_BYTES = 1024 * 1024 - 16 * 1024

STATUS_MAX_TOOLS = 500
REFRESH_LIST_MAX = 100
MAX_NAME_LENGTH = 253

# Defaults of spec.sync.
DEFAULT_TTL_SECONDS = 3600
DEFAULT_TIMEOUT_SECONDS = 30
DEFAULT_MIN_INTERVAL_SECONDS = 10

# Fetch guards.
MAX_PAGES = 1000

# Condition types.
COND_READY = "Ready"
COND_SYNCED = "Synced"
COND_REFRESHED = "Refreshed"
# kstatus' abnormal-true condition (Flux, kpt): present, True, only while no retry can succeed
# without someone changing the spec, a Secret, the server or the operator's settings.
COND_STALLED = "Stalled"

# Phases.
PHASE_PENDING = "Pending"
PHASE_READY = "Ready"
PHASE_STALE = "Stale"
PHASE_FAILED = "Failed"
PHASE_SUSPENDED = "Suspended"

# Ready reasons.
REASON_CACHE_FRESH = "CacheFresh"
REASON_CACHE_STALE = "CacheStale"
REASON_NO_CACHE = "NoCache"
REASON_SUSPENDED = "Suspended"

# Synced reasons.
REASON_SYNC_SUCCEEDED = "SyncSucceeded"
REASON_SERVER_UNAVAILABLE = "ServerUnavailable"
REASON_AUTH_FAILED = "AuthenticationFailed"
REASON_TIMEOUT = "Timeout"
REASON_PROTOCOL_ERROR = "ProtocolError"
REASON_INVALID_SPEC = "InvalidSpec"
REASON_SECRET_NOT_FOUND = "SecretNotFound"
REASON_TOOLSERVER_NOT_FOUND = "ToolServerNotFound"
REASON_EGRESS_DENIED = "EgressDenied"
REASON_CACHE_TOO_LARGE = "CacheTooLarge"
REASON_CACHE_CONFLICT = "CacheConflict"
SYNC_FAILURE_REASONS = (
    REASON_SERVER_UNAVAILABLE, REASON_AUTH_FAILED, REASON_TIMEOUT, REASON_PROTOCOL_ERROR,
    REASON_INVALID_SPEC, REASON_SECRET_NOT_FOUND, REASON_TOOLSERVER_NOT_FOUND,
    REASON_EGRESS_DENIED, REASON_CACHE_TOO_LARGE, REASON_CACHE_CONFLICT,
)

# Failures that retrying alone cannot fix: they make the resource Stalled (kstatus: Failed).
STALLED_REASONS = (REASON_INVALID_SPEC, REASON_AUTH_FAILED, REASON_EGRESS_DENIED, REASON_CACHE_TOO_LARGE,
                   REASON_CACHE_CONFLICT)

# Refreshed reasons.
REASON_REFRESH_SUCCEEDED = "RefreshSucceeded"
REASON_REFRESH_FAILED = "RefreshFailed"
REASON_RATE_LIMITED = "RateLimited"

# Sync triggers (status.lastSync.trigger).
TRIGGER_CREATE = "create"
TRIGGER_UPDATE = "update"
TRIGGER_SCHEDULE = "schedule"
TRIGGER_REFRESH = "refresh"
TRIGGER_SECRET = "secret"
TRIGGER_LIST_CHANGED = "list-changed"
TRIGGER_RESUME = "resume"
TRIGGERS = (TRIGGER_CREATE, TRIGGER_UPDATE, TRIGGER_SCHEDULE, TRIGGER_REFRESH,
            TRIGGER_SECRET, TRIGGER_LIST_CHANGED, TRIGGER_RESUME)

# Event reasons (Kubernetes Events the operator posts).
EVENT_SYNCED = "Synced"              # first successful sync
EVENT_SYNC_FAILED = "SyncFailed"
EVENT_RECOVERED = "Recovered"
EVENT_TOOLS_CHANGED = "ToolsChanged"
EVENT_REFRESHED = "Refreshed"
EVENT_RATE_LIMITED = "RefreshRateLimited"

TRANSPORT_STREAMABLE_HTTP = "streamable-http"
TRANSPORT_SSE = "sse"
TRANSPORTS = (TRANSPORT_STREAMABLE_HTTP, TRANSPORT_SSE)
