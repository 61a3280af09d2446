"""``python -m devtools.stack start --prod`` with stand-in components: each one is ``sleep``, so the
foreground supervisor (its restart loop, its signal handling, the PIDs it records) runs exactly as for the
production twin, in a second instead of minutes. Usage: ``python sleeping_twin.py <state>``."""

from __future__ import annotations

import os
import sys
from typing import Any

from devtools import stack as st

COMPONENTS = ("postgres", "redis", "mlflow", "api-server", "scheduler")


class SleepingTwin(st.ProdStack):
    def start(self, wait: float = 0) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        for name in COMPONENTS:
            self._sleep(name)
        self._write_pids()
        self.start_seconds = 0.0

    def _respawn(self, name: str) -> None:  # the twin's restart of one component, with a stand-in
        self._sleep(name)
        self._write_pids()

    def _sleep(self, name: str) -> None:
        self._spawn(name, ["sleep", "600"], env=dict(os.environ))

    def password(self, user: str = st.USER) -> str:
        return "stand-in"

    def client_env(self) -> dict[str, Any]:
        return {"MLFLOW_TRACKING_USERNAME": "stand-in"}


if __name__ == "__main__":
    st.ProdStack = SleepingTwin  # type: ignore[misc]
    sys.exit(st.main(["start", "--prod", "--state", sys.argv[1], "--workers", "0"]))
