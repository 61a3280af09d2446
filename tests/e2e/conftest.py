"""The real Airflow components on loopback (api-server, scheduler, dag-processor, triggerer) for one session.

The stack is shared by the scheduler test and the browser test: it is started once in a temp folder with
free ports, seeded with history, and stopped at the end (the teardown asserts every process is gone).
"""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Any:
    import airflow_stack as S

    state = tmp_path_factory.mktemp("stack")
    st = S.Stack(state, port=S.free_port(), config_dir=S.fast_config_dir(state / "models", poke_interval=2))
    st.start()
    try:
        st.weeks = S.seed_bikeshare(st, history_weeks=6)
        yield st
    finally:
        pids = st.stop()
        left = [name for name, pid in pids.items() if S.group_alive(pid)]
        assert not left, f"still running after stop: {left}"
