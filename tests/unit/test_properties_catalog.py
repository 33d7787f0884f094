"""Properties of catalog merging (reconcile/catalog.py, hashing.py, approval.py) over runs of syncs.

A run is what a resource lives through: a few tools/list answers, each merged into the catalog the
previous sync left in the cache ConfigMap (rendered and parsed back, as the operator reads it).
The expectations are computed from what the server sent, not from the modules under test:

- names: every tool ever listed stays, once, sorted; what the server lists is available, the rest
  unavailable since the sync that first missed it (removedAt), with its last definition;
- the diff partitions the names: new (listed, and not available before: first sighting or back),
  removed (available before, not listed), changed (both, and the definition differs);
- firstSeen is the first sync that listed the tool, whatever happened since;
- a definition is stored as sent; its schemaHash changes exactly when the definition does (every
  field but name and _meta, nulls as absent), whatever the key order;
- merging the same answer again changes nothing; the order of the server's list changes nothing;
  a name listed twice fails closed;
- approval: under NewAndChanged or All a tool is approved exactly when its hash is one it was
  trusted at (the spec's approvedHash, the baseline, trust on first use); a rug pull never is.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Sequence
from typing import Any

from hypothesis import assume, example, given
from hypothesis import strategies as st

from toolcatalog.api.models import CacheDocument, CachedTool, CacheSource, ServerInfo, ToolSelector, ToolSetting
from toolcatalog.reconcile.approval import approve
from toolcatalog.reconcile.cachedoc import parse_cache, render_cache
from toolcatalog.reconcile.catalog import DuplicateToolError, InvalidToolError, merge_catalog
from toolcatalog.reconcile.hashing import HASH_VERSION, definition_hash, definition_of, hash_v1

TIMES = [f"2026-11-21T{hour:02d}:00:00Z" for hour in range(10, 24)]
NAMES = [f"t{index}" for index in range(6)]
KNOWN = ("title", "description", "inputSchema", "outputSchema", "annotations", "icons", "execution")

# ----------------------------------------------------------------------------- strategies

texts = st.text(alphabet="ab0 \u00e9\"\\\u2028\U0001f600\x00", max_size=4)   # what JSON escapes or encodes
json_leaves = st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | texts
json_values = st.recursive(json_leaves, lambda children: st.lists(children, max_size=3)
                           | st.dictionaries(texts, children, max_size=3), max_leaves=4)
objects = st.dictionaries(texts, json_values, max_size=2)
definitions = st.fixed_dictionaries({"inputSchema": objects}, optional={    # MCP requires an inputSchema object
    "title": st.none() | texts,
    "description": st.none() | st.text(max_size=12),
    "outputSchema": objects,
    "annotations": objects,
    "icons": st.lists(json_leaves, max_size=2),
    "execution": objects,
    "x-vendor": json_values,
    "available": json_leaves,          # a server's own field named like our bookkeeping stays its own
    "extra": json_leaves,
    "_meta": json_values,
})
names = st.sampled_from(NAMES)


def _listed(chosen: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"name": name, **definition} for name, definition in chosen.items()]


@st.composite
def histories(draw: st.DrawFn, min_size: int = 1, max_size: int = 4) -> list[list[dict[str, Any]]]:
    """Answers of successive syncs, their definitions drawn from one small pool: a tool keeps its
    definition, changes it, goes away and comes back with the same or another one, as servers do."""
    pool = draw(st.lists(definitions, min_size=1, max_size=4))
    picks = st.dictionaries(names, st.integers(0, len(pool) - 1), max_size=len(NAMES))
    return [_listed({name: pool[at] for name, at in draw(picks).items()})
            for _ in range(draw(st.integers(min_size, max_size)))]


answers = histories(1, 1).map(lambda history: history[0])          # one tools/list answer

globs = st.sampled_from(["*", "t*", "t[0-2]", "t?", "*3", "x*", "t[!1]"])
selectors = st.builds(lambda include, exclude: ToolSelector(include=include, exclude=exclude),
                      st.lists(globs, max_size=2), st.lists(globs, max_size=2))
tool_settings = st.lists(st.builds(lambda name, enabled: ToolSetting(name=name, enabled=enabled), names, st.booleans()),
                         max_size=4)

# ----------------------------------------------------------------------------- helpers


def canonical(raw: dict[str, Any]) -> str:
    """A definition in one spelling: what the hash covers (no name, no _meta, no nulls), keys sorted.
    Integers, strings, booleans and null only, so Python's json is as canonical as RFC 8785 here."""
    return json.dumps({k: v for k, v in raw.items() if k not in ("name", "_meta") and v is not None}, sort_keys=True)


