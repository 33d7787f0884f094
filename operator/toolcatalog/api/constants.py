"""Names fixed by the API contract (docs/reference/, e.g. crds.md, status.md, cache.md): group, kinds, keys, reasons.

What each condition, reason and Event means is in reasons.py, next to these names.
"""

from __future__ import annotations

from typing import Final

GROUP: Final = "toolcatalog.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
CATEGORY: Final = "toolcatalog"

KIND_TOOLSERVER: Final = "ToolServer"
KIND_CONNECTORCONFIG: Final = "ConnectorConfig"
KIND_TOOLALLOWLIST: Final = "ToolAllowlist"
# The kinds that have a catalog (synced from an MCP server); a ToolAllowlist draws on them.
SOURCE_KINDS = (KIND_TOOLSERVER, KIND_CONNECTORCONFIG)
PLURAL = {KIND_TOOLSERVER: "toolservers", KIND_CONNECTORCONFIG: "connectorconfigs",
          KIND_TOOLALLOWLIST: "toolallowlists"}
SHORT_NAMES = {KIND_TOOLSERVER: ["mcpts"], KIND_CONNECTORCONFIG: ["mcpcc"], KIND_TOOLALLOWLIST: ["mcpal"]}
# Default cache ConfigMap name prefix per kind: toolserver-<name>, connectorconfig-<name>.
CONFIGMAP_PREFIX = {KIND_TOOLSERVER: "toolserver", KIND_CONNECTORCONFIG: "connectorconfig"}

# Annotations users set on ToolServer / ConnectorConfig.
ANN_REFRESH: Final = f"{GROUP}/refresh"
ANN_REFRESH_REASON: Final = f"{GROUP}/refresh-reason"
ANN_REFRESH_FORCE: Final = f"{GROUP}/refresh-force"

# Labels and annotations the operator puts on cache ConfigMaps.
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "toolcatalog"
LABEL_KIND: Final = f"{GROUP}/kind"
LABEL_NAME: Final = f"{GROUP}/name"
ANN_CACHED_AT: Final = f"{GROUP}/cached-at"
ANN_EXPIRES_AT: Final = f"{GROUP}/expires-at"     # written by earlier releases only: removed on the next write
ANN_CONTENT_HASH: Final = f"{GROUP}/content-hash"

# ConfigMap keys.
CM_KEY_JSON: Final = "tools.json"
CM_KEY_GZIP: Final = "tools.json.gz"
GZIP_THRESHOLD_BYTES = 512 * 1024
# A ConfigMap holds at most 1 MiB in total; leave room for metadata.
CONFIGMAP_MAX_BYTES = 1024 * 1024 - 16 * 1024

STATUS_MAX_TOOLS = 500
STATUS_MAX_BYTES = 512 * 1024  # what one status write may hold: far below the API server's request limit
STATUS_NAME_MAX = 128        # MCP's tool-name rule: 1 to 128 characters
SERVER_TEXT_MAX = 256        # a server's name and version, as status and the cache record them
REFRESH_LIST_MAX = 100
MAX_NAME_LENGTH = 253

# Defaults of spec.sync.
DEFAULT_TTL_SECONDS = 3600
DEFAULT_TIMEOUT_SECONDS = 30
DEFAULT_MIN_INTERVAL_SECONDS = 10

# Fetch guards.
MAX_PAGES = 1000

# Condition types.
COND_READY: Final = "Ready"
COND_SYNCED: Final = "Synced"
COND_REFRESHED: Final = "Refreshed"
COND_APPROVED: Final = "Approved"
# kstatus' abnormal-true condition (Flux, kpt): present, True, only while no retry can succeed
# without someone changing the spec, a Secret, the server or the operator's settings.
COND_STALLED: Final = "Stalled"

# Phases.
PHASE_PENDING: Final = "Pending"
PHASE_READY: Final = "Ready"
PHASE_STALE: Final = "Stale"
PHASE_FAILED: Final = "Failed"
PHASE_SUSPENDED: Final = "Suspended"

# Ready reasons.
REASON_CACHE_FRESH: Final = "CacheFresh"
REASON_CACHE_STALE: Final = "CacheStale"
REASON_NO_CACHE: Final = "NoCache"
REASON_SUSPENDED: Final = "Suspended"

