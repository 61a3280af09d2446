"""The Retraining view in a real headless Chromium: log in through Airflow's form, open the view and a model.

Needs Debian's chromium (`make chromium` installs it; CI runs it before the tests). Screenshots are saved
under .test-artifacts/ (gitignored) for people to look at.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.support.e2e import MODEL, artifacts_dir, ensure_champion

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def browser() -> Any:
    from tests.support.headless import Browser, chromium_path

    if chromium_path() is None:
        pytest.skip(
            "chromium is not installed and could not be: run `make chromium` (apt-get install -y chromium)"
        )
    with Browser(width=1400, height=950) as b:
        yield b


def test_plugin_refuses_anonymous_requests(stack: Any) -> None:
    for path in (
        "/retrainer/api/overview",
        f"/retrainer/api/models/{MODEL}",
        "/retrainer/files/reports/x.html",
    ):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{stack.url}{path}", timeout=10)
        assert err.value.code == 401, path
        assert MODEL not in err.value.read().decode()
    req = urllib.request.Request(
        f"{stack.url}/retrainer/api/overview", headers={"Authorization": "Bearer forged"}
    )
    with pytest.raises(urllib.error.HTTPError) as forged:
        urllib.request.urlopen(req, timeout=10)
    assert forged.value.code == 401


def test_retraining_view_in_a_browser(stack: Any, browser: Any) -> None:
    ensure_champion(stack)
    out = artifacts_dir()
    b = browser

    b.goto(f"{stack.url}/retrainer/")  # anonymous: sent to Airflow's login page
    assert "/auth/login" in b.url()
    b.wait_for("document.querySelector('input[name=password]') !== null")
    b.type_into("input[name=username]", "admin")
    b.type_into("input[name=password]", stack.password())
    b.eval("document.querySelector('button[type=submit]').click()")
    b.wait_for("location.pathname.startsWith('/retrainer')", 30)

    text = b.text()
    assert "Retraining" in text and MODEL in text
    champion = stack.request("GET", f"/retrainer/api/models/{MODEL}")["summary"]["champion"]
    assert f"v{champion['version']}" in text

    b.goto(f"{stack.url}/plugin/retraining", settle=1)  # framed in the Airflow UI, with its nav entry
    b.wait_for(
        "document.querySelector('iframe') && document.querySelector('iframe').contentDocument"
        " && document.querySelector('iframe').contentDocument.body.innerText.includes('bikeshare')",
        30,
    )
    framed = b.frame_text()
    assert "Retraining" in framed and "Dags" in framed and MODEL in framed
    b.screenshot(out / "retraining-view.png", full_page=False)

    b.goto(f"{stack.url}/retrainer/")
    b.eval(f"document.querySelector('a.model[href$=\"/models/{MODEL}\"]').click()")
    b.wait_for(f"location.pathname.endsWith('/models/{MODEL}')")
    b.wait_for("document.readyState === 'complete'")
    page = b.text()
    for expected in ("Over batches", "Decision log", "Retrains", "Versions", "Promotion history"):
        assert expected in page, expected
    assert b.eval("document.querySelectorAll('svg.chart circle').length") > 0 or "No batches checked" in page
    detail = stack.request("GET", f"/retrainer/api/models/{MODEL}")
    for check in detail["checks"]:
        assert check["batch"] in page
    if any(c["verdict"] == "retrain" for c in detail["checks"]):
        assert "retrain requested" in page
    b.screenshot(out / "model-page.png")

    evidently = next((c["evidently"] for c in detail["checks"] if c["evidently"]), None)
    if evidently:  # the report link works with the browser's session
        status = b.eval(f"fetch('/retrainer/files/{evidently}').then(r => r.status)")
        assert status == 200
    print(json.dumps({"screenshots": [str(out / "retraining-view.png"), str(out / "model-page.png")]}))


def test_trigger_form_refuses_a_bad_window(stack: Any, browser: Any) -> None:
    """The retrain DAG's Params form: a malformed window is refused with the reason shown in the form."""
    b = browser  # logged in by the previous test (same browser profile); log in again if needed
    b.goto(f"{stack.url}/dags/bikeshare__retrain", settle=1)
    if "/auth/login" in b.url():
        b.wait_for("document.querySelector('input[name=password]') !== null")
        b.type_into("input[name=username]", "admin")
        b.type_into("input[name=password]", stack.password())
        b.eval("document.querySelector('button[type=submit]').click()")
        b.wait_for("location.pathname.startsWith('/dags/')", 30)
    trigger = "Array.from(document.querySelectorAll('button')).filter(x => x.innerText.trim() === 'Trigger')"
    b.wait_for(f"{trigger}.length > 0", 30)
    b.eval(f"{trigger}[0].click()")
    b.wait_for("document.querySelector('input[name=element_window]') !== null", 30)
    form = b.text()
    for label in ("Force", "Reason", "Training window"):
        assert label in form, label
    runs_before = len(stack.runs("bikeshare__retrain"))
    b.type_into("input[name=element_window]", "8 weeks")
    b.eval(f"{trigger}.pop().click()")  # the form's own Trigger button (the last one)
    message = b.wait_for(
        "Array.from(document.body.innerText.split('\\n')).find(l => l.includes(\"'8 weeks' does not match\")) || ''",
        30,
    )
    assert "Invalid input for param window" in message
    b.screenshot(artifacts_dir() / "trigger-form-bad-window.png", full_page=False)
    assert len(stack.runs("bikeshare__retrain")) == runs_before, "a refused trigger started no run"
