"""Properties of reading a spec (api/spec.py, api/validation.py): what any user input turns into.

- A valid spec, drawn from the schema in api.md, parses, keeps every value the user wrote, reads
  back the same after a dump, and yields the settings and referenced objects it names.
- Any JSON-like spec (a valid one with a part replaced by arbitrary JSON, or arbitrary JSON) either
  parses or fails with SyncError InvalidSpec whose message names a field and echoes no value: never
  another exception, which would turn a user's typo into a crash loop instead of a status message.
- spec_problems, which the admission webhook runs too, answers every JSON-like spec with sentences
  that name a field, and never raises.
"""

from __future__ import annotations

import re
from typing import Any

from hypothesis import assume, example, given
from hypothesis import strategies as st

from toolcatalog.api import constants as c
from toolcatalog.api.errors import SyncError
from toolcatalog.api.models import ConnectorConfigSpec, ToolServerSpec
from toolcatalog.api.spec import names_of, parse_spec, settings_of
from toolcatalog.api.validation import spec_problems

KINDS = (c.KIND_TOOLSERVER, c.KIND_CONNECTORCONFIG)
CANARY = "CANARY-7f3a"      # a value no message may repeat

# ----------------------------------------------------------------------------- strategies: valid specs


def _dns_like(first: str, inner: str, last: str, max_size: int) -> st.SearchStrategy[str]:
    """One character of `first`, or that, characters of `inner` and one of `last` (cheaper than
    st.from_regex, which made these tests twice as slow)."""
    return st.builds(lambda head, body, tail, bare: head if bare else head + body + tail,
                     st.sampled_from(first), st.text(alphabet=inner, max_size=max_size - 2),
                     st.sampled_from(last), st.booleans())


k8s_names = _dns_like("a0z9", "az09-.", "a9", 15)                    # ^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$
keys = st.text(alphabet="aZ9._-", min_size=1, max_size=20)
header_names = st.text(alphabet="aZ9!#$%&'*+.^_`|~-", min_size=1, max_size=20)
header_values = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.just("\t"),
                        max_size=20)    # what HTTP can carry: printable ASCII
secret_ref = st.fixed_dictionaries({"name": k8s_names, "key": keys})
configmap_ref = st.fixed_dictionaries({"name": k8s_names, "key": keys})
hashes = st.binary(min_size=32, max_size=32).map(lambda digest: "sha256:" + digest.hex())

labels = _dns_like("a0z9", "az09-", "a9", 10)
top_labels = _dns_like("az", "az09-", "a9", 10)          # a TLD never looks numeric
hostnames = st.builds(lambda head, top: ".".join([*head, top]), st.lists(labels, max_size=3), top_labels)
ipv4_hosts = st.ip_addresses(v=4).map(str)
ipv6_hosts = st.ip_addresses(v=6).map(lambda address: f"[{address}]")
ports = st.one_of(st.just(""), st.integers(0, 65535).map(lambda port: f":{port}"))
paths = st.one_of(st.just(""), st.text(alphabet="aZ09/_.-", max_size=20).map(lambda path: "/" + path))
urls = st.builds(lambda scheme, host, port, path: f"{scheme}://{host}{port}{path}",
                 st.sampled_from(["http", "https"]), st.one_of(hostnames, ipv4_hosts, ipv6_hosts), ports, paths)

glob_atoms = st.text(alphabet="aZ09_.*?!-", min_size=1, max_size=12)
globs = st.one_of(glob_atoms, st.builds(lambda a, b: f"{a}[{b}]", glob_atoms,
                                        st.text(alphabet="az09!-", min_size=1, max_size=4)))
tool_names = st.text(alphabet="aZ09_.-", min_size=1, max_size=40)
tool_settings = st.lists(st.fixed_dictionaries({"name": tool_names},
                                               optional={"enabled": st.booleans(), "approvedHash": hashes}),
                         max_size=4, unique_by=lambda setting: setting["name"])
auth = st.fixed_dictionaries({}, optional={
    "bearerToken": st.fixed_dictionaries({"secretKeyRef": secret_ref}),
    "headers": st.lists(st.fixed_dictionaries({"name": header_names, "secretKeyRef": secret_ref}), max_size=3)})