def through_cache(tools: Sequence[CachedTool], policy: str = "None") -> list[CachedTool]:
    """What the next sync reads: the catalog written to the cache ConfigMap and parsed back."""
    document = CacheDocument(source=CacheSource(kind="ToolServer", namespace="ns", name="srv", url="http://s/mcp"),
                             server=ServerInfo(), cached_at=TIMES[0], hash_version=HASH_VERSION,
                             approval={"policy": policy}, tools=list(tools))
    rendered = render_cache(document)
    return parse_cache({"data": rendered.data, "binaryData": rendered.binary_data}).tools


def merge(previous: Sequence[CachedTool], answer: list[dict[str, Any]], now: str, *,
          settings: Sequence[ToolSetting] = (), selector: ToolSelector | None = None) -> Any:
    return merge_catalog(previous, answer, settings=list(settings), selector=selector or ToolSelector(), now=now)


class History:
    """What the server sent over a run, as a user would remember it."""

    def __init__(self) -> None:
        self.first_seen: dict[str, str] = {}
        self.last_sent: dict[str, dict[str, Any]] = {}
        self.listed: set[str] = set()           # in the last answer

    def record(self, answer: list[dict[str, Any]], now: str) -> None:
        for raw in answer:
            self.first_seen.setdefault(raw["name"], now)
            self.last_sent[raw["name"]] = raw
        self.listed = {raw["name"] for raw in answer}


def run(answers_so_far: list[list[dict[str, Any]]]) -> tuple[list[CachedTool], History]:
    catalog: list[CachedTool] = []
    history = History()
    for index, answer in enumerate(answers_so_far):
        catalog = through_cache(merge(catalog, answer, TIMES[index]).tools)
        history.record(answer, TIMES[index])
    return catalog, history


def by_name(tools: Sequence[CachedTool]) -> dict[str, CachedTool]:
    return {tool.name: tool for tool in tools}


def documents(tools: Sequence[CachedTool]) -> list[dict[str, Any]]:
    return [tool.document() for tool in tools]


def selected(name: str, selector: ToolSelector) -> bool:
    """docs/how-to/toolserver.md: glob filters on tool names, empty include = every tool, exclude wins."""
    included = not selector.include or any(fnmatch.fnmatchcase(name, glob) for glob in selector.include)
    return included and not any(fnmatch.fnmatchcase(name, glob) for glob in selector.exclude)


# ----------------------------------------------------------------------------- merging


@given(histories(), tool_settings, selectors)
@example([[{"name": "t0", "description": "x", "inputSchema": {}}], [], [{"name": "t0", "description": "x",
                                                                       "inputSchema": {}}]], [], ToolSelector())
@example([[{"name": "t0", "_meta": 1, "inputSchema": {}}],
          [{"name": "t0", "_meta": 2, "title": None, "inputSchema": {}}]], [], ToolSelector())
def test_a_merge_keeps_every_tool_and_reports_exactly_what_changed(
        answers: list[list[dict[str, Any]]], settings: list[ToolSetting], selector: ToolSelector) -> None:
    *earlier, answer = answers
    previous, history = run(earlier)
    now = TIMES[len(earlier)]
    before = by_name(previous)
    was_available = {name for name, tool in before.items() if tool.available}
    listed = {raw["name"]: raw for raw in answer}
    result = merge(previous, answer, now, settings=settings, selector=selector)
    tools = by_name(result.tools)

    assert [tool.name for tool in result.tools] == sorted(set(before) | set(listed))
    assert result.diff.new == sorted(set(listed) - was_available)
    assert result.diff.removed == sorted(was_available - set(listed))
    assert result.diff.changed == sorted(name for name in set(listed) & was_available
                                         if canonical(history.last_sent[name]) != canonical(listed[name]))
    enabled = {setting.name: setting.enabled for setting in settings}
    for name, tool in tools.items():
        assert tool.first_seen == history.first_seen.get(name, now)
        assert tool.enabled == enabled.get(name, True) and tool.selected == selected(name, selector)
        if name in listed:
            assert tool.available and tool.removed_at is None
            sent = listed[name]
        else:
            assert not tool.available
            assert tool.removed_at == (now if name in was_available else before[name].removed_at)
            sent = history.last_sent[name]
        document = tool.document()
        stored = {**{key: document[key] for key in KNOWN}, **(document["extra"] or {})}
        assert canonical(stored) == canonical(sent)                      # the definition as sent
    assert result.tool_count == sum(tool.available and tool.enabled and tool.selected for tool in result.tools)


@given(histories())
def test_merging_the_same_answer_again_changes_nothing(answers: list[list[dict[str, Any]]]) -> None:
    *earlier, answer = answers
    previous, _ = run(earlier)
    first = merge(previous, answer, TIMES[len(earlier)])
    again = merge(through_cache(first.tools), answer, TIMES[len(earlier) + 1])
    assert again.diff.is_empty()
    assert documents(again.tools) == documents(first.tools)


