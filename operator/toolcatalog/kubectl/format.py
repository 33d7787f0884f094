"""The pure half of the kubectl plugin: what it sends, how it reads the answer, what it prints.

The target parsing, the refresh token and annotation patch, matching status.lastRefresh to a
token, the refresh report, the tools table and the table layout the other commands share.
No I/O: cluster.py and operations.py do the API calls, so every line a user reads can be
unit-tested without a cluster. approval.py (approve, diff) and fleet.py (search, status) are
the pure halves of the newer commands.
"""

from __future__ import annotations

import re
import secrets
import shlex
import textwrap
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pydantic

from ..api import constants as c
from ..api.models import NAME_PATTERN, CachedTool, Condition, LastRefresh
from ..reconcile.approval import POLICY_NONE

EXIT_SUCCEEDED = 0
EXIT_FAILED = 1
EXIT_RATE_LIMITED = 2
EXIT_TIMEOUT = 3
EXIT_USAGE = 4
EXIT_BY_RESULT = {"Succeeded": EXIT_SUCCEEDED, "Failed": EXIT_FAILED,
                  "RateLimited": EXIT_RATE_LIMITED}

# Every spelling kubectl accepts for our kinds, lower-cased: kind, plural, short name.
KIND_ALIASES = {
    alias: kind
    for kind in (c.KIND_TOOLSERVER, c.KIND_CONNECTORCONFIG)
    for alias in (kind.lower(), c.PLURAL[kind], *c.SHORT_NAMES[kind])
}


class PluginError(Exception):
    """Something the user must hear about; `exit_code` is what the command exits with."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class NotFoundError(PluginError):
    """The API server answered 404."""


class ForbiddenError(PluginError):
    """The API server answered 403: RBAC does not allow this read or write."""


class ConflictError(PluginError):
    """The API server answered 409: the object changed since it was read."""


# ---------------------------------------------------------------------------- refresh request


@dataclass(frozen=True)
class ResourceRef:
    kind: str  # ToolServer | ConnectorConfig
    name: str

    @property
    def plural(self) -> str:
        return c.PLURAL[self.kind]

    @property
    def short(self) -> str:  # how the tables name it: mcpts/clickup
        return f"{c.SHORT_NAMES[self.kind][0]}/{self.name}"

    def __str__(self) -> str:  # how kubectl names it: toolserver/clickup
        return f"{self.kind.lower()}/{self.name}"


def parse_resource_ref(words: str | Sequence[str]) -> ResourceRef:
    """`KIND/NAME` (or `KIND NAME`) with any kubectl spelling of the kind, case-insensitive."""
    given = [words] if isinstance(words, str) else list(words)
    parts = given[0].split("/", 1) if len(given) == 1 else given
    if len(parts) != 2 or "/" in parts[0] or "/" in parts[1]:
        raise PluginError(f"expected KIND/NAME, e.g. toolserver/clickup; got {' '.join(given)!r}")
    kind_word, name = parts
    kind_key = kind_word.lower().removesuffix(f".{c.GROUP}")
    if kind_key not in KIND_ALIASES:
        raise PluginError(
            f"unknown kind {kind_word!r}: use toolserver (toolservers, mcpts) or connectorconfig"
            " (connectorconfigs, mcpcc)")
    if not re.fullmatch(NAME_PATTERN, name) or len(name) > c.MAX_NAME_LENGTH:
        raise PluginError(f"invalid resource name {name!r}: expected a lower-case DNS name")
    return ResourceRef(kind=KIND_ALIASES[kind_key], name=name)


def new_refresh_token(now: datetime | None = None) -> str:
    """RFC 3339 UTC time to the microsecond plus a random suffix: unique per call, readable. 64 random bits:
    even a thousand tokens of the same microsecond collide with a chance of about 3e-14 (24 bits made it 3 %)."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{moment.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}-{secrets.token_hex(8)}"


def refresh_patch(token: str, *, reason: str | None = None, force: bool = False) -> dict[str, Any]:
    """One merge-patch of the three refresh annotations.

    Force is bound to this request: the operator forces a refresh only when
    `toolcatalog.dev/refresh-force` equals the refresh token (as Flux's `forceAt` must equal
    `requestedAt`), so a force left behind never applies to a later request. An absent reason
    or force is removed (None) all the same, so `kubectl get -o yaml` shows only this request's.
    """
    return {"metadata": {"annotations": {
        c.ANN_REFRESH: token,
        c.ANN_REFRESH_REASON: reason or None,
        c.ANN_REFRESH_FORCE: token if force else None,
    }}}


def reason_note(reason: str | None, token: str, obj: dict[str, Any]) -> str | None:
    """A note when the operator will not record `reason`: it records a reason only when it differs
    from the one the last answered refresh recorded (a reason left behind belongs to that one)."""
    last = (obj.get("status") or {}).get("lastRefresh") or {}
    if not reason or not isinstance(last, dict) or last.get("token") == token or last.get("reason") != reason:
        return None
    return (f"note: the last refresh already recorded the reason {printable(reason)!r}; the operator records"
            " a reason only when it differs from the last one, so this refresh will show none")


