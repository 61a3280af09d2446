"""`make stop` stops a twin started in the foreground for good: it signals the supervisor first (recorded
in stack.json), which stops its components and restarts none of them."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devtools import stack as st

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def _wait(what: str, cond, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_stop_stops_a_foreground_twin_for_good(tmp_path: Path) -> None:
    state = tmp_path / "twin"
    sup = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "support" / "sleeping_twin.py"), str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: set[int] = set()
    try:
        _wait("the twin's PIDs", lambda: len(st.read_pids(state)) == 5)
        first = st.read_pids(state)
        seen |= set(first.values())
        recorded = json.loads((state / "stack.json").read_text())
        os.killpg(first["redis"], signal.SIGKILL)  # a component that dies is restarted (restart: always)
        _wait("redis restarted", lambda: st.read_pids(state).get("redis") not in (None, first["redis"]))
        seen |= set(st.read_pids(state).values())

        out = subprocess.run(
            [sys.executable, "-m", "devtools.stack", "stop", "--state", str(state)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        sup.wait(timeout=30)
        time.sleep(3)  # longer than one turn of the restart loop: a restart would have happened by now
        if (state / "stack.json").exists():
            seen |= set(st.read_pids(state).values())

        assert recorded["supervisor"]["pid"] == sup.pid
        assert out.returncode == 0, out.stderr
        assert f"stopping the supervisor ({sup.pid})" in out.stdout
        assert sup.returncode == 0
        assert not (state / "stack.json").exists()
        assert [p for p in seen if st.group_alive(p)] == []
        assert "starting it again" in (sup.stdout.read() if sup.stdout else "")  # the redis kill above
    finally:
        if sup.poll() is None:
            sup.kill()
            sup.wait()
        if (state / "stack.json").exists():
            seen |= set(st.read_pids(state).values())
        for pid in seen:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


def test_a_stale_supervisor_record_is_not_signalled(tmp_path: Path) -> None:
    """A recorded supervisor PID that now names another process (PIDs are reused) is left alone."""
    other = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / "stack.json").write_text(
            json.dumps({"pids": {}, "supervisor": {"pid": other.pid, "started": 1}})
        )
        assert st.read_supervisor(tmp_path) is None
        (tmp_path / "stack.json").write_text(
            json.dumps({"pids": {}, "supervisor": {"pid": other.pid, "started": st._started_at(other.pid)}})
        )
        assert st.read_supervisor(tmp_path) == other.pid
    finally:
        other.kill()
        other.wait()
