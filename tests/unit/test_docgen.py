"""The generated reference pages in docs/reference/ are what the code gives today.

They are regenerated from crds/*.yaml, api/reasons.py, the CLI's parser, the Prometheus registry,
the kubectl plugin's parser and the cache document's model; any difference fails, with the command
that brings them up to date.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path

import yaml

from toolcatalog_dev import docgen
from toolcatalog_dev.docgen import cachedoc, flags, metrics

REPO = Path(__file__).resolve().parents[2]


def test_the_committed_reference_pages_are_what_the_code_generates(tmp_path):
    docgen.write(tmp_path)
    committed = REPO / docgen.REFERENCE
    problems = []
    for fresh in sorted(tmp_path.iterdir()):
        old = committed / fresh.name
        if not old.exists():
            problems.append(f"{old.relative_to(REPO)} is missing")
            continue
        diff = list(difflib.unified_diff(old.read_text().splitlines(), fresh.read_text().splitlines(),
                                         f"committed {fresh.name}", f"generated {fresh.name}", lineterm="", n=1))
        if diff:
            problems.append("\n".join(diff[:40]))
    assert not problems, ("the generated reference pages are stale: run `make docs-gen` and commit docs/reference/\n"
                          + "\n\n".join(problems))


def test_every_crd_field_is_in_the_crd_reference():
    page = (REPO / docgen.REFERENCE / "crds.md").read_text()

    def paths(node, path):
        for name, sub in (node.get("properties") or {}).items():
            here = f"{path}.{name}"
            yield here
            yield from paths(sub, here)
            if isinstance(sub.get("items"), dict):
                yield from paths(sub["items"], here + "[]")

    for crd_file in sorted((REPO / "crds").glob("*.yaml")):
        crd = yaml.safe_load(crd_file.read_text())
        assert f"## {crd['spec']['names']['kind']}\n" in page
        for version in crd["spec"]["versions"]:
            schema = version["schema"]["openAPIV3Schema"]["properties"]
            for part in ("spec", "status"):
                for path in paths(schema[part], part):
                    assert f"`{path}`" in page, f"{crd_file.name}: {path} is not in docs/reference/crds.md"


def test_every_flag_has_its_default_and_environment_variable_documented():
    run, environment = flags.run_command(env={})
    page = (REPO / docgen.REFERENCE / "configuration.md").read_text()
    for action in flags.options(run):
        row = next(line for line in page.splitlines()
                   if line.startswith("| ") and action.option_strings[0] in line.split(" | ")[0])
        if action.dest in environment:
            assert f"`{environment[action.dest]}`" in row
    assert "| `--max-concurrent-syncs N` | `TOOLCATALOG_MAX_CONCURRENT_SYNCS` | `10` |" in page


def test_metrics_are_read_with_their_labels_from_the_registry():
    found = {name: (kind, labels) for name, kind, labels, _ in metrics.collect()}
    assert found["toolcatalog_syncs_total"] == ("counter", ("kind", "trigger", "result", "reason"))
    assert found["toolcatalog_sync_duration_seconds"] == ("histogram", ("kind",))
    assert found["toolcatalog_operator_ready"] == ("gauge", ())
    # Reading them leaves no series behind.
    assert "docgen-0" not in json.dumps([list(m.samples) for m in metrics.REGISTRY.collect()], default=str)


def test_the_cache_schema_validates_the_document_the_operator_writes():
    schema = cachedoc.schema()
    assert schema["properties"]["tools"]["type"] == "array"
    assert "schemaHash" in schema["$defs"]["CachedTool"]["required"]
    assert schema["$defs"]["CachedTool"]["properties"]["approved"]["description"]
