"""The pure half of `approve` and `diff`: which spec.tools to write, what to print. No I/O.

`approve` takes each tool's current schemaHash from the cache document (status.tools may be
truncated), and sets spec.tools[].approvedHash to it, keeping every other entry and field of
spec.tools. A tool named `TOOL@sha256:HEX` is pinned: approved only when its current definition
is that one (the hash `diff` shows in its `+++` header), else nothing at all is written. The
patch carries the resourceVersion that was read, so a concurrent edit makes the API server
answer 409 instead of being overwritten (plugin.py re-reads and retries once).

`diff` shows what changed against the approved definition: a unified diff of the pretty-printed
JSON (sorted keys, 2-space indent) of the cache's `approvedDefinition` and the definition the
server sends now, and the `approve` command, pinned, that approves exactly what it showed.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import yaml

from ..api.models import HASH_PATTERN, CacheDocument, CachedTool
from ..reconcile.hashing import UnhashableToolError, definition_hash, stored_definition
from .format import (
    EXIT_FAILED,
    EXIT_SUCCEEDED,
    EXIT_USAGE,
    POLICY_NONE,
    PluginError,
    ResourceRef,
    printable,
    suggested_command,
)

PIN_MARK = "@sha256:"           # TOOL@sha256:HEX
DIFF_SAME = EXIT_SUCCEEDED      # as diff(1) and kubectl diff: 0 no difference, 1 differences
DIFF_DIFFERENT = EXIT_FAILED

Change = Literal["new", "changed", "already"]


@dataclass(frozen=True)
class ApprovalItem:
    """One tool `approve` was asked for, and what approving it does."""

    name: str
    schema_hash: str
    change: Change              # new: nothing was approved; changed: another definition was
    previous_hash: str | None   # the definition approved so far, if any
    available: bool = True


@dataclass(frozen=True)
class ApprovalPlan:
    ref: ResourceRef
    namespace: str
    resource_version: str
    policy: str                     # spec.approval.policy, "None" when unset
    items: list[ApprovalItem]
    tools: list[dict[str, Any]]     # the whole new spec.tools

    @property
    def writes(self) -> bool:
        return any(item.change != "already" for item in self.items)

    def patch(self) -> dict[str, Any]:
        """One merge patch of spec.tools (a list: replaced whole), guarded by resourceVersion."""
        return {"metadata": {"resourceVersion": self.resource_version}, "spec": {"tools": self.tools}}


@dataclass(frozen=True)
class ToolArg:
    """A tool `approve` was asked for: `TOOL`, or `TOOL@sha256:HEX` pinned to one definition."""

    name: str
    pin: str | None = None


def parse_tool_words(words: Sequence[str]) -> list[ToolArg]:
    """`TOOL` or `TOOL@sha256:HEX` (64 hex digits, as `diff` prints them); a bad pin is a usage error."""
    args = []
    for word in words:
        name, mark, digits = word.rpartition(PIN_MARK[0])
        if not mark or not (mark + digits).lower().startswith(PIN_MARK):
            args.append(ToolArg(word))
            continue
        pin = digits.lower()
        if not name or not re.fullmatch(HASH_PATTERN, pin):
            raise PluginError(f"{printable(word)!r}: a pinned tool is TOOL@sha256: and 64 hex digits, the hash"
                              " `kubectl toolcatalog diff` prints after +++")
        args.append(ToolArg(name, pin))
    return args


def _recomputed_hash(definition: dict[str, Any], version: int) -> str | None:
    """What a definition in the cache hashes to, or None when it cannot be hashed again here."""
    try:
        return definition_hash(definition, version)
    except (UnhashableToolError, KeyError):
        return None


def _pin_error(ref: ResourceRef, namespace: str, document: CacheDocument,
               args: Sequence[ToolArg]) -> PluginError | None:
    """Exit 4 when a pinned tool's current definition is not the pinned one; nothing is written."""
    cached = {tool.name: tool for tool in document.tools}
    lines = []
    for arg in args:
        if arg.pin is None:
            continue
        tool, name = cached[arg.name], printable(arg.name)
        again = suggested_command("diff", str(ref), arg.name, namespace=namespace)
        if tool.schema_hash != arg.pin:
            lines.append(f"{name} is now at {tool.schema_hash}, not at the pinned {arg.pin}. Review the"
                         f" current definition: {again}")
            continue
        actual = _recomputed_hash(stored_definition(tool), document.hash_version)
        if actual is not None and actual != tool.schema_hash:
            lines.append(f"{name}: the definition in the cache hashes to {actual}, not to its schemaHash"
                         f" {tool.schema_hash}; the ConfigMap may have been edited by hand, so what a diff"
                         " shows of it cannot be pinned")
    if not lines:
        return None
    if len(lines) == 1:
        return PluginError(f"{ref}: nothing was approved: {lines[0]}", EXIT_USAGE)
    return PluginError("\n".join([f"{ref}: nothing was approved:", *lines]), EXIT_USAGE)


