"""Pydantic models of the API contract: specs, status, cache entries. No I/O here.

Field names are the camelCase names of the API (docs/reference/crds.md, status.md, cache-schema.md) as
aliases; Python code uses snake_case.
`crds/*.yaml` hold the OpenAPI schemas; tests/unit/test_crd_models.py keeps both in step.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from . import constants as c

URL_PATTERN = r"^https?://[^\s/?#]+[^\s]*$"
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
HEADER_NAME_PATTERN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
HASH_PATTERN = r"^sha256:[0-9a-f]{64}$"

Transport = Literal["streamable-http", "sse"]
Phase = Literal["Pending", "Ready", "Stale", "Failed", "Suspended"]
Trigger = Literal["create", "update", "schedule", "refresh", "secret", "list-changed", "resume"]
ApprovalPolicy = Literal["None", "NewAndChanged", "All"]
ApprovalState = Literal["Approved", "Pending"]
RefreshResult = Literal["Succeeded", "Failed", "RateLimited"]
ReferenceKind = Literal["Secret", "ConfigMap", "ToolServer"]


class Model(BaseModel):
    """Base: camelCase aliases, accepts either spelling, ignores fields it does not know."""

    # Docstrings under fields are their descriptions in the JSON Schema of the cache document
    # (docs/reference/cache-schema.md is generated from it).
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore",
                              use_attribute_docstrings=True)

    def dump(self) -> dict[str, Any]:
        """The JSON shape written to Kubernetes (camelCase, no unset optional fields)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


# ---------------------------------------------------------------------------- spec


class SecretKeyRef(Model):
    name: str = Field(min_length=1, max_length=253)
    """Name of the Secret, in the resource's namespace."""
    key: str = Field(min_length=1, max_length=253)
    """Key in the Secret's data."""


class ConfigMapKeyRef(Model):
    name: str = Field(min_length=1, max_length=253)
    key: str = Field(min_length=1, max_length=253)


class SecretValue(Model):
    """A value read from a Secret: `{secretKeyRef: {name, key}}`."""

    secret_key_ref: SecretKeyRef


class SecretHeader(Model):
    name: str = Field(min_length=1, max_length=256, pattern=HEADER_NAME_PATTERN)
    """HTTP header name."""
    secret_key_ref: SecretKeyRef
    """The Secret and key the header's value is read from."""


class Auth(Model):
    bearer_token: SecretValue | None = None
    headers: list[SecretHeader] = Field(default_factory=list)

    def secret_names(self) -> set[str]:
        names = {h.secret_key_ref.name for h in self.headers}
        if self.bearer_token is not None:
            names.add(self.bearer_token.secret_key_ref.name)
        return names


class CABundle(Model):
    config_map_key_ref: ConfigMapKeyRef | None = None
    secret_key_ref: SecretKeyRef | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> CABundle:
        if (self.config_map_key_ref is None) == (self.secret_key_ref is None):
            raise ValueError("tls.caBundle needs exactly one of configMapKeyRef and secretKeyRef")
        return self


class TLS(Model):
    ca_bundle: CABundle | None = None
    insecure_skip_verify: bool = False


class SyncSettings(Model):
    ttl_seconds: int = Field(default=c.DEFAULT_TTL_SECONDS, ge=1, le=31 * 24 * 3600)
    timeout_seconds: int = Field(default=c.DEFAULT_TIMEOUT_SECONDS, ge=1, le=600)
    min_interval_seconds: int = Field(default=c.DEFAULT_MIN_INTERVAL_SECONDS, ge=0, le=86400)
    suspend: bool = False


class ToolSelector(Model):
    """Glob filters on tool names. An empty include list means every tool."""

    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)


class ToolSetting(Model):
    name: str = Field(min_length=1, max_length=256)
    enabled: bool = True
    # This exact definition may be used (under an approval policy): the tool's schemaHash, from Git.
    approved_hash: str | None = Field(default=None, pattern=HASH_PATTERN)


class ApprovalSettings(Model):
    """None: every listed tool is usable. NewAndChanged: trust on first use, then a new or changed
    definition waits for approval. All: only definitions approved in spec.tools[].approvedHash."""

    policy: ApprovalPolicy = "None"


class CacheSettings(Model):
    config_map_name: str | None = Field(default=None, max_length=253, pattern=NAME_PATTERN)


class ToolServerSpec(Model):
    url: str = Field(max_length=2048, pattern=URL_PATTERN)
    transport: Transport = "streamable-http"
    headers: dict[str, str] = Field(default_factory=dict)
    auth: Auth | None = None
    tls: TLS | None = None
    sync: SyncSettings = Field(default_factory=SyncSettings)
    tool_selector: ToolSelector = Field(default_factory=ToolSelector)
    tools: list[ToolSetting] = Field(default_factory=list)
    approval: ApprovalSettings = Field(default_factory=ApprovalSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)


