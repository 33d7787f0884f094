"""docs/reference/crds.md: every field of every kind in crds/*.yaml (a new CRD file appears by itself).

For each field: its type, whether it is required, its default, its validation (enums, patterns,
lengths, ranges, list keys, CEL rules with their messages) and its description, as the API server
enforces them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from .markdown import banner, code, literal, prose, table

Row = tuple[str, str, str, str, str]


def _type(node: dict[str, Any]) -> str:
    kind = node.get("type", "")
    if node.get("x-kubernetes-int-or-string"):
        kind = "integer or string"
    if kind == "array":
        kind = "[]" + _type(node.get("items") or {})
    elif kind == "object":
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            kind = "map[string]" + _type(extra)
        elif node.get("x-kubernetes-preserve-unknown-fields") and not node.get("properties"):
            kind = "object (any fields)"
    if node.get("format"):
        kind += f" ({node['format']})"
    return kind or "any"


def _range(low: Any, high: Any, unit: str = "") -> str:
    if low is not None and high is not None:
        return f"{low} to {high}{unit}"
    return f"at least {low}{unit}" if low is not None else f"at most {high}{unit}"


def _validation(node: dict[str, Any]) -> str:
    parts = []
    if "enum" in node:
        parts.append("one of " + ", ".join(literal(value) for value in node["enum"]))
    if "pattern" in node:
        parts.append("matches " + code(node["pattern"]))
    if "minLength" in node or "maxLength" in node:
        parts.append("length " + _range(node.get("minLength"), node.get("maxLength")))
    if "minimum" in node or "maximum" in node:
        parts.append(_range(node.get("minimum"), node.get("maximum")))
    if "minItems" in node or "maxItems" in node:
        parts.append(_range(node.get("minItems"), node.get("maxItems"), " items"))
    if node.get("uniqueItems"):
        parts.append("items unique")
    if node.get("x-kubernetes-list-type") == "map":
        keys = ", ".join(code(key) for key in node.get("x-kubernetes-list-map-keys", []))
        parts.append(f"a list map keyed by {keys}: each key once")
    elif node.get("x-kubernetes-list-type") == "set":
        parts.append("a set: each item once")
    for rule in node.get("x-kubernetes-validations", []):
        text = "CEL " + code(rule["rule"])
        if rule.get("message"):
            text += f": \u201c{rule['message']}\u201d"
        parts.append(text)
    if node.get("nullable"):
        parts.append("may be null")
    return "; ".join(parts)


def _rows(node: dict[str, Any], path: str) -> Iterator[Row]:
    """A row per field below `node` (an object schema), depth first, in the CRD's own order."""
    required = set(node.get("required", []))
    for name, sub in (node.get("properties") or {}).items():
        here = f"{path}.{name}" if path else name
        kind = _type(sub)
        if name in required:
            kind += ", required"
        default = literal(sub["default"]) if "default" in sub else ""
        yield code(here), kind, default, _validation(sub), prose(sub.get("description", ""))
        yield from _below(sub, here)


def _below(node: dict[str, Any], path: str) -> Iterator[Row]:
    if node.get("properties"):
        yield from _rows(node, path)
    items = node.get("items")
    if isinstance(items, dict) and items.get("properties"):
        yield from _rows(items, path + "[]")
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and extra.get("properties"):
        yield from _rows(extra, path + "{key}")


def _kind_section(crd: dict[str, Any], source: str) -> str:
    spec = crd["spec"]
    names = spec["names"]
    out = [f"## {names['kind']}\n"]
    for version in spec["versions"]:
        if not version.get("served", True):
            continue
        schema = version["schema"]["openAPIV3Schema"]
        facts = [f"API version {code(spec['group'] + '/' + version['name'])}",
                 "namespaced" if spec.get("scope") == "Namespaced" else "cluster-scoped",
                 f"plural {code(names['plural'])}"]
        if names.get("shortNames"):
            facts.append("short names " + ", ".join(code(name) for name in names["shortNames"]))
        if names.get("categories"):
            facts.append("categories " + ", ".join(code(name) for name in names["categories"])
                         + f" (`kubectl get {names['categories'][0]}` lists it)")
        if "status" in (version.get("subresources") or {}):
            facts.append("status subresource")
        out.append("; ".join(facts) + f". Defined in {code(source)}.\n")
        if schema.get("description"):
            out.append(prose(schema["description"].strip()) + "\n")
        columns = version.get("additionalPrinterColumns") or []
        if columns:
            out.append("`kubectl get` prints these columns (`-o wide` adds those of priority 1):\n")
            out.append(table(("Column", "Type", "JSONPath", "Priority"),
                             [(col["name"], col["type"], code(col["jsonPath"]), col.get("priority", 0))
                              for col in columns]))
        for part in ("spec", "status"):
            node = (schema.get("properties") or {}).get(part)
            if not node:
                continue
            out.append(f"### {names['kind']} {part}\n")
            if part == "status":
                out.append("Written by the operator only, through the status subresource. ")
            out.append(f"{prose(node.get('description', '').strip())}\n")
            validation = _validation(node)
            if validation:
                out.append(f"Rules on the whole {code(part)}: {validation}.\n")
            out.append(table(("Field", "Type", "Default", "Validation", "Description"), _rows(node, part)))
    return "\n".join(out)


def render(repo: Path) -> str:
    files = sorted((repo / "crds").glob("*.yaml"))
    crds = [(path, yaml.safe_load(path.read_text())) for path in files]
    crds = [(path, crd) for path, crd in crds if crd and crd.get("kind") == "CustomResourceDefinition"]
    crds.sort(key=lambda item: (item[1]["spec"]["names"]["kind"] != "ToolServer", item[1]["spec"]["names"]["kind"]))
    kinds = ", ".join(f"[{crd['spec']['names']['kind']}](#{crd['spec']['names']['kind'].lower()})"
                      for _, crd in crds)
    head = (banner("crds/*.yaml")
            + "\n# Custom resources\n\n"
            "Every field of every kind the operator serves, from the CRDs in `crds/`: its type, its default, "
            "the validation the API server applies at `kubectl apply` (OpenAPI schema and CEL rules), and what it "
            f"means. Kinds: {kinds}.\n\n"
            "A field path reads like `spec.tools[].name` (`[]`: each item of a list) and `spec.headers` of type "
            "`map[string]string` is a map. A default is what the API server stores when the field is absent. "
            "The [status reference](status.md) and the [conditions reference](conditions.md) say what the "
            "operator writes into `status` and why; the admission webhook ([how-to](../how-to/admission-webhook.md)) "
            "refuses what these schemas cannot express.\n")
    sections = [_kind_section(crd, str(path.relative_to(repo))) for path, crd in crds]
    return head + "\n" + "\n".join(sections)