def find_condition(obj: dict[str, Any], type_: str) -> Condition | None:
    """The condition of that type in obj's status, or None (also when it is malformed)."""
    for raw in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(raw, dict) and raw.get("type") == type_:
            try:
                return Condition.model_validate(raw)
            except pydantic.ValidationError:
                return None
    return None


@dataclass(frozen=True)
class RefreshOutcome:
    """The answer to one refresh request; `answer` is None when the wait timed out."""

    ref: ResourceRef
    namespace: str
    token: str
    answer: LastRefresh | None = None
    condition: Condition | None = None  # the Refreshed condition, read with the answer
    superseded_by: str | None = None  # a newer token answered instead of ours

    @property
    def exit_code(self) -> int:
        return EXIT_TIMEOUT if self.answer is None else EXIT_BY_RESULT[self.answer.result]


def answer_in(obj: dict[str, Any], ref: ResourceRef, namespace: str,
              token: str) -> RefreshOutcome | None:
    """The outcome if `obj`'s status answers `token` (or a newer token that replaced it)."""
    raw = (obj.get("status") or {}).get("lastRefresh")
    if not isinstance(raw, dict) or not raw.get("token"):
        return None
    answered = raw["token"]
    requested = ((obj.get("metadata") or {}).get("annotations") or {}).get(c.ANN_REFRESH)
    if answered == token:
        superseded_by = None
    elif requested != token and answered == requested:
        superseded_by = answered  # ours was replaced before the operator got to it
    else:
        return None
    try:
        answer = LastRefresh.model_validate(raw)
    except pydantic.ValidationError as error:
        raise PluginError(f"{ref}: status.lastRefresh is not readable ({error.error_count()}"
                          " problems); see kubectl get -o yaml", EXIT_FAILED) from None
    return RefreshOutcome(ref=ref, namespace=namespace, token=token, answer=answer,
                          condition=find_condition(obj, c.COND_REFRESHED),
                          superseded_by=superseded_by)


def timeout_message(outcome: RefreshOutcome, timeout: float) -> str:
    """Where to look when the operator did not answer in time (it may simply be down)."""
    ref = outcome.ref
    return (f"timed out after {timeout:g}s waiting for the operator to answer refresh token"
            f" {outcome.token}; the request stays set and will still be answered. Look with:"
            f" kubectl describe {ref.kind.lower()} {ref.name} -n {outcome.namespace}"
            " (and check that the toolcatalog operator is running)")


COLUMN_GAP = 3  # kubectl's tables pad columns with three spaces
DEFAULT_DESCRIPTION_WIDTH = 60  # when the terminal width is unknown (output piped)
MIN_DESCRIPTION_WIDTH = 20
ELLIPSIS = "..."
NONE = "<none>"
NOT_APPLICABLE = "-"    # the APPROVAL of a tool when no approval policy applies
LIST_WIDTH = 100  # wrap width of the new/removed/changed name lists
LABEL_WIDTH = 18  # "Tools discovered:" plus padding, as kubectl describe aligns values


def printable(text: str) -> str:
    """`text` with control and format characters shown as `?`.

    Tool names, descriptions and error messages come from MCP servers: an escape sequence
    in one must not reach the user's terminal.
    """
    return "".join("?" if unicodedata.category(ch)[0] == "C" else ch for ch in text)


# ---------------------------------------------------------------------------- refresh answer


def _field(label: str, value: str) -> str:
    return f"{label + ':':<{LABEL_WIDTH}}{value}"


def _names_line(label: str, names: Sequence[str], count: int, width: int) -> list[str]:
    """`New (2): a, b`, wrapped; says how many were left out when the operator cut the list."""
    total = max(count, len(names))
    heading = f"{label} ({total}"
    if total > len(names):
        heading += f", first {len(names)} shown"
    heading += ")"
    if not names:
        return [_field(heading, NONE)]
    text = ", ".join(names)
    first_width = max(width - LABEL_WIDTH, 20)
    if len(heading) + 1 < LABEL_WIDTH and len(text) <= first_width:
        return [_field(heading, text)]
    wrapped = textwrap.wrap(text, width=max(width - 2, 20), break_on_hyphens=False,
                            break_long_words=False)
    return [heading + ":"] + ["  " + line for line in wrapped]