def _unknown_tools_error(ref: ResourceRef, unknown: Sequence[str], known: Sequence[str]) -> PluginError:
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=3)
        if close:
            hints.append(f"{printable(name)!r}: did you mean {', '.join(printable(n) for n in close)}?")
    noun = "tool" if len(unknown) == 1 else "tools"
    message = (f"{ref} has no {noun} {', '.join(repr(printable(n)) for n in unknown)} in its cache; nothing was"
               f" approved. `kubectl toolcatalog tools {ref} --all` lists its tools")
    return PluginError(message + ("\n" + "\n".join(hints) if hints else ""), EXIT_USAGE)


def pending_tools(document: CacheDocument) -> list[str]:
    """The tools that await approval, as the operator counts them: listed now and not approved."""
    return sorted(tool.name for tool in document.tools if tool.available and not tool.approved)


def plan_approval(ref: ResourceRef, namespace: str, obj: dict[str, Any], document: CacheDocument,
                  words: Sequence[str], *, all_pending: bool = False) -> ApprovalPlan:
    """The spec.tools that approve the current definitions of the tools named in `words` (`TOOL`
    or `TOOL@sha256:HEX`), and of every pending tool.

    A tool whose current definition is already approved (in spec.tools, or by the operator's
    baseline) is left as it is. An unknown name, or a pin that is not the current definition,
    refuses the whole request: nothing is written.
    """
    spec = obj.get("spec") or {}
    policy = str((spec.get("approval") or {}).get("policy") or POLICY_NONE)
    tools = [copy.deepcopy(entry) for entry in spec.get("tools") or [] if isinstance(entry, dict)]
    cached = {tool.name: tool for tool in document.tools}
    args = parse_tool_words(words)
    names = [arg.name for arg in args]
    unknown = [name for name in dict.fromkeys(names) if name not in cached]
    if unknown:
        raise _unknown_tools_error(ref, unknown, sorted(cached))
    pin_error = _pin_error(ref, namespace, document, args)
    if pin_error is not None:
        raise pin_error
    wanted = list(dict.fromkeys([*names, *(pending_tools(document) if all_pending else [])]))
    items = []
    for name in wanted:
        tool = cached[name]
        entries = [entry for entry in tools if entry.get("name") == name]
        in_spec = entries[-1].get("approvedHash") if entries else None  # the last entry wins, as in the operator
        items.append(_item(tool, in_spec))
        if items[-1].change == "already":
            continue
        for entry in entries:
            entry["approvedHash"] = tool.schema_hash
        if not entries:
            tools.append({"name": name, "approvedHash": tool.schema_hash})
    return ApprovalPlan(ref=ref, namespace=namespace,
                        resource_version=str((obj.get("metadata") or {}).get("resourceVersion") or ""),
                        policy=policy, items=items, tools=tools)


def _item(tool: CachedTool, in_spec: str | None) -> ApprovalItem:
    current = tool.schema_hash
    if in_spec == current or (tool.approved and tool.approved_hash == current):
        return ApprovalItem(tool.name, current, "already", current, tool.available)
    previous = tool.approved_hash or in_spec
    return ApprovalItem(tool.name, current, "changed" if previous else "new", previous, tool.available)


def approval_lines(plan: ApprovalPlan, *, dry_run: bool = False) -> list[str]:
    """One line per tool: its hash, and whether it was new, changed, or already approved."""
    verb = "would approve" if dry_run else "approved"
    lines = []
    for item in plan.items:
        name = printable(item.name)
        if item.change == "already":
            line = f"{plan.ref}: {name} is already approved at {item.schema_hash}; nothing to do"
        elif item.change == "changed":
            line = f"{plan.ref}: {verb} {name} at {item.schema_hash} (changed; was {item.previous_hash})"
        else:
            line = f"{plan.ref}: {verb} {name} at {item.schema_hash} (new)"
        if not item.available:
            line += "; the server does not list it now"
        lines.append(line)
    return lines


def policy_note(plan: ApprovalPlan) -> str | None:
    if plan.policy != POLICY_NONE or not plan.writes:
        return None
    return (f"note: {plan.ref} has no approval policy (spec.approval.policy None): every tool is usable; the"
            " approvedHash takes effect under NewAndChanged or All")


