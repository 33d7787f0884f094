"""kubectl-toolcatalog, the parts that need no cluster: targets, tokens, the annotation patch,
reading status.lastRefresh, the refresh report, the tools table, usage errors and exit codes."""

import io
from datetime import UTC, datetime

import pytest

from toolcatalog.api import constants as c
from toolcatalog.api.models import CachedTool, ErrorInfo, Status
from toolcatalog.kubectl.format import (
    EXIT_FAILED,
    EXIT_RATE_LIMITED,
    EXIT_SUCCEEDED,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    PluginError,
    RefreshOutcome,
    ResourceRef,
    answer_in,
    format_refresh_answer,
    format_tools_table,
    new_refresh_token,
    one_line,
    parse_resource_ref,
    printable,
    refresh_patch,
    timeout_message,
)
from toolcatalog.kubectl.plugin import main
from toolcatalog.reconcile.catalog import CatalogDiff
from toolcatalog.reconcile.refresh import RefreshRequest
from toolcatalog.reconcile.status import with_refresh

T0 = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)
TS = ResourceRef(kind=c.KIND_TOOLSERVER, name="clickup")


# ---------------------------------------------------------------------------- targets


@pytest.mark.parametrize("words, kind", [
    ("toolserver/clickup", c.KIND_TOOLSERVER),
    ("toolservers/clickup", c.KIND_TOOLSERVER),
    ("mcpts/clickup", c.KIND_TOOLSERVER),
    ("ToolServer/clickup", c.KIND_TOOLSERVER),
    ("MCPTS/clickup", c.KIND_TOOLSERVER),
    ("toolservers.toolcatalog.dev/clickup", c.KIND_TOOLSERVER),
    (["toolserver", "clickup"], c.KIND_TOOLSERVER),
    ("connectorconfig/clickup", c.KIND_CONNECTORCONFIG),
    ("connectorconfigs/clickup", c.KIND_CONNECTORCONFIG),
    ("mcpcc/clickup", c.KIND_CONNECTORCONFIG),
    ("ConnectorConfig/clickup", c.KIND_CONNECTORCONFIG),
])
def test_every_kubectl_spelling_of_a_kind_is_accepted(words, kind):
    ref = parse_resource_ref(words)
    assert (ref.kind, ref.name) == (kind, "clickup")
    assert str(ref) == f"{kind.lower()}/clickup"
    assert ref.plural == c.PLURAL[kind]


@pytest.mark.parametrize("words, says", [
    ("clickup", "expected KIND/NAME"),
    ("toolserver/", "invalid resource name"),
    ("toolserver/a/b", "got 'toolserver/a/b'"),
    ("toolserver/Clickup", "invalid resource name"),
    ("pods/clickup", "unknown kind 'pods'"),
    (["toolserver/a", "b"], "expected KIND/NAME"),
])
def test_a_bad_target_is_a_usage_error_saying_what_is_wrong(words, says):
    with pytest.raises(PluginError) as raised:
        parse_resource_ref(words)
    assert says in raised.value.message
    assert raised.value.exit_code == EXIT_USAGE


# ---------------------------------------------------------------------------- request


def test_tokens_are_unique_even_within_one_microsecond_and_start_with_the_time():
    tokens = {new_refresh_token(T0) for _ in range(1000)}
    assert len(tokens) == 1000
    assert all(token.startswith("2026-11-21T12:00:00.000000Z-") for token in tokens)
    assert len({new_refresh_token() for _ in range(1000)}) == 1000


def test_the_patch_sets_token_reason_and_force_together():
    assert refresh_patch("tok", reason="deployed v2", force=True) == {"metadata": {"annotations": {
        c.ANN_REFRESH: "tok", c.ANN_REFRESH_REASON: "deployed v2", c.ANN_REFRESH_FORCE: "true"}}}


def test_the_patch_clears_an_old_reason_and_force_when_not_given():
    assert refresh_patch("tok") == {"metadata": {"annotations": {
        c.ANN_REFRESH: "tok", c.ANN_REFRESH_REASON: None, c.ANN_REFRESH_FORCE: None}}}


# ---------------------------------------------------------------------------- reading the answer


def answered(token: str, result: str, *, diff: CatalogDiff | None = None, tools: int | None = None,
             previous: int | None = None, error: ErrorInfo | None = None,
             annotation: str | None = None, reason: str | None = None,
             force: bool = False) -> dict:
    """A resource whose status answers `token`, written by the operator's own status code."""
    status = with_refresh(
        Status(), RefreshRequest(token=token, reason=reason, force=force, requested_at=T0),
        completed_at=T0, result=result, generation=1, diff=diff, previous_tool_count=previous,
        tools_discovered=tools, error=error,
        rate_limit_message="a sync ran 3s ago, within sync.minIntervalSeconds (10s)")
    return {"metadata": {"name": "clickup", "annotations": {c.ANN_REFRESH: annotation or token}},
            "status": status.dump()}


