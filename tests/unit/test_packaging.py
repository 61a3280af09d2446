"""What ships: the wheel holds the retrainer package only, and the image copies only what runs in production."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
# what the image may copy: the pinned requirements, what installing the package reads, the package and its
# model configs, the DAG files and the UI plugin
PRODUCTION = {
    "requirements.txt",
    "requirements-nodeps.txt",
    "pyproject.toml",
    "README.md",
    "include",
    "dags",
    "plugins",
}
DEV_ONLY = ("devtools", "stack", "harness", "demo", "tune_triggers", "tests", "benchmarks", "scripts")


def test_the_wheel_contains_the_package_and_no_dev_tools(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,  # a build folder of its own: nothing written into the checkout
    )
    (wheel,) = tmp_path.glob("retrainer-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    code = [n for n in names if ".dist-info/" not in n]

    assert "retrainer/stages/monitor.py" in code and "retrainer/cli.py" in code
    assert all(n.startswith("retrainer/") for n in code), [n for n in code if not n.startswith("retrainer/")]
    stems = {Path(n).stem for n in code} | {part for n in code for part in Path(n).parts[:-1]}
    assert not stems & set(DEV_ONLY), sorted(stems & set(DEV_ONLY))


def test_the_image_copies_only_what_runs_in_production() -> None:
    copied = re.findall(r"(?m)^(?:COPY|ADD)\s+(?:--\S+\s+)*(.+?)\s+\S+$", (REPO / "Dockerfile").read_text())
    sources = {s for line in copied for s in line.split()}

    assert {"include", "dags", "plugins"} <= sources
    assert sources <= PRODUCTION, sorted(sources - PRODUCTION)  # nothing else: no devtools/, tests/, "." ...