def spec_tools_yaml(plan: ApprovalPlan) -> str:
    """`--print`: the spec.tools to commit to Git, whole (a merge patch replaces the list whole)."""
    header = (f"# {plan.ref} in namespace {plan.namespace}: spec.tools with the approvals"
              " (kubectl toolcatalog approve --print)\n")
    return header + yaml.safe_dump({"spec": {"tools": plan.tools}}, sort_keys=False, allow_unicode=True,
                                   default_flow_style=False)


# ---------------------------------------------------------------------------- diff


def _escape(char: str) -> str:
    point = ord(char)
    if point <= 0xFFFF:
        return f"\\u{point:04x}"
    point -= 0x10000
    return f"\\u{0xD800 + (point >> 10):04x}\\u{0xDC00 + (point & 0x3FF):04x}"


def definition_lines(definition: dict[str, Any]) -> list[str]:
    """Pretty JSON of a definition (sorted keys, 2-space indent), one string per line.

    Invisible and control characters (bidi overrides, tag characters, zero-width spaces) are
    written as JSON escapes: still the same JSON, but a reviewer sees them, and they never reach
    the terminal. Other non-ASCII text is kept readable.
    """
    text = json.dumps(definition, sort_keys=True, indent=2, ensure_ascii=False)
    shown = "".join(_escape(ch) if unicodedata.category(ch)[0] == "C" and ch != "\n" else ch for ch in text)
    return shown.split("\n")


@dataclass(frozen=True)
class DiffResult:
    text: str
    exit_code: int          # 0 no difference, 1 differences
    notes: list[str]        # for stderr
    approve_command: str | None = None  # with differences: approve exactly this definition (pinned)


def _hash_note(what: str, actual: str | None, expected: str) -> list[str]:
    """A note when a definition in the cache does not hash (`actual`) to the hash stored next to it."""
    if actual is None or actual == expected:
        return []
    return [f"note: the {what} stored in the cache hashes to {actual}, not {expected}; the ConfigMap may have"
            " been edited by hand"]


def diff_tool(ref: ResourceRef, document: CacheDocument, name: str, *, namespace: str | None = None) -> DiffResult:
    """The current definition of `name` against the approved one.

    With differences, also the `approve` command that approves exactly the definition shown: the
    tool pinned to the `+++` hash (none when the cache's definition does not hash to it, or when
    the name cannot be typed).
    """
    tool = next((tool for tool in document.tools if tool.name == name), None)
    if tool is None:
        raise _unknown_tools_error(ref, [name], sorted(t.name for t in document.tools))
    shown = printable(name)
    current = stored_definition(tool)
    current_hash = _recomputed_hash(current, document.hash_version)
    notes = _hash_note("current definition", current_hash, tool.schema_hash)
    if not tool.available:
        notes.append(f"note: the server no longer lists {shown} (removed at {tool.removed_at})")
    if document.approval.policy == POLICY_NONE:
        return DiffResult(f"{ref}: approval is off (spec.approval.policy None), so every definition is usable;"
                          f" {shown} is at {tool.schema_hash}. Nothing to compare.", DIFF_SAME, notes)
    if tool.approved and tool.approved_hash == tool.schema_hash:
        return DiffResult(f"{ref}: {shown} is approved; its current definition is the approved one"
                          f" ({tool.schema_hash}). No difference.", DIFF_SAME, notes)
    if tool.approved_hash is None:
        before: list[str] = []
        from_label = f"{shown} approved: none (a new tool)"
    elif tool.approved_definition is None:
        before = []
        from_label = f"{shown} approved {tool.approved_hash} (that definition is not in the cache)"
    else:
        before = definition_lines(tool.approved_definition)
        from_label = f"{shown} approved {tool.approved_hash}"
        notes += _hash_note("approved definition",
                            _recomputed_hash(tool.approved_definition, document.hash_version), tool.approved_hash)
    lines = list(difflib.unified_diff(before, definition_lines(current), fromfile=from_label,
                                      tofile=f"{shown} current {tool.schema_hash}", lineterm=""))
    if not lines:   # the same definition under another hash: only a hand-edited cache gets here
        return DiffResult(f"{ref}: {shown} awaits approval, but its definition equals the approved one.",
                          DIFF_SAME, notes)
    pinnable = shown == name and current_hash in (tool.schema_hash, None)
    command = suggested_command("approve", str(ref), f"{name}@{tool.schema_hash}", namespace=namespace) \
        if pinnable else None
    return DiffResult("\n".join(lines), DIFF_DIFFERENT, notes, command)


def approve_hint(result: DiffResult) -> list[str]:
    """What `diff` prints after a difference: the command that approves what it showed, pin last."""
    if result.approve_command is None:
        return []
    return ["to approve exactly this definition (refused if it changes before you do):",
            f"  {result.approve_command}"]