@given(histories(), st.randoms(use_true_random=False))
def test_the_order_of_the_servers_list_does_not_matter(answers: list[list[dict[str, Any]]], random: Any) -> None:
    *earlier, answer = answers
    previous, _ = run(earlier)
    shuffled = list(answer)
    random.shuffle(shuffled)
    one, other = merge(previous, answer, TIMES[5]), merge(previous, shuffled, TIMES[5])
    assert documents(one.tools) == documents(other.tools) and one.diff == other.diff


@given(answers, st.data())
def test_a_name_listed_twice_fails_closed(answer: list[dict[str, Any]], data: Any) -> None:
    assume(answer)
    twice = data.draw(st.sampled_from(answer))
    other = {**data.draw(st.sampled_from(answer)), "name": twice["name"]}      # the same definition or another
    position = data.draw(st.integers(0, len(answer)))
    listed = [*answer[:position], other, *answer[position:]]
    try:
        merge([], listed, TIMES[0])
    except DuplicateToolError as error:
        assert repr(twice["name"]) in str(error)
    else:
        raise AssertionError("a duplicate name was merged")


@given(st.lists(st.dictionaries(st.text(max_size=5), json_values, max_size=4), max_size=4))
@example([{"name": "a", "title": 5}])
@example([{"name": "a", "inputSchema": [1]}])
@example([{"name": ""}])
@example([{"name": "a", "description": 2**60}])
def test_any_answer_merges_or_fails_as_an_invalid_tool_list(answer: list[dict[str, Any]]) -> None:
    """Never another exception: the plan turns InvalidToolError into ProtocolError, anything else is a crash."""
    try:
        merge([], answer, TIMES[0])
    except InvalidToolError:
        pass


# ----------------------------------------------------------------------------- the hash


def _different(value: Any) -> st.SearchStrategy[Any]:
    return json_values.filter(lambda other: json.dumps(other, sort_keys=True) != json.dumps(value, sort_keys=True))


@given(definitions, st.data())
@example({"annotations": {"readOnlyHint": True}}, None)
def test_the_hash_changes_exactly_when_the_definition_does(definition: dict[str, Any], data: Any) -> None:
    raw = {"name": "t0", **definition}
    digest = definition_hash(definition_of(raw))
    # Not a change: name, _meta, a null field, key order.
    same = dict(reversed(list({**raw, "name": "renamed", "_meta": {"m": 1}, "title": raw.get("title")}.items())))
    assert definition_hash(definition_of(same)) == digest
    # A change to any other field, known or not.
    if data is None:
        changed = {**raw, "annotations": {"readOnlyHint": 1}}      # true and 1 are equal in Python, not in JSON
    else:
        key = data.draw(st.sampled_from([*KNOWN, "x-vendor", "available", "extra"]))
        changed = {**raw, key: data.draw(_different(raw.get(key)).filter(lambda value: value is not None or
                                                                          raw.get(key) is not None))}
        assume(canonical(changed) != canonical(raw))
    assert definition_hash(definition_of(changed)) != digest


@given(answers, st.data())
def test_a_sync_flags_a_changed_definition_and_nothing_else(answer: list[dict[str, Any]], data: Any) -> None:
    first = merge([], answer, TIMES[0])
    edits: dict[str, str] = {raw["name"]: data.draw(st.sampled_from(["same", "meta", "field"])) for raw in answer}
    second: list[dict[str, Any]] = []
    for raw in answer:
        if edits[raw["name"]] == "meta":
            raw = {**raw, "_meta": data.draw(_different(raw.get("_meta")))}
        elif edits[raw["name"]] == "field":
            was = raw.get("description")
            raw = {**raw, "description": data.draw(st.text(max_size=20).filter(lambda text, was=was: text != was))}
        second.append(raw)
    result = merge(through_cache(first.tools), second, TIMES[1])
    assert result.diff.changed == sorted(name for name, edit in edits.items() if edit == "field")
    before, after = by_name(first.tools), by_name(result.tools)
    for name, edit in edits.items():
        assert (after[name].schema_hash != before[name].schema_hash) == (edit == "field")


