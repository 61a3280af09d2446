"""The real Airflow components on loopback (api-server, scheduler, dag-processor, triggerer) for one session.

The stack is shared by the scheduler test, the browser test, the authorization test and the approval
test: it is started once in a temp folder with free ports, seeded with history, and stopped at the end (the
teardown asserts every process is gone).

Models: ``bikeshare`` (the shipped config with a short poke interval), ``rainfall`` (parsed, never run:
a second model for the authorization test) and ``bikeapproval`` (bikeshare in approval mode with a short
approval timeout). Users of the simple auth manager: ``admin`` (admin), and two viewers scoped by the
test-only :mod:`scoped_auth_manager`: ``ann`` may read only the bikeshare DAGs, ``ben`` only rainfall's.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
APPROVAL_MODEL = "bikeapproval"
APPROVAL_TIMEOUT = "20S"
SCOPES = {"ann": ["bikeshare__"], "ben": ["rainfall__"]}


def _approval_config(models: Path) -> None:
    """bikeshare in approval mode: short timeout, one assigned approver, alerts to the SMTP sink."""
    raw = yaml.safe_load((REPO / "include" / "models" / "bikeshare.yaml").read_text())
    raw["name"] = APPROVAL_MODEL
    raw["schedule"] = None
    raw["validation"]["floors"] = {}
    raw["promotion"] = {"mode": "approval", "approval_timeout": APPROVAL_TIMEOUT, "approvers": ["admin"]}
    raw.setdefault("triggers", {})["poke_interval_seconds"] = 2
    raw["alerts"] = {
        "channels": [{"type": "smtp", "to": ["ml-team@example.test"], "conn_id": "retrainer_smtp"}]
    }
    (models / f"{APPROVAL_MODEL}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, smtp: Any) -> Any:
    from devtools import stack as S

    state = tmp_path_factory.mktemp("stack")
    models = S.fast_config_dir(state / "models", poke_interval=2, models=("bikeshare", "rainfall"))
    _approval_config(models)
    extra = {
        "AIRFLOW__CORE__AUTH_MANAGER": "scoped_auth_manager.ScopedSimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,ann:viewer,ben:viewer",
        "RETRAINER_TEST_DAG_SCOPES": json.dumps(SCOPES),
        **smtp.connection_env(),  # alerts of the approval model go to the session's SMTP sink
        "PYTHONPATH": os.pathsep.join(
            p for p in [str(REPO / "include"), str(HERE), os.environ.get("PYTHONPATH", "")] if p
        ),
    }
    st = S.Stack(state, port=S.free_port(), config_dir=models, extra_env=extra)
    st.start()
    try:
        st.weeks = S.seed_bikeshare(st, history_weeks=6)
        S.seed_bikeshare(st, history_weeks=6, model=APPROVAL_MODEL)
        yield st
    finally:
        pids = st.stop()
        left = [name for name, pid in pids.items() if S.group_alive(pid)]
        assert not left, f"still running after stop: {left}"
