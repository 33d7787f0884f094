"""What every condition type, reason, phase, trigger and Event reason means, and what to do about it.

The words users read in docs/reference/conditions.md, kept next to the names in constants.py so that
they cannot drift apart: the page is generated from these tables (`make docs-gen`), and
tests/unit/test_reasons.py fails when a name in constants.py has no entry here. How a failure is
retried is not repeated here: the page reads it from errors.py, which the operator follows.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import constants as c


@dataclass(frozen=True)
class ConditionType:
    type: str
    meaning: str          # what the condition says, and when it is present


@dataclass(frozen=True)
class Reason:
    condition: str        # the condition type it appears in
    reason: str
    status: str           # the condition's status with this reason: "True", "False" or "True or False"
    meaning: str
    action: str = ""      # what to do; empty: nothing
    retry_note: str = ""  # said after how errors.py retries it (Synced failures only)
    kind: str = ""        # empty: ToolServer and ConnectorConfig; else the kind it is a reason of


@dataclass(frozen=True)
class Described:
    """A phase, a sync trigger or an Event reason: a name and what it means."""

    name: str
    meaning: str
    action: str = ""
    type: str = ""        # Events only: Normal or Warning


CONDITION_TYPES = (
    ConditionType(c.COND_READY, "A usable cache exists, fresh or stale: agents can mount the ConfigMap and find "
                                "a catalog in it. Always present once the operator has looked at the resource."),
    ConditionType(c.COND_SYNCED, "The last sync succeeded. When it is False, its reason says why the last sync "
                                 "failed and its message what to fix and when the next attempt is."),
    ConditionType(c.COND_REFRESHED, "The outcome of the last refresh asked for with the `toolcatalog.dev/refresh` "
                                    "annotation; present once a refresh has been answered."),
    ConditionType(c.COND_APPROVED, "Present only under an approval policy (`spec.approval.policy` other than "
                                   "`None`): False while any tool awaits approval. A pending tool never makes the "
                                   "resource not Ready."),
    ConditionType(c.COND_STALLED, "kstatus' abnormal-true condition (Flux, Argo CD and kpt read it): present, True, "
                                  "only while the last sync failed for a reason no retry alone can fix. Someone has "
                                  "to change the spec, a Secret, the server, a policy or the operator's settings."),
)

_RESYNC = "then `kubectl toolcatalog refresh KIND/NAME --force --wait` to sync at once"

REASONS = (
    # Ready
    Reason(c.COND_READY, c.REASON_CACHE_FRESH, "True",
           "The last sync succeeded; the cache is current until `status.cache.expiresAt`."),
    Reason(c.COND_READY, c.REASON_CACHE_STALE, "True",
           "The last sync failed; the previous cache is still served, unchanged (`phase: Stale`).",
           "See the Synced reason."),
    Reason(c.COND_READY, c.REASON_NO_CACHE, "False",
           "No sync has succeeded yet, so there is no cache (`phase: Failed`).",
           "See the Synced reason."),
    Reason(c.COND_READY, c.REASON_SUSPENDED, "True or False",
           "`spec.sync.suspend` is true: nothing is synced; the cache, if there is one, is kept as it is "
           "(True with a cache, False without).",
           "Set `spec.sync.suspend: false` to sync again."),
    # Synced
    Reason(c.COND_SYNCED, c.REASON_SYNC_SUCCEEDED, "True",
           "The last sync listed the server's tools and wrote the cache and status."),
    Reason(c.COND_SYNCED, c.REASON_SERVER_UNAVAILABLE, "False",
           "The server could not be reached or failed: connection refused, DNS failure, HTTP 5xx or 404, "
           "TLS verification failure.",
           f"Check that the server is up and `spec.url` (host, port, path); {_RESYNC} after fixing it.",
           "A server's `Retry-After` (429, 503) is honoured, up to 5 minutes."),
    Reason(c.COND_SYNCED, c.REASON_AUTH_FAILED, "False",
           "The server answered 401 or 403 to the credentials the operator sent.",
           "Put the right token in the Secret that `spec.auth` references.",
           "At once when a referenced Secret changes."),
    Reason(c.COND_SYNCED, c.REASON_TIMEOUT, "False",
           "No complete answer within `spec.sync.timeoutSeconds` (capped by the operator's `--max-sync-timeout`).",
           "The server answers too slowly: raise `spec.sync.timeoutSeconds` (the operator caps it at "
           "`--max-sync-timeout`, 60 s by default), or fix the server."),
    Reason(c.COND_SYNCED, c.REASON_PROTOCOL_ERROR, "False",
           "Not an MCP answer (a wrong path, a proxy's HTML page), a redirect (never followed), an answer over "
           "`--max-response-bytes` or a catalog over `--max-catalog-bytes`, a repeated pagination cursor, more "
           "than 1000 pages, a tool listed twice, a malformed tool (a tool whose `inputSchema` is null, missing or "
           "not an object included: the protocol requires one), a JSON-RPC answer whose `id` is not the "
           "request's, or a tool name that holds a credential the operator sent. Nothing from that answer is "
           "used: the previous cache stays as it was.",
           "The message says which. Fix the server, or put the final URL of a redirect in `spec.url`."),
    Reason(c.COND_SYNCED, c.REASON_INVALID_SPEC, "False",
           "The spec cannot be used; the message names the field (a host that is not an ASCII DNS name or IP "
           "address, a header value read from a Secret that is not printable ASCII: the Secret and key, never "
           "the value).",
           "Fix the spec, or the Secret the message names (the CRD's validation and the admission webhook refuse "
           "most bad specs at `kubectl apply`)."),
    Reason(c.COND_SYNCED, c.REASON_SECRET_NOT_FOUND, "False",
           "A referenced Secret, or a key in it, is missing.",
           "Create the Secret or fix the reference; it is picked up as soon as it appears."),
    Reason(c.COND_SYNCED, c.REASON_CONFIGMAP_NOT_FOUND, "False",
           "The ConfigMap of `spec.tls.caBundle`, or the key in it, is missing.",
           "Create the ConfigMap or fix the reference; it is picked up as soon as it appears."),
    Reason(c.COND_SYNCED, c.REASON_TOOLSERVER_NOT_FOUND, "False",
           "The ToolServer a ConnectorConfig references (`spec.toolServerRef`) does not exist.",
           "Create the ToolServer or fix the reference; it is picked up as soon as it is created."),
    Reason(c.COND_SYNCED, c.REASON_EGRESS_DENIED, "False",
           "The server's address is in a network the operator may not reach (`--egress-deny`, `--egress-allow`); "
           "every address a host name resolves to is checked.",
           "Use another address, or change the operator's egress settings."),
    Reason(c.COND_SYNCED, c.REASON_CACHE_TOO_LARGE, "False",
           "The catalog does not fit in one ConfigMap even gzip-compressed (about 1 MiB), or the API server "
           "refused a write as too large (413).",
           "Select fewer tools with `spec.toolSelector`."),
    Reason(c.COND_SYNCED, c.REASON_CACHE_CONFLICT, "False",
           "A ConfigMap of the cache's name exists and this resource does not own it; it is never overwritten.",
           "Delete that ConfigMap, or set `spec.cache.configMapName` to another name."),
    Reason(c.COND_SYNCED, c.REASON_WRITE_REJECTED, "False",
           "The API server refused the status or the cache as invalid (422 or 400: an admission policy, a "
           "schema); the message quotes its reason. The previous cache is put back, so status and cache still "
           "describe one catalog.",
           "Fix the policy or schema that refused the write, or what in the catalog it refuses."),
    Reason(c.COND_SYNCED, c.REASON_FORBIDDEN, "False",
           "The operator's RBAC does not allow a read it needs.",
           "Apply `deploy/` (or the Helm chart) again: `deploy/base/rbac.yaml` lists what the operator needs."),
    Reason(c.COND_SYNCED, c.REASON_INTERNAL_ERROR, "False",
           "An exception no code path expected: a bug in the operator. The failure is recorded like any other "
           "(the previous cache is kept) and retried with backoff; the message names the exception's type and "
           "the step, never its text, which may quote a credential.",
           "Report it with the operator's log, which has the traceback (credentials masked)."),
    # Refreshed
    Reason(c.COND_REFRESHED, c.REASON_REFRESH_SUCCEEDED, "True",
           "The last refresh fetched the catalog; the message and `status.lastRefresh` hold the diff."),
    Reason(c.COND_REFRESHED, c.REASON_REFRESH_FAILED, "False",
           "The last refresh's sync failed; `status.lastRefresh.error` has the Synced reason and message.",
           "See the Synced reason."),
    Reason(c.COND_REFRESHED, c.REASON_RATE_LIMITED, "False",
           "The refresh came within `spec.sync.minIntervalSeconds` of the previous sync and was not forced; "
           "its token is acknowledged all the same.",
           "Wait, or refresh with `--force` (`toolcatalog.dev/refresh-force` set to the token)."),
    # Approved
    Reason(c.COND_APPROVED, c.REASON_ALL_APPROVED, "True",
           "Every listed tool's current definition is approved."),
    Reason(c.COND_APPROVED, c.REASON_APPROVAL_PENDING, "False",
           "Tools await approval; the message names each, says whether it is new or changed, and how to approve.",
           "Review each with `kubectl toolcatalog diff`, then `kubectl toolcatalog approve` (or `approve --print` "
           "for Git)."),
)

_ALLOWLIST = "ToolAllowlist"

ALLOWLIST_REASONS = (
    Reason(c.COND_READY, c.REASON_PUBLISHED, "True",
           "Every target holds the current allowlist.", kind=_ALLOWLIST),
    Reason(c.COND_READY, c.REASON_TARGET_UNAVAILABLE, "False",
           "A target cannot be written yet: its kind is not installed (no ToolHive CRDs), or this operator serves "
           "no webhook for a `toolhiveWebhook` target. Retried, and published once it can be; the other targets "
           "work meanwhile.",
           "Install ToolHive's CRDs, or run the operator with `--webhook-port`; or drop the target.", kind=_ALLOWLIST),
    Reason(c.COND_READY, c.REASON_TARGET_CONFLICT, "False",
           "An object of a target's name exists and this ToolAllowlist does not own it: it is never overwritten "
           "(also `Stalled`). The other targets are still written.",
           "Delete that object, or name another one in the target.", kind=_ALLOWLIST),
    Reason(c.COND_READY, c.REASON_TARGET_FAILED, "False",
           "Writing a target failed: the API server or the gateway refused the write or could not be reached; "
           "the message names the target and why. Retried; `Stalled` while only a change can help (a write "
           "refused as invalid or forbidden).",
           "Read the target's message in `status.targets`; fix the gateway, its token Secret, or the permissions.",
           kind=_ALLOWLIST),
    Reason(c.COND_READY, c.REASON_SOURCE_NOT_FOUND, "False",
           "A source the allowlist names does not exist; it allows nothing, and the other sources are published "
           "as usual.",
           "Create the ToolServer or ConnectorConfig, or fix the reference.", kind=_ALLOWLIST),
)

# Stalled takes the Synced reason of the failure; which reasons do is errors.STALLED_REASONS.
STALLED_MEANING = ("The last sync failed for this reason, and no retry alone can fix it; the message repeats the "
                   "failure. Removed at the next successful sync, or when the failure turns into one a retry can fix.")

# A failure of the Kubernetes API itself is never written to status: the queue retries it.
API_UNAVAILABLE_MEANING = ("The Kubernetes API failed (5xx, 429, a timeout, a conflict): never written to status; "
                           "the work queue retries the key with its backoff and status stays as it was.")

PHASES = (
    Described(c.PHASE_PENDING, "The operator has not finished a first sync yet."),
    Described(c.PHASE_READY, "The last sync succeeded (Ready `CacheFresh`)."),
    Described(c.PHASE_STALE, "The last sync failed; the previous cache is still served (Ready `CacheStale`)."),
    Described(c.PHASE_FAILED, "No sync has succeeded yet: there is no cache (Ready `NoCache`)."),
    Described(c.PHASE_SUSPENDED, "`spec.sync.suspend` is true: no syncs (Ready `Suspended`)."),
)

TRIGGERS = (
    Described(c.TRIGGER_CREATE, "The resource was created, or has never been synced."),
    Described(c.TRIGGER_UPDATE, "Its spec changed (`generation` ahead of `status.observedGeneration`), or something "
                                "it inherits or reads changed: the ToolServer a ConnectorConfig references (its spec, "
                                "or a new ToolServer of that name), a CA bundle's ConfigMap."),
    Described(c.TRIGGER_SCHEDULE, "The cache expired (`status.nextSyncAt` passed), or a retry after a failure."),
    Described(c.TRIGGER_REFRESH, "A new value of the `toolcatalog.dev/refresh` annotation asked for it."),
    Described(c.TRIGGER_SECRET, "A referenced Secret changed (a rotation)."),
    Described(c.TRIGGER_LIST_CHANGED, "The server notified that its tool list changed."),
    Described(c.TRIGGER_RESUME, "The operator restarted, and the server notifies of tool-list changes: those "
                                "notifications went unheard meanwhile (a resource on the TTL schedule needs no "
                                "resync)."),
)

EVENTS = (
    Described(c.EVENT_SYNCED, "The first successful sync: how many usable tools, from where, cached in which "
                              "ConfigMap.", type="Normal"),
    Described(c.EVENT_SYNC_FAILED, "A sync failed, when syncing starts failing or fails for a new reason (not on "
                                   "every retry); the message is the Synced reason and message.",
              "See the Synced reason.", type="Warning"),
    Described(c.EVENT_RECOVERED, "A sync succeeded after failures, with how many attempts failed and why.",
              type="Normal"),
    Described(c.EVENT_TOOLS_CHANGED, "A sync after the first found a non-empty diff (new, removed or changed tools), "
                                     "whatever triggered it; the message ends with the trigger.",
              "Under an approval policy, review the changes: `kubectl toolcatalog status -A`.", type="Normal"),
    Described(c.EVENT_REFRESHED, "A refresh was answered; the message holds its token and the diff.", type="Normal"),
    Described(c.EVENT_RATE_LIMITED, "A refresh was answered `RateLimited`.",
              "Wait, or refresh with `--force`.", type="Normal"),
    Described(c.EVENT_APPROVAL_PENDING, "Tools await approval, once per new set of pending tools (not on every "
                                        "resync of the same set); the message is the Approved condition's.",
              "`kubectl toolcatalog diff` each, then `kubectl toolcatalog approve`.", type="Warning"),
    # ToolAllowlist
    Described(c.EVENT_TOOLS_ALLOWED, "ToolAllowlist: tools newly allowed in every target.", type="Normal"),
    Described(c.EVENT_TOOLS_WITHDRAWN, "ToolAllowlist: tools withdrawn from every target, each with why (definition "
                                       "changed, awaits approval, no longer listed by the server, disabled, ...).",
              "Review the changed or pending tools on their source: `kubectl toolcatalog diff`.", type="Normal"),
    Described(c.EVENT_WITHDRAWAL_FAILED, "ToolAllowlist: a target that must withdraw tools cannot be written; it is "
                                         "retried until it holds.",
              "Fix what the message names (the gateway, its token, the permissions): that target still allows the "
              "withdrawn tools.", type="Warning"),
    Described(c.EVENT_TARGET_RECOVERED, "ToolAllowlist: a target holds the allowlist again after failing. A target "
                                        "that starts failing posts a Warning whose reason is the Ready reason "
                                        "(`TargetConflict`, `TargetUnavailable`, `TargetFailed`), not on every retry.",
              type="Normal"),
)
