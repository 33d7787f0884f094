"""Tool approval against rug pulls: which definitions agents may use. Pure.

`spec.approval.policy`:

- `None`: every listed tool is approved (the catalog as before approval existed).
- `NewAndChanged`: trust on first use. When the policy first applies, the baseline is taken: the
  definitions of the previous catalog if the resource had one, else those of this sync. Afterwards
  a tool whose definition differs from its baseline (a rug pull), and a tool never seen before (a
  renamed one too), is Pending until approved.
- `All`: a tool is approved only when `spec.tools[].approvedHash` is its current hash.

`spec.tools[].approvedHash` (kept in Git) approves one exact definition under either policy, and
becomes the tool's new baseline. Baselines survive removal: a tool that comes back with the same
definition is approved again, with another it is Pending. For a changed tool awaiting approval, the
last approved definition is kept (`approvedDefinition`), so anyone can see exactly what changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..api import constants as c
from ..api.models import ApprovalPolicy, CachedTool, ToolSetting
from .catalog import status_name
from .hashing import stored_definition

POLICY_NONE = "None"


@dataclass(frozen=True)
class Pending:
    name: str
    schema_hash: str
    why: str        # "new" | "changed"


@dataclass(frozen=True)
class Approval:
    tools: list[CachedTool]
    pending: list[Pending]


def approve(tools: Sequence[CachedTool], previous: Mapping[str, CachedTool], *, policy: ApprovalPolicy,
            settings: Sequence[ToolSetting], baseline_taken: bool, had_catalog: bool) -> Approval:
    """Decide `approved`, `approvedHash` and `approvedDefinition` of every tool of a merged catalog.

    `previous` is the previous catalog (rebased to this release's hashes); `baseline_taken` says the
    previous catalog was written under an approval policy (its approvedHash values are baselines);
    `had_catalog`, that there was a previous catalog at all.
    """
    if policy == POLICY_NONE:       # a tool that says so already (the merge's default) is taken as it is
        return Approval([tool if tool.approved and tool.approved_hash is None and tool.approved_definition is None
                         else tool.model_copy(update={"approved": True, "approved_hash": None,
                                                      "approved_definition": None}) for tool in tools], [])
    from_spec = {setting.name: setting.approved_hash for setting in settings if setting.approved_hash}
    result: list[CachedTool] = []
    pending: list[Pending] = []
    for tool in tools:
        old = previous.get(tool.name)
        baseline = _baseline(tool, old, policy=policy, baseline_taken=baseline_taken, had_catalog=had_catalog)
        approved_hash = baseline
        if from_spec.get(tool.name) == tool.schema_hash:
            approved_hash = tool.schema_hash
        elif policy == "All":
            approved_hash = from_spec.get(tool.name)
        approved = approved_hash == tool.schema_hash
        approved_definition = None
        if not approved and approved_hash is not None:
            approved_definition = _approved_definition(tool, old, approved_hash)
        result.append(tool.model_copy(update={"approved": approved, "approved_hash": approved_hash,
                                              "approved_definition": approved_definition}))
        if not approved and tool.available:
            pending.append(Pending(tool.name, tool.schema_hash, "changed" if approved_hash else "new"))
    return Approval(result, pending)


def _baseline(tool: CachedTool, old: CachedTool | None, *, policy: ApprovalPolicy, baseline_taken: bool,
              had_catalog: bool) -> str | None:
    """The hash a tool was trusted at, before this sync's spec approvals."""
    if policy == "All":
        return None
    if baseline_taken:
        return old.approved_hash if old is not None else None
    # The policy applies for the first time: trust what was there before, or what is here now.
    if had_catalog:
        return old.schema_hash if old is not None and old.available else None
    return tool.schema_hash


def _approved_definition(tool: CachedTool, old: CachedTool | None, approved_hash: str) -> dict[str, object] | None:
    """The full definition that `approved_hash` names, from what the previous catalog holds."""
    if old is None:
        return None
    if old.schema_hash == approved_hash:
        return stored_definition(old)
    return old.approved_definition if old.approved_hash == approved_hash else None


def pending_message(kind: str, name: str, pending: Sequence[Pending], limit: int = 10) -> str:
    """The Approved condition's message: what waits, why, and how to approve it."""
    count = len(pending)
    shown = ", ".join(f"{status_name(item.name)} ({item.why})" for item in pending[:limit])
    if count > limit:
        shown += f" and {count - limit} more"
    noun = "tool awaits" if count == 1 else "tools await"
    ref = f"{c.PLURAL[kind][:-1]}/{name}"
    return (f"{count} {noun} approval: {shown}; review with `kubectl toolcatalog diff {ref} TOOL`, approve with "
            f"`kubectl toolcatalog approve {ref} TOOL...` (it sets spec.tools[].approvedHash; --print shows the "
            "YAML to commit)")