tls = st.fixed_dictionaries({}, optional={
    "caBundle": st.one_of(st.fixed_dictionaries({"configMapKeyRef": configmap_ref}),
                          st.fixed_dictionaries({"secretKeyRef": secret_ref})),
    "insecureSkipVerify": st.booleans()})
sync = st.fixed_dictionaries({}, optional={
    "ttlSeconds": st.integers(1, 31 * 24 * 3600), "timeoutSeconds": st.integers(1, 600),
    "minIntervalSeconds": st.integers(0, 86400), "suspend": st.booleans()})
common = {
    "auth": auth, "tls": tls, "sync": sync,
    "toolSelector": st.fixed_dictionaries({}, optional={"include": st.lists(globs, max_size=3),
                                                        "exclude": st.lists(globs, max_size=3)}),
    "tools": tool_settings,
    "approval": st.fixed_dictionaries({}, optional={"policy": st.sampled_from(["None", "NewAndChanged", "All"])}),
    "cache": st.fixed_dictionaries({}, optional={"configMapName": k8s_names}),
}
endpoint = {"transport": st.sampled_from(["streamable-http", "sse"]),
            "headers": st.dictionaries(header_names, header_values, max_size=3)}
toolserver_specs = st.fixed_dictionaries({"url": urls}, optional={**endpoint, **common})
connectorconfig_specs = st.one_of(
    st.fixed_dictionaries({"toolServerRef": st.fixed_dictionaries({"name": k8s_names})},
                          optional={**common, "owner": st.text(max_size=40)}),
    st.fixed_dictionaries({"url": urls}, optional={**endpoint, **common, "owner": st.text(max_size=40)}))
valid_specs = st.one_of(toolserver_specs.map(lambda spec: (c.KIND_TOOLSERVER, spec)),
                        connectorconfig_specs.map(lambda spec: (c.KIND_CONNECTORCONFIG, spec)))

# ----------------------------------------------------------------------------- strategies: anything

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12) | st.just(CANARY),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON value, the root excluded."""
    found: list[tuple[Any, ...]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        found.append((*prefix, key))
        found += _paths(child, (*prefix, key))
    return found


def _replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replaced(value[head], rest, new)}
    copy = list(value)
    copy[head] = _replaced(copy[head], rest, new)
    return copy


@st.composite
def broken_specs(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A valid spec with one part replaced by arbitrary JSON, or an unknown or misspelt field added."""
    kind, spec = draw(valid_specs)
    paths = _paths(spec)
    if paths and draw(st.booleans()):
        path = draw(st.sampled_from(paths))
        path = path[:draw(st.integers(1, len(path)))]       # shallow places as often as deep ones
        spec = _replaced(spec, path, draw(json_values))
    else:
        spec = {**spec, draw(st.sampled_from(["url", "toolServerRef", "tools", "toolSelector", "sync", "auth",
                                              "tls", "headers", "transport", "cache", "approval", "owner"])):
                draw(json_values)}
    return kind, spec


arbitrary_specs = st.tuples(st.sampled_from(KINDS), st.dictionaries(st.text(max_size=15), json_values, max_size=6))

# ----------------------------------------------------------------------------- properties


def _walk(value: Any, key: str) -> list[Any]:
    """Every value under `key` anywhere in a JSON value."""
    found = []
    if isinstance(value, dict):
        for name, child in value.items():
            if name == key:
                found.append(child)
            found += _walk(child, key)
    elif isinstance(value, list):
        for child in value:
            found += _walk(child, key)
    return found


def _contains(whole: Any, part: Any) -> bool:
    """`part` (what the user wrote) is in `whole` (what the model dumps), defaults aside."""
    if isinstance(part, dict):
        return isinstance(whole, dict) and all(key in whole and _contains(whole[key], value)
                                               for key, value in part.items())
    if isinstance(part, list):
        return isinstance(whole, list) and len(whole) == len(part) and all(map(_contains, whole, part))
    return type(whole) is type(part) and whole == part


