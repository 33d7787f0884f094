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


def test_the_readme_stays_short_and_its_links_lead_to_pages_that_exist():
    """The README is the front page on GitHub, outside the docs build: its links are checked here, and it
    stays the short entry point issue 17 asked for (at most about 200 lines); the rest belongs on the site."""
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 200, "README.md grew past 200 lines: move the detail to a page under docs/"
    targets = re.findall(r"\]\((?!https?://|#)([^)#\s]+)(?:#[^)]*)?\)", text)
    assert targets, "the README links into the docs site"
    missing = sorted({target for target in targets if not (REPO / target).exists()})
    assert not missing, f"README links to files that do not exist: {missing}"
