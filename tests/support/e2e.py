"""What the tests against the real Airflow components (tests/e2e) share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

MODEL = "bikeshare"
MONITOR, RETRAIN = f"{MODEL}__monitor", f"{MODEL}__retrain"


def wait_until(what: str, fn: Any, timeout: float = 240, every: float = 1.0) -> Any:
    """Poll ``fn`` until it returns something truthy; fail the test with ``what`` on timeout."""
    from devtools.stack import wait_until as poll

    return poll(what, fn, timeout=timeout, every=every, error=AssertionError)


def artifacts_dir() -> Path:
    path = Path(__file__).resolve().parents[2] / ".test-artifacts"
    path.mkdir(exist_ok=True)
    return path


def ensure_champion(stack: Any) -> None:
    """A champion exists (the scheduler test makes one; alone, this triggers the first retrain)."""
    stack.unpause(RETRAIN)
    if stack.request("GET", f"/retrainer/api/models/{MODEL}")["summary"]["champion"]:
        return
    run = stack.trigger(RETRAIN, {"reason": "first champion from history"})
    assert stack.wait_run(RETRAIN, run["dag_run_id"])["state"] == "success"