@given(valid_specs)
@example((c.KIND_TOOLSERVER, {"url": "http://[::ffff:10.0.0.1]:0/"}))
@example((c.KIND_CONNECTORCONFIG, {"toolServerRef": {"name": "a"}, "toolSelector": {"include": ["a[!b]"]}}))
def test_a_valid_spec_parses_and_keeps_every_value(case: tuple[str, dict[str, Any]]) -> None:
    kind, spec = case
    parsed = parse_spec(kind, spec)
    assert isinstance(parsed, ToolServerSpec if kind == c.KIND_TOOLSERVER else ConnectorConfigSpec)
    dumped = parsed.dump()
    assert _contains(dumped, spec)                      # nothing the user wrote is lost or altered
    assert parse_spec(kind, dumped) == parsed           # and what status/the plugin dump reads back the same
    settings = settings_of(parsed)
    assert settings.sync.model_dump(by_alias=True) == {
        "ttlSeconds": 3600, "timeoutSeconds": 30, "minIntervalSeconds": 10, "suspend": False, **spec.get("sync", {})}
    assert [t.name for t in settings.tools] == [t["name"] for t in spec.get("tools", [])]
    assert settings.selector.include == spec.get("toolSelector", {}).get("include", [])
    assert settings.config_map_name == spec.get("cache", {}).get("configMapName")
    if kind == c.KIND_CONNECTORCONFIG:
        assert settings.owner == spec.get("owner")
        assert settings.tool_server_ref == spec.get("toolServerRef", {}).get("name")
    named = names_of(parsed)
    assert named.secrets == {ref["name"] for ref in _walk(spec, "secretKeyRef")}
    assert named.configmaps == {ref["name"] for ref in _walk(spec, "configMapKeyRef")}
    assert named.toolserver == spec.get("toolServerRef", {}).get("name")
    assert spec_problems(spec) == []


@given(connectorconfig_specs, toolserver_specs)
def test_a_connectorconfig_reads_what_it_inherits_unless_it_has_its_own(own: dict[str, Any],
                                                                        inherited: dict[str, Any]) -> None:
    spec = parse_spec(c.KIND_CONNECTORCONFIG, own)
    named = names_of(spec, inherited=parse_spec(c.KIND_TOOLSERVER, inherited))
    auth = own["auth"] if "auth" in own else inherited.get("auth", {})
    tls = own["tls"] if "tls" in own else inherited.get("tls", {})
    assert named.secrets == {ref["name"] for ref in _walk([auth, tls], "secretKeyRef")}
    assert named.configmaps == {ref["name"] for ref in _walk(tls, "configMapKeyRef")}


@st.composite
def defective_specs(draw: st.DrawFn) -> tuple[str, dict[str, Any], str]:
    """A valid spec with one defect that only these checks or the schema catch, and the field to name."""
    kind, spec = draw(valid_specs)
    tools = list(spec.get("tools", []))
    selector = dict(spec.get("toolSelector", {}))
    defect = draw(st.sampled_from(["twice", "hash", "glob", "bracket", "sync", "configmap"]))
    if defect == "twice":
        assume(tools)
        tools.append({"name": draw(st.sampled_from(tools))["name"]})
        return kind, {**spec, "tools": tools}, f"spec.tools[{len(tools) - 1}]"
    if defect == "hash":
        assume(tools)
        index = draw(st.integers(0, len(tools) - 1))
        bad = draw(st.text(max_size=72).filter(lambda text: re.fullmatch(r"sha256:[0-9a-f]{64}", text) is None))
        tools[index] = {**tools[index], "approvedHash": bad}
        return kind, {**spec, "tools": tools}, f"spec.tools[{index}].approvedHash"
    if defect in ("glob", "bracket"):
        which = draw(st.sampled_from(["include", "exclude"]))
        patterns = list(selector.get(which, []))
        if defect == "glob":
            bad = draw(st.text(min_size=1, max_size=8).filter(lambda text: re.fullmatch(r"[A-Za-z0-9_.*?!\[\]-]+",
                                                                                        text) is None) | st.just(""))
        else:
            bad = draw(st.sampled_from(["a[b", "]a", "[[a]", "a]]["]))
        patterns.append(bad)
        return kind, {**spec, "toolSelector": {**selector, which: patterns}}, f"spec.toolSelector.{which}"
    if defect == "sync":
        field, value = draw(st.sampled_from([("ttlSeconds", 0), ("ttlSeconds", 31 * 24 * 3600 + 1),
                                             ("timeoutSeconds", 0), ("timeoutSeconds", 601),
                                             ("minIntervalSeconds", -1), ("minIntervalSeconds", 86401)]))
        return kind, {**spec, "sync": {**spec.get("sync", {}), field: value}}, f"spec.sync.{field}"
    bad = draw(st.sampled_from(["-a", "a-", "A", "a_b", "a" * 254, ""]))
    return kind, {**spec, "cache": {"configMapName": bad}}, "spec.cache.configMapName"