class ToolServerRef(Model):
    name: str = Field(min_length=1, max_length=253, pattern=NAME_PATTERN)


class ConnectorConfigSpec(Model):
    """Either toolServerRef (inherit the endpoint) or url and friends (inline endpoint)."""

    tool_server_ref: ToolServerRef | None = None
    url: str | None = Field(default=None, max_length=2048, pattern=URL_PATTERN)
    transport: Transport | None = None
    headers: dict[str, str] | None = None
    tls: TLS | None = None
    owner: str | None = Field(default=None, max_length=256)
    auth: Auth | None = None
    sync: SyncSettings = Field(default_factory=SyncSettings)
    tool_selector: ToolSelector = Field(default_factory=ToolSelector)
    tools: list[ToolSetting] = Field(default_factory=list)
    approval: ApprovalSettings = Field(default_factory=ApprovalSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)

    @model_validator(mode="after")
    def _ref_xor_url(self) -> ConnectorConfigSpec:
        if (self.tool_server_ref is None) == (self.url is None):
            raise ValueError("exactly one of spec.toolServerRef and spec.url must be set")
        return self


# ---------------------------------------------------------------------------- status


class ServerInfo(Model):
    """What the MCP server said of itself when the catalog was fetched."""

    name: str | None = None
    """The server's name (serverInfo.name), cut to 256 characters."""
    version: str | None = None
    """The server's version (serverInfo.version), cut to 256 characters."""
    protocol_version: str | None = None
    """The MCP protocol version the session agreed on."""
    list_changed: bool | None = None
    """Whether the server notifies of tool-list changes (then the operator listens and resyncs at once)."""
    # What a 2026-07-28 server says of its tool list: whom it may be cached for, and for how long.
    cache_scope: Literal["public", "private"] | None = None
    """For whom the server says the list may be cached: public (the same for everyone) or private (it depends on
    the credentials: see fetchedWith). Null when the server does not say."""
    ttl_ms: int | None = Field(default=None, ge=0)
    """How long the server says the list may be cached, in milliseconds; expiresAt never comes later."""


class ToolStatus(Model):
    """The compact per-tool entry in status.tools: no descriptions, no schemas."""

    name: str
    available: bool = True
    enabled: bool = True
    selected: bool = True
    schema_hash: str
    approval: ApprovalState | None = None       # only under an approval policy
    approved_hash: str | None = None            # the definition that is approved, if any
    first_seen: str
    removed_at: str | None = None


class FetchedWith(Model):
    """Whose credentials fetched the catalog: the Secret's name and key, never a value."""

    source: Literal["None", "ToolServer", "ConnectorConfig"]
    """None: no credentials; ToolServer: the ToolServer's auth; ConnectorConfig: the ConnectorConfig's own."""
    secret_key_ref: SecretKeyRef | None = None              # the bearer token's
    """The Secret and key of the bearer token, if one was sent."""
    headers: list[SecretHeader] | None = None
    """The headers whose values came from Secrets: each header's name, Secret and key."""


class Reference(Model):
    """An object the last sync read, and which version of it: never a value, never a hash of one.

    A Secret or ConfigMap (CA bundle) by its resourceVersion (absent: it did not exist); a ToolServer
    a ConnectorConfig inherits from by uid and spec generation (its status moves on every sync).
    """

    kind: ReferenceKind
    name: str = Field(max_length=253)
    resource_version: str | None = None
    uid: str | None = None
    generation: int | None = None


class CacheStatus(Model):
    """The cache ConfigMap and how fresh it is (docs/reference/freshness.md)."""

    config_map: str
    cached_at: str | None = None        # when the ConfigMap's content was written (it changes only with it)
    verified_at: str | None = None      # when a sync last found the server listing exactly this content
    expires_at: str | None = None       # verifiedAt plus the catalog's lifetime: the next resync is due by then
    content_hash: str | None = None


class ErrorInfo(Model):
    reason: str
    message: str


class LastSync(Model):
    trigger: Trigger
    started_at: str
    completed_at: str
    duration_ms: int
    result: Literal["Succeeded", "Failed"]
    error: ErrorInfo | None = None


class LastRefresh(Model):
    token: str
    reason: str | None = None
    force: bool = False
    requested_at: str
    completed_at: str
    result: RefreshResult
    previous_tool_count: int | None = None
    tools_discovered: int | None = None
    new_tools: list[str] = Field(default_factory=list)
    removed_tools: list[str] = Field(default_factory=list)
    changed_tools: list[str] = Field(default_factory=list)
    new_tools_count: int = 0
    removed_tools_count: int = 0
    changed_tools_count: int = 0
    error: ErrorInfo | None = None


