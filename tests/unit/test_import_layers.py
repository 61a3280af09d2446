"""The import contract in pyproject.toml (`make lint` runs it) holds, and it catches an import that points up."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")


def lint(package_parent: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports with the repository's contract on the ``retrainer`` package found under ``package_parent``."""
    env = {**os.environ, "PYTHONPATH": str(package_parent)}  # ahead of the editable install
    return subprocess.run(
        [str(LINT), "--no-cache", str(REPO / "pyproject.toml")],
        capture_output=True,
        text=True,
        env=env,
        cwd=package_parent,
    )


def test_the_package_keeps_its_layers(tmp_path: Path) -> None:
    shutil.copytree(REPO / "include" / "retrainer", tmp_path / "retrainer")

    done = lint(tmp_path)

    assert done.returncode == 0, done.stdout[-2000:]
    assert "BROKEN" not in done.stdout


def test_an_upward_import_breaks_the_contract(tmp_path: Path) -> None:
    shutil.copytree(REPO / "include" / "retrainer", tmp_path / "retrainer")
    storage = tmp_path / "retrainer" / "storage" / "local.py"
    storage.write_text(storage.read_text() + "\nfrom retrainer.stages import monitor  # noqa: E402\n")

    done = lint(tmp_path)

    assert done.returncode != 0
    assert "retrainer.storage.local -> retrainer.stages.monitor" in done.stdout, done.stdout[-2000:]
