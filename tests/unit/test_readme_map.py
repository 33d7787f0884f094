"""Every section of README.md has a place on the docs site: docs/development/readme-map.md says where.

When a section is added to the README, this fails until its content has a page and the map a row.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def readme_sections() -> list[str]:
    sections, fenced = [], False
    for line in (REPO / "README.md").read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (match := re.match(r"#+ (.+)", line)):
            sections.append(match.group(1).strip())
    return sections


def mapped_sections() -> set[str]:
    rows = (REPO / "docs" / "development" / "readme-map.md").read_text().splitlines()
    return {line.split("|")[1].strip() for line in rows if line.startswith("| ") and not line.startswith("| ---")}


def test_every_readme_section_is_placed_on_the_site():
    missing = [section for section in readme_sections() if section not in mapped_sections()]
    assert not missing, ("README sections with no place on the docs site: move their content to a page and add a "
                         "row to docs/development/readme-map.md for each:\n  " + "\n  ".join(missing))
