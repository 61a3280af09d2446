"""TEST ONLY: Airflow's simple auth manager plus per-user DAG scopes, to test per-model authorization.

The simple (development) auth manager knows four roles (viewer < user < op < admin) and, in multi-team
mode, teams; it cannot say "this user may read these DAGs but not those": every viewer reads every DAG.
The production auth manager (FAB) can, with DAG-level permissions (``access_control`` or roles with
``DAG:<dag_id>`` permissions). To exercise the Retraining view's per-model checks over HTTP against the
real API server, the e2e stack runs this subclass: identical to the simple auth manager, except that a
user listed in ``RETRAINER_TEST_DAG_SCOPES`` (JSON ``{"user": ["dag_id_prefix", ...]}``) is refused every
DAG whose id starts with none of their prefixes. It is never used outside the tests.
"""

from __future__ import annotations

import json
import os
from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager


class ScopedSimpleAuthManager(SimpleAuthManager):
    def _scopes(self, user: Any) -> list[str] | None:
        scopes = json.loads(os.environ.get("RETRAINER_TEST_DAG_SCOPES") or "{}")
        return scopes.get(user.get_name())

    def is_authorized_dag(
        self, *, method: Any, user: Any, access_entity: Any = None, details: Any = None
    ) -> bool:
        prefixes = self._scopes(user)
        if prefixes is not None and not (details and details.id and details.id.startswith(tuple(prefixes))):
            return False
        return bool(
            super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details)
        )
