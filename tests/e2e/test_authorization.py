"""Who may see what in the Retraining view, over HTTP against the real API server, under two auth managers.

``simple``: the session stack (see conftest) with the simple auth manager and test-only per-user DAG scopes.
``fab``: an API server of its own with the FAB auth manager of the production profile, where ``ann`` and
``ben`` have roles with DAG-level read permissions (``DAG:bikeshare__*`` / ``DAG:rainfall__*`` and
``DAG Runs``), as an administrator would grant them. In both: ``admin`` reads everything; ``ann`` only
bikeshare's DAGs; ``ben`` only rainfall's. Every plugin route answers 401 (API, files) or a login redirect
(pages) without a user, 403 for a model whose DAGs the user may not read, and 200 with the data otherwise;
the overview lists only the models the user may read. FastAPI's generated docs are not served.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.support.e2e import MODEL

pytestmark = pytest.mark.e2e

OTHER = "rainfall"
FAB = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
FAB_SETUP = """
import json, sys
from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder

spec = json.loads(sys.argv[1])
with get_application_builder() as ab:
    sm = ab.sm
    sm.sync_roles()
    for name, resources in spec["roles"].items():
        role = sm.find_role(name) or sm.add_role(name)
        for resource in resources:
            sm.add_permission_to_role(role, sm.create_permission("can_read", resource))
    for user, (role, password) in spec["users"].items():
        if not sm.find_user(username=user):
            sm.add_user(user, user, "Test", user + "@example.test", sm.find_role(role), password=password)
