"""The ToolAllowlist kind (api.md "ToolAllowlist"): its spec and status models, and parsing a body once.

crds/toolallowlists.yaml holds the OpenAPI schema and the CEL rules; tests/unit/test_crd_models.py
keeps both in step. No I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from . import constants as c
from .errors import SyncError
from .models import NAME_PATTERN, URL_PATTERN, Condition, Model, SecretKeyRef
from .spec import describe_validation_error

DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
MAX_SOURCES = 32        # keeps the CRD's CEL uniqueness rules cheap (quadratic in the list)
MAX_TARGETS = 16
WITHHELD_NAMES_MAX = 50  # names listed per withheld reason in status; the count is complete
CHANGE_NAMES_MAX = 50

OnSourceFailure = Literal["Keep", "Withdraw"]
TargetType = Literal["configMap", "toolhive", "toolhiveWebhook", "contextforge"]
TargetState = Literal["Published", "Pending", "Unavailable", "Conflict", "Failed"]
SourceState = Literal["Current", "Kept", "Withdrawn", "NoCatalog", "NotFound", "Loading"]
WithheldReason = Literal["Pending", "Unavailable", "Disabled", "NotSelected"]

TARGET_TYPES: tuple[TargetType, ...] = ("configMap", "toolhive", "toolhiveWebhook", "contextforge")
WITHHELD_REASONS: tuple[WithheldReason, ...] = ("Unavailable", "Disabled", "NotSelected", "Pending")


# ---------------------------------------------------------------------------- spec


class SourceObjectRef(Model):
    name: str = Field(min_length=1, max_length=253, pattern=NAME_PATTERN)


class AllowlistSource(Model):
    """One ToolServer or ConnectorConfig of the same namespace, and its name at the gateways."""

    tool_server_ref: SourceObjectRef | None = None
    connector_config_ref: SourceObjectRef | None = None
    as_: str | None = Field(default=None, alias="as", max_length=63, pattern=DNS_LABEL_PATTERN)

    @model_validator(mode="after")
    def _exactly_one(self) -> AllowlistSource:
        if (self.tool_server_ref is None) == (self.connector_config_ref is None):
            raise ValueError("each source needs exactly one of toolServerRef and connectorConfigRef")
        return self

    @property
    def kind(self) -> str:
        return c.KIND_TOOLSERVER if self.tool_server_ref is not None else c.KIND_CONNECTORCONFIG

    @property
    def name(self) -> str:
        ref = self.tool_server_ref or self.connector_config_ref
        assert ref is not None
        return ref.name

    @property
    def alias(self) -> str:
        """The server's name at the gateways: `as`, else the resource's name."""
        return self.as_ or self.name


class ConfigMapTarget(Model):
    name: str = Field(min_length=1, max_length=253, pattern=NAME_PATTERN)


class ToolHiveTarget(Model):
    """One MCPToolConfig per source, named `<allowlist>-<as>`; nothing to configure."""


class ToolHiveWebhookTarget(Model):
    """The operator answers ToolHive's validating webhook for these sources; nothing to configure."""


class ContextForgeTarget(Model):
    url: str = Field(max_length=2048, pattern=URL_PATTERN)
    token_secret_ref: SecretKeyRef
    virtual_server: str | None = Field(default=None, min_length=1, max_length=255)


class AllowlistTarget(Model):
    config_map: ConfigMapTarget | None = None
    toolhive: ToolHiveTarget | None = None
    toolhive_webhook: ToolHiveWebhookTarget | None = None
    contextforge: ContextForgeTarget | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> AllowlistTarget:
        if sum(value is not None for value in (self.config_map, self.toolhive, self.toolhive_webhook,
                                               self.contextforge)) != 1:
            raise ValueError("each target needs exactly one of configMap, toolhive, toolhiveWebhook and contextforge")
        return self

    @property
    def type(self) -> TargetType:
        if self.config_map is not None:
            return "configMap"
        if self.toolhive is not None:
            return "toolhive"
        if self.toolhive_webhook is not None:
            return "toolhiveWebhook"
        return "contextforge"