@given(defective_specs())
@example((c.KIND_CONNECTORCONFIG, {"toolServerRef": {"name": "aa"}, "tools": [{"name": "0", "approvedHash": ""}]},
          "spec.tools[0].approvedHash"))          # the schema's message said spec.tools.0.approvedHash
@example((c.KIND_TOOLSERVER, {"url": "http://a.b/", "tools": [{"name": "x"}, {"name": "x"}]}, "spec.tools[1]"))
@example((c.KIND_TOOLSERVER, {"url": "http://a.b/", "toolSelector": {"include": ["a[b"]}},
          "spec.toolSelector.include"))
def test_a_spec_with_a_defect_is_invalid_and_the_message_names_the_field(case: tuple[str, dict[str, Any], str]
                                                                         ) -> None:
    kind, spec, field = case
    message = _outcome(kind, spec)
    assert message is not None and field in message, (field, message)
    if not field.startswith(("spec.sync", "spec.cache")):           # not the schema's: admission says it too
        assert any(field in problem for problem in spec_problems(spec))


def _outcome(kind: str, spec: dict[str, Any]) -> str | None:
    """None when the spec parses, else the InvalidSpec message; any other exception fails the test."""
    try:
        parse_spec(kind, spec)
    except SyncError as error:
        assert error.reason == c.REASON_INVALID_SPEC
        return error.message
    return None


def _names_fields(message: str, kind: str) -> None:
    prefix = f"{kind} spec is invalid: "
    assert message.startswith(prefix), message
    for problem in message[len(prefix):].split("; "):
        assert re.search(r"spec\.\w", problem), message


@given(st.one_of(broken_specs(), arbitrary_specs))
@example((c.KIND_TOOLSERVER, {"url": "http://user:pw-CANARY-7f3a\uff03@example.com/mcp"}))
@example((c.KIND_TOOLSERVER, {"url": "http://example.com/", "tools": [{"name": "a", "approvedHash": CANARY}]}))
@example((c.KIND_CONNECTORCONFIG, {"toolServerRef": {"name": "a"}, "headers": {"X": CANARY}, "sync": []}))
def test_any_spec_parses_or_is_invalid_naming_a_field_without_echoing_a_value(case: tuple[str, Any]) -> None:
    kind, spec = case
    message = _outcome(kind, spec)
    if message is None:
        assert spec_problems(spec) == []
        return
    _names_fields(message, kind)
    assert CANARY not in message


@given(st.one_of(broken_specs(), arbitrary_specs).map(lambda case: case[1]))
@example({"tools": 5})
@example({"toolSelector": {"include": 5, "exclude": {"a": 1}}})
@example({"tools": [{"name": {}}, {"name": ["a"]}, {"name": {}}]})
@example({"toolSelector": [], "url": ["http://example.com/"]})
def test_spec_problems_answers_any_json_with_sentences_naming_a_field(spec: Any) -> None:
    problems = spec_problems(spec)
    assert isinstance(problems, list)
    for problem in problems:
        assert isinstance(problem, str) and re.match(r"spec\.\w", problem), problem
        if "is listed twice" not in problem:        # a duplicate tool name is named, nothing else is
            assert CANARY not in problem
