"""`make docs` fails on a broken link: mkdocs runs with --strict and without --quiet (which hid the
warnings strict mode counts), on a copy of the docs with one broken link added."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def _build(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(folder / "site")],
        cwd=folder,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_docs_target_counts_warnings() -> None:
    recipe = re.search(r"^docs:.*\n((?:\t.*\n)+)", (REPO / "Makefile").read_text(), re.M)

    assert recipe is not None and "mkdocs build --strict" in recipe.group(1)
    assert "--quiet" not in recipe.group(1) and " -q" not in recipe.group(1)


def test_a_broken_link_fails_the_strict_build(tmp_path: Path) -> None:
    shutil.copy(REPO / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(REPO / "docs", tmp_path / "docs")
    clean = _build(tmp_path)
    page = tmp_path / "docs" / "cli.md"
    page.write_text(page.read_text() + "\nSee [the missing page](no-such-page.md).\n")

    broken = _build(tmp_path)

    assert clean.returncode == 0, clean.stderr[-2000:]  # today's docs build without a warning
    assert broken.returncode != 0
    assert "no-such-page.md" in broken.stderr