class ToolAllowlistSpec(Model):
    sources: list[AllowlistSource] = Field(min_length=1, max_length=MAX_SOURCES)
    targets: list[AllowlistTarget] = Field(min_length=1, max_length=MAX_TARGETS)
    on_source_failure: OnSourceFailure = "Keep"

    @model_validator(mode="after")
    def _unique(self) -> ToolAllowlistSpec:
        aliases = [source.alias for source in self.sources]
        if len(set(aliases)) != len(aliases):
            raise ValueError("every source needs its own `as` name (default: the resource's name)")
        names = [(target.type, target.config_map.name if target.config_map else "") for target in self.targets
                 if target.type in ("configMap", "toolhive", "toolhiveWebhook")]
        if len(set(names)) != len(names):
            raise ValueError("a configMap target names each ConfigMap once; toolhive and toolhiveWebhook appear "
                             "at most once")
        return self


# ---------------------------------------------------------------------------- status


class WithheldTools(Model):
    """Tools of a source that are not allowed, for one reason (each tool is counted under one)."""

    reason: WithheldReason
    count: int = Field(ge=0)
    tools: list[str] = Field(default_factory=list)     # at most WITHHELD_NAMES_MAX, by name


class AllowlistSourceStatus(Model):
    kind: Literal["ToolServer", "ConnectorConfig"]
    name: str
    as_: str = Field(alias="as")
    state: SourceState
    message: str | None = None
    url: str | None = None
    approval_policy: str | None = None      # None: every usable tool is allowed, unreviewed
    allowed: int = Field(default=0, ge=0)
    withheld: list[WithheldTools] = Field(default_factory=list)


class AllowlistTargetStatus(Model):
    type: TargetType
    state: TargetState
    reason: str | None = None
    message: str | None = None
    object: str | None = None                   # configMap: the ConfigMap's name
    objects: list[str] = Field(default_factory=list)   # toolhive: the MCPToolConfigs, one per source
    endpoint: str | None = None                 # contextforge: its URL; toolhiveWebhook: the webhook path
    published: int = Field(default=0, ge=0)     # tools the target holds as allowed
    content_hash: str | None = None
    last_published_at: str | None = None


class LastChange(Model):
    """The last change of the allowed set, as `<as>/<tool>` names (cut to 50; the counts are complete)."""

    at: str
    added: list[str] = Field(default_factory=list)
    withdrawn: list[str] = Field(default_factory=list)
    added_count: int = Field(default=0, ge=0)
    withdrawn_count: int = Field(default=0, ge=0)


class AllowlistStatus(Model):
    observed_generation: int | None = None
    tool_count: int = 0
    source_names: str | None = None     # "github,fs": what `kubectl get` shows (a column takes one value)
    target_types: str | None = None
    sources: list[AllowlistSourceStatus] = Field(default_factory=list)
    targets: list[AllowlistTargetStatus] = Field(default_factory=list)
    last_change: LastChange | None = None
    conditions: list[Condition] = Field(default_factory=list)


# ---------------------------------------------------------------------------- the object


@dataclass(frozen=True)
class Allowlist:
    """One ToolAllowlist as the operator sees it: parsed once, at the edge."""

    namespace: str
    name: str
    uid: str
    generation: int
    resource_version: str | None
    spec: ToolAllowlistSpec | None
    spec_error: SyncError | None
    status: AllowlistStatus

    @property
    def key(self) -> tuple[str, str, str]:
        return (c.KIND_TOOLALLOWLIST, self.namespace, self.name)

    def describe(self) -> str:
        return f"{c.KIND_TOOLALLOWLIST} {self.namespace}/{self.name}"

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Allowlist:
        meta = body.get("metadata") or {}
        spec: ToolAllowlistSpec | None = None
        spec_error: SyncError | None = None
        try:
            spec = parse_allowlist_spec(body.get("spec") or {})
        except SyncError as error:
            spec_error = error
        try:
            status = AllowlistStatus.model_validate(body.get("status") or {})
        except ValidationError:
            status = AllowlistStatus()
        return cls(namespace=str(meta.get("namespace") or ""), name=str(meta.get("name") or ""),
                   uid=str(meta.get("uid") or ""), generation=int(meta.get("generation") or 0),
                   resource_version=meta.get("resourceVersion"), spec=spec, spec_error=spec_error, status=status)


def parse_allowlist_spec(spec: Mapping[str, Any]) -> ToolAllowlistSpec:
    """The spec as a model, or SyncError InvalidSpec naming each problem (the CRD's rules, for an API
    server that did not enforce them)."""
    try:
        return ToolAllowlistSpec.model_validate(dict(spec))
    except ValidationError as exc:
        raise SyncError(c.REASON_INVALID_SPEC, describe_validation_error(c.KIND_TOOLALLOWLIST, exc)) from None
