"""Who may see what in the Retraining view, over HTTP against the real API server.

Users (see conftest): ``admin``; ``ann``, a viewer who may read only the bikeshare DAGs; ``ben``, a viewer
who may read only rainfall's. Every plugin route answers 401 (API, files) or a login redirect (pages)
without a user, 403 for a model whose DAGs the user may not read, and 200 with the data otherwise; the
overview lists only the models the user may read. FastAPI's generated docs are not served.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from e2e_helpers import MODEL

pytestmark = pytest.mark.e2e

OTHER = "rainfall"


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


def test_anonymous_gets_401_or_login_and_docs_are_off(stack: Any) -> None:
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


def test_users_see_only_models_whose_dags_they_may_read(stack: Any) -> None:
    rel = report_file(stack)

    def names(user: str) -> list[str]:
        status, _, body = get(stack, "/retrainer/api/overview", user)
        assert status == 200, (user, status, body[:300])
        return sorted(r["name"] for r in json.loads(body))

    assert names("admin") == sorted([MODEL, OTHER, "bikeapproval"])
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


def test_reports_and_pages_are_served_with_a_content_policy(stack: Any) -> None:
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