"""


@pytest.fixture(scope="module")
def fab_stack(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """An API server with the FAB auth manager (SQLite metadata DB; only the API server runs: the checks
    need users, roles and permissions, not DAG runs)."""
    import os
    import secrets
    import subprocess

    from devtools import stack as S

    passwords = {u: secrets.token_urlsafe(12) for u in ("admin", "ann", "ben")}

    class FabStack(S.Stack):
        def profile_env(self) -> dict[str, str]:
            return {**super().profile_env(), "AIRFLOW__CORE__AUTH_MANAGER": FAB}

        def password(self, user: str = S.USER) -> str:
            return passwords[user]

    state = tmp_path_factory.mktemp("fab")
    models = S.fast_config_dir(state / "models", poke_interval=None, models=(MODEL, OTHER))
    st = FabStack(state, port=S.free_port(), config_dir=models)
    st.migrate()
    spec = {
        "roles": {
            "bikeshare_reader": [f"DAG:{MODEL}__monitor", f"DAG:{MODEL}__retrain", "DAG Runs"],
            "rainfall_reader": [f"DAG:{OTHER}__monitor", f"DAG:{OTHER}__retrain", "DAG Runs"],
        },
        "users": {
            "admin": ["Admin", passwords["admin"]],
            "ann": ["bikeshare_reader", passwords["ann"]],
            "ben": ["rainfall_reader", passwords["ben"]],
        },
    }
    import json

    with open(st.logs / "fab-setup.log", "ab") as log:
        subprocess.run(
            [os.fspath(S.VENV_BIN / "python"), "-c", FAB_SETUP, json.dumps(spec)],
            env=st.env(), stdout=log, stderr=log, check=True, cwd=state,
        )  # fmt: skip
    st._spawn("api-server", [S._bin("airflow"), "api-server", "--host", S.HOST, "--port", str(st.port)])
    st._write_pids()
    try:
        st.wait_http(f"{st.url}/api/v2/monitor/health", 180)
        st.models = [MODEL, OTHER]
        yield st
    finally:
        pids = st.stop()
        assert not [n for n, pid in pids.items() if S.group_alive(pid)]


@pytest.fixture(params=["simple", "fab"])
def auth_stack(request: pytest.FixtureRequest) -> Any:
    """The stack of one auth manager, with ``models``: the models configured there."""
    if request.param == "simple":
        st = request.getfixturevalue("stack")
        st.models = [MODEL, OTHER, "bikeapproval"]
        return st
    return request.getfixturevalue("fab_stack")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def get(stack: Any, path: str, user: str | None = None) -> tuple[int, dict[str, str], str]:
    """(status, headers, body) of ``GET path`` as ``user`` (None: anonymous); redirects not followed."""
    req = urllib.request.Request(f"{stack.url}{path}")
    if user:
        req.add_header("Authorization", f"Bearer {stack.token(user)}")
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(req, timeout=60) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read().decode(errors="replace")


def report_file(stack: Any) -> str:
    """A report file of bikeshare under the data root (written here: no monitor run needed)."""
    rel = f"reports/{MODEL}/evidently/auth-test.html"
    path = stack.state / "data" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("<html><body><script>document.title='report'</script>drift report</body></html>")
    return rel


def test_anonymous_gets_401_or_login_and_docs_are_off(auth_stack: Any) -> None:
    stack = auth_stack
    rel = report_file(stack)
    for path in ("/retrainer/api/overview", f"/retrainer/api/models/{MODEL}", f"/retrainer/files/{rel}"):
        status, _, body = get(stack, path)
        assert status == 401, (path, status)
        assert "drift report" not in body and "champion" not in body
    for path in ("/retrainer/", f"/retrainer/models/{MODEL}"):
        status, headers, _ = get(stack, path)
        assert status == 303 and "/auth/login" in headers["location"], (path, status, headers)
    for path in ("/retrainer/docs", "/retrainer/redoc", "/retrainer/openapi.json"):
        for user in (None, "admin"):
            status, _, body = get(stack, path, user)
            assert status == 404, (path, user, status)
            assert "swagger" not in body.lower() and "openapi" not in body.lower()


def test_users_see_only_models_whose_dags_they_may_read(auth_stack: Any) -> None:
    stack = auth_stack
    rel = report_file(stack)

    def names(user: str) -> list[str]:
        status, _, body = get(stack, "/retrainer/api/overview", user)
        assert status == 200, (user, status, body[:300])
        return sorted(r["name"] for r in json.loads(body))

    assert names("admin") == sorted(stack.models)
    assert names("ann") == [MODEL]
    assert names("ben") == [OTHER]

    status, _, page = get(stack, "/retrainer/", "ben")
    assert status == 200 and OTHER in page and f"/models/{MODEL}" not in page
    status, _, page = get(stack, "/retrainer/", "ann")
    assert status == 200 and f"/models/{MODEL}" in page and OTHER not in page

    for user, expected in (("admin", 200), ("ann", 200), ("ben", 403)):
        for path in (
            f"/retrainer/api/models/{MODEL}",
            f"/retrainer/models/{MODEL}",
            f"/retrainer/files/{rel}",
        ):
            status, _, body = get(stack, path, user)
            assert status == expected, (user, path, status, body[:300])
            if expected == 403:
                assert "drift report" not in body and "Decision log" not in body
    for user, expected in (("ann", 403), ("ben", 200)):
        status, _, _ = get(stack, f"/retrainer/api/models/{OTHER}", user)
        assert status == expected, (user, status)

    # a path that tries to leave the model's folder is not a report file
    status, _, _ = get(stack, f"/retrainer/files/reports/{OTHER}/../{MODEL}/evidently/auth-test.html", "ben")
    assert status in (403, 404)


def test_reports_and_pages_are_served_with_a_content_policy(auth_stack: Any) -> None:
    stack = auth_stack
    rel = report_file(stack)

    status, headers, body = get(stack, f"/retrainer/files/{rel}", "admin")

    assert status == 200 and "drift report" in body
    assert headers["content-security-policy"].startswith("sandbox")  # opaque origin: no Airflow session
    assert headers["x-content-type-options"] == "nosniff"
    status, headers, _ = get(stack, f"/retrainer/models/{MODEL}", "admin")
    assert status == 200
    assert "script-src" not in headers["content-security-policy"]  # default-src 'none': no scripts at all
    assert "default-src 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