# Synced reasons.
REASON_SYNC_SUCCEEDED: Final = "SyncSucceeded"
REASON_SERVER_UNAVAILABLE: Final = "ServerUnavailable"
REASON_AUTH_FAILED: Final = "AuthenticationFailed"
REASON_TIMEOUT: Final = "Timeout"
REASON_PROTOCOL_ERROR: Final = "ProtocolError"
REASON_INVALID_SPEC: Final = "InvalidSpec"
REASON_SECRET_NOT_FOUND: Final = "SecretNotFound"
REASON_TOOLSERVER_NOT_FOUND: Final = "ToolServerNotFound"
REASON_EGRESS_DENIED: Final = "EgressDenied"
REASON_CACHE_TOO_LARGE: Final = "CacheTooLarge"
REASON_CACHE_CONFLICT: Final = "CacheConflict"
REASON_WRITE_REJECTED: Final = "WriteRejected"      # the API server refused a write as invalid (a policy, a schema)
REASON_CONFIGMAP_NOT_FOUND = "ConfigMapNotFound"   # a CA bundle's ConfigMap or key is missing
REASON_FORBIDDEN = "Forbidden"                     # the operator's RBAC does not allow a read it needs
REASON_API_UNAVAILABLE = "ApiUnavailable"          # the Kubernetes API failed (5xx, 429, timeout): retried
REASON_INTERNAL_ERROR: Final = "InternalError"     # an exception no code path expected (a bug): retried, visibly
SYNC_FAILURE_REASONS = (
    REASON_SERVER_UNAVAILABLE, REASON_AUTH_FAILED, REASON_TIMEOUT, REASON_PROTOCOL_ERROR,
    REASON_INVALID_SPEC, REASON_SECRET_NOT_FOUND, REASON_CONFIGMAP_NOT_FOUND, REASON_TOOLSERVER_NOT_FOUND,
    REASON_EGRESS_DENIED, REASON_CACHE_TOO_LARGE, REASON_CACHE_CONFLICT, REASON_WRITE_REJECTED, REASON_FORBIDDEN,
    REASON_INTERNAL_ERROR,
)

# Approved reasons.
REASON_ALL_APPROVED: Final = "AllApproved"
REASON_APPROVAL_PENDING: Final = "ApprovalPending"

# Refreshed reasons.
REASON_REFRESH_SUCCEEDED: Final = "RefreshSucceeded"
REASON_REFRESH_FAILED: Final = "RefreshFailed"
REASON_RATE_LIMITED: Final = "RateLimited"

# Sync triggers (status.lastSync.trigger).
TRIGGER_CREATE: Final = "create"
TRIGGER_UPDATE: Final = "update"
TRIGGER_SCHEDULE: Final = "schedule"
TRIGGER_REFRESH: Final = "refresh"
TRIGGER_SECRET: Final = "secret"
TRIGGER_LIST_CHANGED: Final = "list-changed"
TRIGGER_RESUME: Final = "resume"
TRIGGERS = (TRIGGER_CREATE, TRIGGER_UPDATE, TRIGGER_SCHEDULE, TRIGGER_REFRESH,
            TRIGGER_SECRET, TRIGGER_LIST_CHANGED, TRIGGER_RESUME)

# Event reasons (Kubernetes Events the operator posts).
EVENT_SYNCED = "Synced"              # first successful sync
EVENT_SYNC_FAILED: Final = "SyncFailed"
EVENT_RECOVERED: Final = "Recovered"
EVENT_TOOLS_CHANGED: Final = "ToolsChanged"
EVENT_REFRESHED: Final = "Refreshed"
EVENT_RATE_LIMITED: Final = "RefreshRateLimited"
EVENT_APPROVAL_PENDING: Final = "ApprovalPending"

TRANSPORT_STREAMABLE_HTTP: Final = "streamable-http"
TRANSPORT_SSE: Final = "sse"
TRANSPORTS = (TRANSPORT_STREAMABLE_HTTP, TRANSPORT_SSE)

# ToolAllowlist (docs/reference/toolallowlist.md).
ALLOWLIST_DOCUMENT_KEY: Final = "allowlist.json"       # the generic document in a configMap target
LABEL_SOURCE: Final = f"{GROUP}/source"               # on an MCPToolConfig: the source's `as` name
ANN_SOURCE: Final = f"{GROUP}/source"                 # on an MCPToolConfig: Kind/name of the source
ANN_ALLOWS: Final = f"{GROUP}/allows"                 # on an MCPToolConfig: how many tools, or "none"
TOOLHIVE_GROUP: Final = "toolhive.stacklok.dev"
TOOLHIVE_VERSIONS = ("v1beta1", "v1alpha1")          # the storage version first: used when served
TOOLHIVE_TOOLCONFIG_KIND: Final = "MCPToolConfig"
TOOLHIVE_TOOLCONFIG_PLURAL: Final = "mcptoolconfigs"
ON_SOURCE_FAILURE_KEEP: Final = "Keep"
ON_SOURCE_FAILURE_WITHDRAW: Final = "Withdraw"

# ToolAllowlist Ready reasons (Stalled, when True, carries the same reason).
REASON_PUBLISHED: Final = "Published"
REASON_TARGET_UNAVAILABLE: Final = "TargetUnavailable"
REASON_TARGET_CONFLICT: Final = "TargetConflict"
REASON_TARGET_FAILED: Final = "TargetFailed"
REASON_SOURCE_NOT_FOUND: Final = "SourceNotFound"

# ToolAllowlist Events.
EVENT_TOOLS_ALLOWED: Final = "ToolsAllowed"
EVENT_TOOLS_WITHDRAWN: Final = "ToolsWithdrawn"
EVENT_WITHDRAWAL_FAILED: Final = "WithdrawalFailed"
EVENT_TARGET_RECOVERED: Final = "TargetRecovered"
