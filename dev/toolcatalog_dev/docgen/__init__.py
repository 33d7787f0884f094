"""The reference pages generated from the code, so that they cannot drift from it.

`python -m toolcatalog_dev.docgen` (`make docs-gen`) writes them into docs/reference/;
`--check` compares instead and fails on any difference (tests/unit/test_docgen.py does the same).
"""

from __future__ import annotations

from pathlib import Path

from . import cachedoc, conditions, crds, flags, metrics, plugin

REPO = Path(__file__).resolve().parents[3]
REFERENCE = Path("docs") / "reference"


def pages(repo: Path = REPO) -> dict[str, str]:
    """File name in docs/reference/ -> its content."""
    return {
        "crds.md": crds.render(repo),
        "conditions.md": conditions.render(),
        "configuration.md": flags.render(),
        "metrics.md": metrics.render(),
        "kubectl-plugin.md": plugin.render(),
        "cache-schema.md": cachedoc.render(),
        cachedoc.SCHEMA_FILE: cachedoc.schema_text(),
    }


def write(directory: Path, repo: Path = REPO) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in pages(repo).items():
        path = directory / name
        path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        written.append(path)
    return written


def differences(directory: Path, repo: Path = REPO) -> list[str]:
    """The generated files in `directory` that are missing or differ from what the code gives now."""
    stale = []
    for name, text in pages(repo).items():
        path = directory / name
        expected = text if text.endswith("\n") else text + "\n"
        if not path.exists() or path.read_text(encoding="utf-8") != expected:
            stale.append(str(path.relative_to(repo) if path.is_relative_to(repo) else path))
    return stale
