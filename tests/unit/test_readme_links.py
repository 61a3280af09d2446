"""The README is the front door: every file it links to or shows exists (the docs site itself is
checked by `mkdocs build --strict` in `make docs`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def test_readme_links_point_at_files_that_exist() -> None:
    text = (REPO / "README.md").read_text()
    targets = [t for t in re.findall(r"\]\(([^)]+)\)", text) if not t.startswith(("http:", "https:", "#"))]
    assert len(targets) >= 15  # the README is mostly links into the docs
    missing = [t for t in targets if not (REPO / t.split("#")[0]).is_file()]
    assert missing == []


def test_every_docs_page_is_in_the_site_nav() -> None:
    nav = (REPO / "mkdocs.yml").read_text()
    pages = sorted(str(p.relative_to(REPO / "docs")) for p in (REPO / "docs").rglob("*.md"))
    assert [p for p in pages if f": {p}\n" not in nav] == []