def test_the_answer_to_our_token_is_found():
    obj = answered("ours", "Succeeded", diff=CatalogDiff(["a"], [], []), tools=3, previous=2)
    outcome = answer_in(obj, TS, "ns", "ours")
    assert outcome.answer.result == "Succeeded" and outcome.superseded_by is None
    assert outcome.condition.reason == c.REASON_REFRESH_SUCCEEDED
    assert outcome.exit_code == EXIT_SUCCEEDED


def test_an_older_answer_is_not_taken_for_ours():
    obj = answered("older", "Succeeded", diff=CatalogDiff([], [], []), tools=3, annotation="ours")
    assert answer_in(obj, TS, "ns", "ours") is None
    assert answer_in({"metadata": {}, "status": {}}, TS, "ns", "ours") is None


def test_a_newer_request_answered_instead_of_ours_is_reported_as_superseding_it():
    obj = answered("newer", "Succeeded", diff=CatalogDiff([], [], []), tools=3)
    outcome = answer_in(obj, TS, "ns", "ours")
    assert outcome.superseded_by == "newer"
    assert "newer refresh (token newer) replaced this one" in format_refresh_answer(
        outcome.answer, outcome.condition, superseded_by=outcome.superseded_by)


@pytest.mark.parametrize("result, code", [
    ("Succeeded", EXIT_SUCCEEDED), ("Failed", EXIT_FAILED), ("RateLimited", EXIT_RATE_LIMITED)])
def test_exit_code_follows_the_result(result, code):
    obj = answered("t", result, diff=CatalogDiff([], [], []) if result == "Succeeded" else None,
                   tools=1 if result == "Succeeded" else None,
                   error=ErrorInfo(reason="Timeout", message="x") if result == "Failed" else None)
    assert answer_in(obj, TS, "ns", "t").exit_code == code
    assert RefreshOutcome(ref=TS, namespace="ns", token="t").exit_code == EXIT_TIMEOUT


def test_the_timeout_message_says_where_to_look():
    message = timeout_message(RefreshOutcome(ref=TS, namespace="team-a", token="tok"), 5)
    assert "timed out after 5s" in message and "tok" in message
    assert "kubectl describe toolserver clickup -n team-a" in message


# ---------------------------------------------------------------------------- refresh report


def report(obj: dict, token: str = "t", width: int = 100) -> str:
    outcome = answer_in(obj, TS, "ns", token)
    return format_refresh_answer(outcome.answer, outcome.condition, width=width)


def test_a_succeeded_refresh_reports_counts_and_each_list():
    text = report(answered("t", "Succeeded", diff=CatalogDiff(["a_new", "b_new"], ["gone"], []),
                           tools=8, previous=7, reason="deployed v2", force=True))
    assert text.splitlines() == [
        "Result:           Succeeded",
        "Reason:           deployed v2",
        "Forced:           yes (rate limit bypassed)",
        "Tools discovered: 8 (previously 7)",
        "New (2):          a_new, b_new",
        "Removed (1):      gone",
        "Changed (0):      <none>",
        "Message:          RefreshSucceeded: 8 tools: 2 new (a_new, b_new), 1 removed (gone),"
        " 0 changed",
    ]


def test_a_cut_list_says_how_many_there_were_and_wraps_to_the_width():
    names = [f"tool_{i:03d}" for i in range(150)]
    text = report(answered("t", "Succeeded", diff=CatalogDiff([], [], names), tools=150,
                           previous=150), width=80)
    lines = text.splitlines()
    heading = lines.index("Changed (150, first 100 shown):")
    listed = []
    for line in lines[heading + 1:]:
        if not line.startswith("  "):
            break
        assert len(line) <= 80
        listed += [name for name in line.strip().split(", ") if name]
    assert [name.rstrip(",") for name in listed] == names[:100]


def test_a_failed_refresh_reports_the_error():
    text = report(answered("t", "Failed", previous=6,
                           error=ErrorInfo(reason="ServerUnavailable", message="connection refused")))
    assert "Result:           Failed" in text
    assert "Previous tools:   6" in text
    assert "Error:            ServerUnavailable: connection refused" in text
    assert "Message:          RefreshFailed: ServerUnavailable: connection refused" in text
    assert "New (" not in text