def format_refresh_answer(answer: LastRefresh, condition: Condition | None, *,
                          superseded_by: str | None = None, width: int = LIST_WIDTH) -> str:
    """What `refresh --wait` prints once status.lastRefresh answers the token.

    `superseded_by` is set when a newer token replaced ours before the operator got to it,
    so the answer shown is that newer one's.
    """
    lines: list[str] = []
    if superseded_by is not None:
        lines.append(f"note: a newer refresh (token {superseded_by}) replaced this one before the"
                     " operator answered it; showing the answer to that one")
    lines.append(_field("Result", answer.result))
    if answer.reason:
        lines.append(_field("Reason", answer.reason))
    if answer.force:
        lines.append(_field("Forced", "yes (rate limit bypassed)"))
    if answer.tools_discovered is not None:
        discovered = str(answer.tools_discovered)
        if answer.previous_tool_count is not None:
            discovered += f" (previously {answer.previous_tool_count})"
        lines.append(_field("Tools discovered", discovered))
    elif answer.previous_tool_count is not None:
        lines.append(_field("Previous tools", str(answer.previous_tool_count)))
    if answer.result == "Succeeded":
        lines += _names_line("New", answer.new_tools, answer.new_tools_count, width)
        lines += _names_line("Removed", answer.removed_tools, answer.removed_tools_count, width)
        lines += _names_line("Changed", answer.changed_tools, answer.changed_tools_count, width)
    if answer.error is not None:
        lines.append(_field("Error", f"{answer.error.reason}: {answer.error.message}"))
    if condition is not None:
        lines.append(_field("Message", f"{condition.reason}: {condition.message}"
                            if condition.message else condition.reason))
    if answer.result == "RateLimited":
        lines.append("The refresh came within sync.minIntervalSeconds of the previous sync;"
                     " try again later, or pass --force to bypass the rate limit.")
    return "\n".join(printable(line) for line in lines)


# ---------------------------------------------------------------------------- tools table


def one_line(text: str | None, width: int) -> str:
    """The first non-blank line of `text`, cut to `width` chars with an ellipsis.

    The ellipsis also marks a description that had more lines, so nothing looks complete
    when it is not.
    """
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not lines:
        return NONE
    first = printable(" ".join(lines[0].split()))
    more = len(lines) > 1
    if len(first) > width or (more and len(first) + len(ELLIPSIS) > width):
        return first[: max(width - len(ELLIPSIS), 1)].rstrip() + ELLIPSIS
    return first + ELLIPSIS if more else first


def _bool(value: bool) -> str:
    return "true" if value else "false"


def approval_cell(tool: CachedTool, policy: str) -> str:
    """`Approved` or `Pending` under an approval policy (the cache's), `-` without one."""
    if policy == POLICY_NONE:
        return NOT_APPLICABLE
    return "Approved" if tool.approved else "Pending"


def tool_rows(tools: Sequence[CachedTool], *, show_selected: bool, policy: str = POLICY_NONE) -> list[list[str]]:
    """Table cells without the description (its width depends on the others)."""
    rows = []
    for tool in tools:
        row = [printable(tool.name), _bool(tool.available), _bool(tool.enabled)]
        if show_selected:
            row.append(_bool(tool.selected))
        row.append(approval_cell(tool, policy))
        row.append(printable(tool.first_seen) or NONE)
        rows.append(row)
    return rows


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *,
                 descriptions: Sequence[str | None] | None = None,
                 terminal_width: int | None = None) -> str:
    """kubectl-style table: upper-case headers, columns padded by 3 spaces, no trailing blanks.

    With `descriptions`, a last DESCRIPTION column fills what the terminal has left (at least
    20 chars), or 60 chars when the width is unknown, and is always cut to one line.
    """
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]
    used = sum(widths) + COLUMN_GAP * len(widths)
    if terminal_width:
        description_width = max(terminal_width - used, MIN_DESCRIPTION_WIDTH)
    else:
        description_width = DEFAULT_DESCRIPTION_WIDTH
    lines = []
    for index, cells in enumerate([headers, *rows]):
        padded = "".join(cell.ljust(width + COLUMN_GAP) for cell, width in zip(cells, widths, strict=True))
        if descriptions is None:
            lines.append(padded.rstrip())
            continue
        text = "DESCRIPTION" if index == 0 else one_line(descriptions[index - 1], description_width)
        lines.append((padded + text).rstrip())
    return "\n".join(lines)


def format_tools_table(tools: Sequence[CachedTool], *, show_selected: bool = False, policy: str = POLICY_NONE,
                       terminal_width: int | None = None) -> str:
    """The `tools` table: name, available, enabled (selected), approval, first seen, description.

    `policy` is the approval policy the cache was written under: APPROVAL is `-` without one.
    """
    headers = ["NAME", "AVAILABLE", "ENABLED"] + (["SELECTED"] if show_selected else [])
    headers += ["APPROVAL", "FIRST SEEN"]
    return format_table(headers, tool_rows(tools, show_selected=show_selected, policy=policy),
                        descriptions=[tool.description for tool in tools], terminal_width=terminal_width)


def tool_json(tool: CachedTool, policy: str) -> dict[str, Any]:
    """`tools -o json`: the cache entry, every field (`approvedHash` included), with `approval`
    (as in the APPROVAL column) after `approved`."""
    entry: dict[str, Any] = {}
    for key, value in tool.document().items():
        entry[key] = value
        if key == "approved":
            entry["approval"] = approval_cell(tool, policy)
    return entry


# ---------------------------------------------------------------------------- commands to run next


def suggested_command(*words: str, namespace: str | None = None) -> str:
    """A `kubectl toolcatalog ...` line to copy and paste: every word shell-quoted, `-n NAMESPACE`
    right after the subcommand (so the last word stays last, e.g. a TOOL@sha256:... pin)."""
    verb, *rest = words
    flags = ["-n", namespace] if namespace else []
    return " ".join(["kubectl", "toolcatalog", verb, *(shlex.quote(word) for word in [*flags, *rest])])