class Condition(Model):
    """metav1.Condition."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: str
    observed_generation: int | None = None


class Status(Model):
    observed_generation: int | None = None
    phase: Phase = "Pending"
    url: str | None = None
    owner: str | None = None
    server: ServerInfo | None = None
    tool_count: int = 0
    tools: list[ToolStatus] = Field(default_factory=list)
    tools_truncated: bool = False
    cache: CacheStatus | None = None
    last_sync: LastSync | None = None
    last_refresh: LastRefresh | None = None
    fetched_with: FetchedWith | None = None
    consecutive_failures: int = 0
    next_sync_at: str | None = None
    references: list[Reference] = Field(default_factory=list, max_length=32)
    conditions: list[Condition] = Field(default_factory=list)


# ---------------------------------------------------------------------------- cache


class CachedTool(Model):
    """One tool in the cache ConfigMap's tools.json: its definition as the server sent it, and our
    bookkeeping. Fields of the definition the operator does not know are kept, as sent, in `extra`."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore",
                              use_attribute_docstrings=True)

    name: str
    """The tool's name, as the server lists it (the full name, however long)."""
    title: str | None = None
    """The tool's display title, as the server sent it."""
    description: str | None = None
    """The tool's description, as the server sent it: what the model reads."""
    input_schema: dict[str, Any] | None = None
    """The JSON Schema of the tool's arguments, as the server sent it."""
    output_schema: dict[str, Any] | None = None
    """The JSON Schema of the tool's structured result, as the server sent it."""
    annotations: dict[str, Any] | None = None
    """The tool's annotations (readOnlyHint, destructiveHint, ...), as the server sent them."""
    icons: list[Any] | None = None
    """The tool's icons, as the server sent them."""
    execution: dict[str, Any] | None = None
    """The tool's execution hints, as the server sent them."""
    extra: dict[str, Any] | None = None
    """Every other field of the definition the server sent (but _meta), kept as sent; the hash covers them."""
    available: bool = True
    """False when the server no longer lists the tool: it is kept, with removedAt, and never deleted."""
    enabled: bool = True
    """From spec.tools[].enabled (default true)."""
    selected: bool = True
    """Whether spec.toolSelector selects the tool."""
    approved: bool = True
    """Whether the tool's current definition is approved; always true without an approval policy."""
    schema_hash: str
    """sha256: over the RFC 8785 canonical JSON of the definition as received, every field but name and _meta."""
    approved_hash: str | None = None
    """The schemaHash of the definition that is approved, if any."""
    # Under an approval policy, for a changed tool awaiting approval: the definition that was approved.
    approved_definition: dict[str, Any] | None = None
    """Under an approval policy, for a changed tool awaiting approval: the definition that was approved, in full."""
    first_seen: str
    """When the operator first saw the tool (RFC 3339); kept when it disappears and comes back."""
    removed_at: str | None = None
    """When the server stopped listing the tool (RFC 3339); null while it is available."""

    def document(self) -> dict[str, Any]:
        """The JSON entry in tools.json: every field present, nulls included."""
        return self.model_dump(by_alias=True, mode="json")


class CacheSource(Model):
    """The resource the catalog belongs to, and the URL it was fetched from."""

    kind: str
    """ToolServer or ConnectorConfig."""
    namespace: str
    """The resource's namespace."""
    name: str
    """The resource's name."""
    url: str
    """The effective URL (a ConnectorConfig's own, or the one it inherits from its ToolServer)."""


class ApprovalRecord(Model):
    """The approval policy the document was written under, and when its baseline was taken."""

    policy: ApprovalPolicy = "None"
    """spec.approval.policy when the document was written: None, NewAndChanged or All."""
    baseline_at: str | None = None
    """When the policy first applied and the definitions then cached were approved (NewAndChanged)."""


class CacheDocument(Model):
    """The whole tools.json document."""

    source: CacheSource
    """The resource the catalog belongs to."""
    server: ServerInfo
    """What the server said of itself."""
    cached_at: str
    """When this content was written (RFC 3339): the document changes only when the catalog does, so a resync that
    finds the server's list unchanged leaves it (and this time) as it is. How fresh the catalog is (when a sync last
    verified it, when it expires) is in the resource's status.cache and its Ready condition."""
    hash_version: int = 1           # documents written before hashVersion existed used version 1
    """What schemaHash means: the operator's hash version (documents written before hashVersion existed used 1)."""
    fetched_with: FetchedWith | None = None
    """Whose credentials fetched the catalog: a Secret's name and key, never a value."""
    approval: ApprovalRecord = Field(default_factory=ApprovalRecord)
    """The approval policy the document was written under."""
    tools: list[CachedTool]
    """Every tool the server listed and every tool it stopped listing, sorted by name. An agent offers only those
    where available, enabled, selected and approved are all true."""
