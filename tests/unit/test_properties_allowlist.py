"""Properties of ToolAllowlists over runs of source changes, through the real source reconciler, the
in-memory catalogs and the allowlist reconciler (tests/engine/allowlist_world.py's in-memory API server).

A run is a ToolServer under an approval policy and an allowlist writing every target type, then steps:
tools added, changed (a rug pull), removed, approved, disabled or enabled, deselected or selected, each
followed by a sync that succeeds, whose fetch fails, or whose cache write fails (the work queue retries
it). After each step:

- equal: every target (the ConfigMap document, the MCPToolConfig's toolsFilter, ContextForge, the webhook's
  answer) holds exactly what the source's cache offers agents (available, enabled, selected, approved), less
  what the spec has taken away since (a sync that failed did not rewrite the cache), or nothing when the
  source's last sync failed and onSourceFailure is Withdraw; a toolsFilter is never empty;
- safe: no tool is in a target, or in the webhook's answer even while a sync is still writing, unless it is
  the definition the server last served, enabled and selected, and (under a policy) approved at that very
  hash: its hash was approved in the spec, or (NewAndChanged) it is the hash seen in the first sync;
- woken: the allowlist is reconciled only when something woke it (as the work queue runs it; the 2-minute
  resync never comes within a run), and ContextForge refreshes itself after every sync that saw the
  server, as it does on the server's list_changed: a tool it discovers that way is inactive again after
  those reconciles.

The expectations are kept from what the steps did, not from the modules under test.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tests.engine.allowlist_world import AllowlistWorld
from tests.engine.fakes import NS
from toolcatalog.api import constants as c
from toolcatalog.api.errors import SyncError
from toolcatalog.api.toolhive import NO_TOOL_ALLOWED
from toolcatalog.engine.reconciler import TransientError
from toolcatalog.kube.errors import ApiError
from toolcatalog.reconcile.hashing import definition_hash, definition_of

NAMES = ["alpha", "beta", "gamma", "delta"]
STEPS = st.lists(st.tuples(st.sampled_from(["new", "change", "remove", "approve", "disable", "enable", "deselect",
                                            "select"]),
                           st.sampled_from(NAMES),
                           st.sampled_from(["synced", "synced", "fetch-fails", "write-fails"])),
                 min_size=1, max_size=12)


def definition(name: str, version: int) -> dict[str, Any]:
    return {"name": name, "description": f"{name}, version {version}", "inputSchema": {"type": "object"}}


@dataclass
class Model:
    """What the steps did, and what may therefore be allowed."""

    policy: str
    served: dict[str, int] = field(default_factory=dict)         # name -> version the server lists now
    known: dict[str, str] = field(default_factory=dict)          # name -> hash of the last successful fetch
    first: dict[str, str] = field(default_factory=dict)          # trust on first use: the first sync's hashes
    approved: dict[str, set[str]] = field(default_factory=dict)  # hashes ever approved in the spec
    latest: dict[str, str] = field(default_factory=dict)         # the spec's approvedHash now
    disabled: set[str] = field(default_factory=set)
    deselected: set[str] = field(default_factory=set)
    failing: bool = False

    def hash_of(self, name: str) -> str:
        return definition_hash(definition_of(definition(name, self.served[name])))

    def fetched(self) -> None:
        self.known = {name: self.hash_of(name) for name in self.served}

    def may_allow(self, name: str, digest: str) -> bool:
        if self.known.get(name) != digest or name in self.disabled or name in self.deselected:
            return False
        if self.policy == "None":
            return True
        return digest in self.approved.get(name, set()) or (self.policy == "NewAndChanged"
                                                          and self.first.get(name) == digest)


class Run:
    def __init__(self, policy: str, on_failure: str) -> None:
        self.world = AllowlistWorld([])
        self.model = Model(policy)
        self.on_failure = on_failure
        self.token = 0
        self.retry_after: float | None = None       # what the last allowlist reconcile asked for
        self.world.kube.secret("forge", {"token": "t0ken"})

    def spec(self) -> dict[str, Any]:
        model = self.model
        settings = [{"name": name, **({"enabled": False} if name in model.disabled else {}),
                     **({"approvedHash": model.latest[name]} if name in model.latest else {})}
                    for name in NAMES if name in model.disabled or name in model.latest]
        return {"url": "http://github-mcp.test/mcp", "approval": {"policy": model.policy}, "tools": settings,
                "toolSelector": {"exclude": sorted(model.deselected)}}

    def serve(self) -> None:
        self.world.fetch.tools = [definition(name, version) for name, version in sorted(self.model.served.items())]

    async def start(self) -> None:
        self.model.served = {"alpha": 0, "beta": 0}
        self.serve()
        self.world.allow("gateway", {
            "sources": [{"toolServerRef": {"name": "github"}}], "onSourceFailure": self.on_failure,
            "targets": [{"configMap": {"name": "allowed"}}, {"toolhive": {}}, {"toolhiveWebhook": {}},
                        {"contextforge": {"url": "http://forge.test", "tokenSecretRef": {"name": "forge",
                                                                                          "key": "token"}}}]})
        await self.sync()
        await self.publish()

    async def sync(self, fail: bool = False, write_fails: bool = False) -> None:
        self.token += 1
        self.world.clock.advance(60)
        self.world.apply("github", self.spec(), annotations={c.ANN_REFRESH: str(self.token)})
        if fail:        # the server changed (or not), but the operator cannot see it
            self.world.fetch.error = SyncError(c.REASON_SERVER_UNAVAILABLE, "connection refused")
        if write_fails:
            self.world.kube.fail["patch_configmap"] = ApiError(503, "ServiceUnavailable", "HTTP 503")
            try:
                await self.world.reconcile("github")
            except TransientError:
                pass
            # A sync that finds the catalog unchanged writes no ConfigMap: nothing of it can fail then.
            self.world.kube.fail.pop("patch_configmap", None)
            # The sync wrote nothing, but what it found is already all the webhook may answer.
            self.model.fetched()
            self.check_safe(self.world.allowlists.allowed(NS, "gateway", "github") or {}, "webhook mid-sync")
            self.world.watch(c.KIND_TOOLSERVER, "github")
        await self.world.reconcile("github")        # the work queue's retry (or the one sync of this step)
        self.world.fetch.error = None
        self.world.watch(c.KIND_TOOLSERVER, "github")
        self.model.failing = fail
        if not fail:
            self.model.fetched()
            if self.token == 1:     # the first sync: trust on first use
                self.model.first = dict(self.model.known)
            elif "github" in self.world.forge.gateways:
                self.world.forge.refresh_on_its_own("github", self.model.known)
        self.check_safe(self.world.allowlists.allowed(NS, "gateway", "github") or {}, "webhook after the sync")

    async def publish(self) -> None:
        """The allowlist's reconciles the work queue would run now: when woken, or retried (the delay passed)."""
        woken = bool(self.world.woken) or self.retry_after is None \
            or self.retry_after < self.world.allowlists.resync
        self.world.woken.clear()
        if woken:
            publishes = len(self.world.forge.tokens)
            self.retry_after = await self.world.reconcile_allowlist("gateway")
            self.world.watch(c.KIND_TOOLALLOWLIST, "gateway")
            if len(self.world.forge.tokens) > publishes:    # a publish refreshes: ContextForge lists every tool
                self.world.forge.seen.setdefault("github", set()).update(self.model.served)
        model = self.model
        expected = {} if model.failing and self.on_failure == "Withdraw" else {
            name: digest for name, digest in self.world.cache_usable("github").items()
            if name not in model.disabled and name not in model.deselected
            and (model.policy != "All" or model.latest.get(name) == digest)}
        targets = {
            "webhook": self.world.allowlists.allowed(NS, "gateway", "github"),
            "configMap": self.world.documented("allowed")["github"],
            "contextforge": self.world.forge.gateways["github"][1],
        }
        for where, held in targets.items():
            assert held == expected, (where, held, expected)
            self.check_safe(held, where)
        toolsfilter = self.world.toolsfilter("gateway-github")
        assert toolsfilter == (sorted(expected) or [NO_TOOL_ALLOWED])

    def check_safe(self, held: dict[str, str], where: str) -> None:
        for name, digest in held.items():
            assert self.model.may_allow(name, digest), (where, name, digest, self.model)

    async def step(self, action: str, name: str, outcome: str) -> None:
        model = self.model
        if action == "new" and name not in model.served:
            model.served[name] = 0
        elif action == "change" and name in model.served:
            model.served[name] += 1
        elif action == "remove":
            model.served.pop(name, None)
        elif action == "approve" and name in model.known:
            model.approved.setdefault(name, set()).add(model.known[name])
            model.latest[name] = model.known[name]
        elif action == "disable":
            model.disabled.add(name)
        elif action == "enable":
            model.disabled.discard(name)
        elif action == "deselect":
            model.deselected.add(name)
        elif action == "select":
            model.deselected.discard(name)
        self.serve()
        await self.sync(fail=outcome == "fetch-fails", write_fails=outcome == "write-fails")
        await self.publish()


@given(policy=st.sampled_from(["None", "NewAndChanged", "All"]), on_failure=st.sampled_from(["Keep", "Withdraw"]),
       steps=STEPS)
def test_every_target_equals_the_allowed_set_and_nothing_unapproved_is_ever_allowed(policy: str, on_failure: str,
                                                                                    steps: list[tuple[str, str, str]]):
    async def run() -> None:
        scenario = Run(policy, on_failure)
        await scenario.start()
        for action, name, outcome in steps:
            await scenario.step(action, name, outcome)
    asyncio.run(run())