def test_a_rate_limited_refresh_says_how_to_get_through():
    text = report(answered("t", "RateLimited"))
    assert "Result:           RateLimited" in text
    assert "RateLimited: a sync ran 3s ago, within sync.minIntervalSeconds (10s)" in text
    assert "--force" in text


# ---------------------------------------------------------------------------- tools table


def tool(name: str, description: str | None = "Does a thing.", **fields) -> CachedTool:
    return CachedTool(name=name, description=description, schema_hash="sha256:x",
                      first_seen="2026-11-21T12:00:01Z", **fields)


def test_the_table_has_kubectl_headers_and_aligned_columns():
    table = format_tools_table([
        tool("a", "Short."),
        tool("a_much_longer_name", "Line one.\nLine two.", available=False,
             removed_at="2026-11-22T00:00:00Z"),
        tool("c", None, enabled=False),
    ])
    assert table.splitlines() == [
        "NAME                 AVAILABLE   ENABLED   FIRST SEEN             DESCRIPTION",
        "a                    true        true      2026-11-21T12:00:01Z   Short.",
        "a_much_longer_name   false       true      2026-11-21T12:00:01Z   Line one....",
        "c                    true        false     2026-11-21T12:00:01Z   <none>",
    ]


def test_the_selected_column_appears_when_asked_for():
    table = format_tools_table([tool("a", selected=False)], show_selected=True)
    assert table.splitlines()[0].split() == ["NAME", "AVAILABLE", "ENABLED", "SELECTED", "FIRST",
                                             "SEEN", "DESCRIPTION"]
    assert table.splitlines()[1].split()[:4] == ["a", "true", "true", "false"]


def test_descriptions_are_cut_to_the_terminal_or_to_60_chars():
    long = "word " * 40
    unknown_width = format_tools_table([tool("a", long)]).splitlines()[1]
    description = unknown_width.split("   ")[-1]
    assert len(description) == 60 and description.endswith("...")
    narrow = format_tools_table([tool("a", long)], terminal_width=100).splitlines()[1]
    assert 95 <= len(narrow) <= 100 and narrow.endswith("...")
    tiny = format_tools_table([tool("a", long)], terminal_width=10).splitlines()[1]
    assert len(tiny.split("   ")[-1]) == 20


def test_one_line_takes_the_first_non_blank_line_and_squeezes_its_spaces():
    assert one_line("\n\n  Create   a task. \n\nArgs: x", 60) == "Create a task...."
    assert one_line("Create a task.", 60) == "Create a task."
    assert one_line("abcdefghij", 8) == "abcde..."
    assert one_line("   ", 60) == "<none>"


# ---------------------------------------------------------------------------- command line


def run(argv):
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("argv, says", [
    (["refresh"], "the following arguments are required: KIND/NAME"),
    (["refresh", "pods/x"], "unknown kind 'pods'"),
    (["refresh", "toolserver/x", "--wait", "--timeout", "0"], "--timeout must be a positive"),
    (["tools", "toolserver/x", "-o", "yaml"], "invalid choice: 'yaml'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["tools", "toolserver/x", "--kubeconfig", "/nonexistent/kubeconfig"],
     "cannot load kubeconfig '/nonexistent/kubeconfig'"),
])
def test_usage_errors_exit_4_with_a_clear_message(argv, says):
    code, out, err = run(argv)
    assert code == EXIT_USAGE
    assert err.startswith("error: ") and says in err
    assert out == ""


def test_help_lists_the_exit_codes(capsys):
    assert main(["refresh", "--help"]) == 0
    text = capsys.readouterr().out
    assert "2 RateLimited" in text and "3 timed out" in text and "--force" in text


def test_terminal_escapes_from_a_server_never_reach_the_terminal():
    sneaky = "Looks fine\x1b[2K\x1b]0;pwned\x07 really\u202e"
    assert printable(sneaky) == "Looks fine?[2K?]0;pwned? really?"
    table = format_tools_table([tool("bad\x1bname", sneaky)])
    assert "\x1b" not in table and "\x07" not in table and "\u202e" not in table
    text = report(answered("t", "Failed", error=ErrorInfo(reason="ProtocolError", message=sneaky)))
    assert "\x1b" not in text and "Looks fine?[2K" in text


def test_a_non_numeric_exit_from_argparse_is_a_usage_error(monkeypatch):
    """argparse may exit with a message instead of a number; that is still exit status 4."""
    import argparse

    from toolcatalog.kubectl import plugin

    def exit_with_text(self, *args, **kwargs):
        raise SystemExit("bad arguments")

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", exit_with_text)
    assert plugin.main(["tools", "toolserver/x"]) == 4