@given(st.dictionaries(names, st.tuples(definitions, st.booleans(), definitions), max_size=4))
def test_an_upgrade_from_hash_version_1_flags_exactly_what_version_1_would_have(
        tools: dict[str, tuple[dict[str, Any], bool, dict[str, Any]]]) -> None:
    """A cache of an earlier release (five fields kept, hash version 1, baselines approved) meets this
    release: a tool unchanged in version 1's terms is neither flagged nor un-approved, whatever fields
    this release hashes beyond them; a changed one is flagged and pending."""
    v1_fields = ("title", "description", "inputSchema", "outputSchema", "annotations")
    previous, answer, changed = [], [], set()
    for name, (definition, edit, replacement) in tools.items():
        kept = {key: definition[key] for key in v1_fields if definition.get(key) is not None}
        digest = hash_v1(kept)
        previous.append(CachedTool.model_validate({"name": name, **kept, "schemaHash": digest,
                                                   "approvedHash": digest, "firstSeen": TIMES[0]}))
        sent = {**definition, **({key: replacement.get(key) for key in v1_fields} if edit else {})}
        covered = {key: sent.get(key) for key in v1_fields}
        if covered["inputSchema"] is None:
            covered["inputSchema"] = {"type": "object"}
        was = {key: kept.get(key) for key in v1_fields}
        if was["inputSchema"] is None:
            was["inputSchema"] = {"type": "object"}
        if json.dumps(covered, sort_keys=True) != json.dumps(was, sort_keys=True):
            changed.add(name)
        answer.append({"name": name, **sent})
    result = merge_catalog(previous, answer, settings=[], selector=ToolSelector(), now=TIMES[1], previous_version=1)
    assert result.diff.changed == sorted(changed) and result.diff.new == [] and result.diff.removed == []
    approval = approve(result.tools, result.previous, policy="NewAndChanged", settings=[], baseline_taken=True,
                       had_catalog=True)
    assert sorted(pending.name for pending in approval.pending) == sorted(changed)


# ----------------------------------------------------------------------------- approval

policies = st.sampled_from(["None", "NewAndChanged", "All"])


@st.composite
def approval_runs(draw: st.DrawFn) -> list[tuple[list[dict[str, Any]], str, dict[str, int]]]:
    """Syncs, each with the server's answer, the policy, and which definitions spec.tools approves (by
    the index of a sync whose definition of that tool is approved, or -1: a hash nobody sent)."""
    return [(answer, draw(policies), draw(st.dictionaries(names, st.integers(-1, index), max_size=3)))
            for index, answer in enumerate(draw(histories()))]


@given(approval_runs())
@example([([{"name": "t0", "description": "a", "inputSchema": {}}], "NewAndChanged", {}),
          ([{"name": "t0", "description": "rug pull", "inputSchema": {}}], "NewAndChanged", {})])
@example([([{"name": "t0", "description": "a", "inputSchema": {}}], "None", {}),
          ([{"name": "t0", "description": "b", "inputSchema": {}}, {"name": "t1", "inputSchema": {}}],
           "NewAndChanged", {}),
          ([], "NewAndChanged", {}),
          ([{"name": "t0", "description": "a", "inputSchema": {}}], "NewAndChanged", {"t0": 2})])
def test_a_tool_is_approved_exactly_when_its_definition_was_trusted(
        steps: list[tuple[list[dict[str, Any]], str, dict[str, int]]]) -> None:
    catalog: list[CachedTool] | None = None
    previous_policy = "None"
    hashes: list[dict[str, str]] = []                   # per sync: the hash of each tool listed
    for index, (answer, policy, approvals) in enumerate(steps):
        hashes.append({raw["name"]: definition_hash(definition_of(raw)) for raw in answer})
        from_spec = {name: hashes[at].get(name, "sha256:" + "0" * 64) if at >= 0 else "sha256:" + "1" * 64
                     for name, at in approvals.items()}
        settings = [ToolSetting(name=name, approved_hash=value) for name, value in from_spec.items()]
        merged = merge(catalog or [], answer, TIMES[index], settings=settings)
        baseline_taken = catalog is not None and previous_policy != "None"
        result = approve(merged.tools, merged.previous, policy=policy, settings=settings,
                         baseline_taken=baseline_taken, had_catalog=catalog is not None)
        before = by_name(catalog or [])
        for tool in result.tools:
            old = before.get(tool.name)
            assert tool.approved == (tool.approved_hash == tool.schema_hash or policy == "None")
            if policy == "None":
                assert tool.approved and tool.approved_hash is None
                continue
            trusted = {from_spec.get(tool.name)}
            if policy == "NewAndChanged":
                if catalog is None:
                    trusted.add(tool.schema_hash)                       # trust on first use
                elif not baseline_taken:
                    trusted.add(old.schema_hash if old is not None and old.available else None)
                else:
                    trusted.add(old.approved_hash if old is not None else None)
            trusted.discard(None)
            assert tool.approved == (tool.schema_hash in trusted), (tool.name, policy)
            if old is not None and old.schema_hash != tool.schema_hash and tool.schema_hash != from_spec.get(
                    tool.name) and tool.schema_hash != old.approved_hash:
                assert not tool.approved                                # a rug pull is never approved
            if tool.approved_definition is not None:                    # what `kubectl toolcatalog diff` shows
                assert not tool.approved and definition_hash(tool.approved_definition) == tool.approved_hash
        assert [pending.name for pending in result.pending] == [tool.name for tool in result.tools
                                                                 if tool.available and not tool.approved]
        catalog = through_cache(result.tools, policy)
        previous_policy = policy
